"""The model architectures by name, with a few words each (no torch here: the CLI lists them in its help)."""

ARCHS = {"gpt": "a transformer", "mamba": "a selective state-space model"}
