"""Models in and out of other code: checkpoints of the paper's own code (``ntf``: gregorbachmann/Next-Token-Failures)
and Hugging Face folders (``hf``: the GPT-2 architecture). Both write ordinary ntp-probe models (``common``)."""

SOURCES = ("next-token-failures", "hf")  # ntp-probe import --from
