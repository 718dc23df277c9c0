"""ntp-probe: see why next-token prediction with teacher forcing fails to learn planning.

The Python API, for notebooks and scripts: every name below is importable from ``ntp_probe`` directly and is
imported on first use (``import ntp_probe`` itself loads no torch, so the command line and the app start fast)::

    import ntp_probe

    lm = ntp_probe.load("g2-5-next-token")             # a shipped name, a model file, a run directory, RUN@STEP
    g = ntp_probe.sample_graphs(lm, 1, seed=3)[0]       # or ntp_probe.parse_graph("0,1|1,2|0,3|3,4/0,4", lm)
    s = ntp_probe.ProbeSession(lm, g)                   # greedy answer, every position's distribution
    wrong = s.then(ntp_probe.ProbeSession.force_wrong_arm)   # the Clever Hans demo: start + a wrong arm forced
    ntp_probe.score(lm, ntp_probe.sample_graphs(lm, 500))    # accuracy, per position, teacher-forced, decision
    ntp_probe.patch(lm, ntp_probe.sample_graphs(lm, 20), pair="goal")   # activation patching, layers x positions

==================  ================================================================================
name                what it is (the engine's own, unless marked)
==================  ================================================================================
``load``            a model: a shipped name, a ``.safetensors`` file, a run directory or ``RUN@STEP``
``list_models``     the shipped (and ``NTP_PROBE_MODELS``) models: [(name, path)]
``sample_graphs``   (api) fresh seeded graphs of a model's task
``parse_graph``     (api) a graph from text, either format; checked against a model when given
``generate``        ``count`` random G(d, l) graphs as a ``GraphBatch`` (``.graphs()`` iterates them)
``format_graph``    a graph in the line format (``0,1|1,2|…/0,4=0,3,4``)
``ProbeSession``    one graph under a model: force tokens, step, logit lens, attention, ``then`` for copies
``load_session``    a saved session file (the app's ``w``)
``score``           held-out figures of a model on graphs (``ntp-probe eval``): accuracy, per position, …
``clever_hans``     the Clever Hans measures (``ntp-probe clever-hans``): force a wrong arm on many graphs
``patch``           activation patching (+ edge knock-out, logit attribution) (``ntp-probe patch``)
``heatmap``         ``patch``'s result drawn as a matplotlib Figure (layers × input positions; no pyplot)
``heatmap_png``     the same, written to a PNG file
``Graph`` …         the types: ``Graph``, ``GraphBatch``, ``LoadedModel``, ``Strategy`` (decoding),
                    ``Step`` (one answer position of a session), ``NtpProbeError`` (every error a user can cause)
==================  ================================================================================

No name here is also a module of the package (``ntp_probe.evaluate`` and ``ntp_probe.train`` are modules: the
held-out figures are ``score``; training is ``ntp-probe train`` or ``ntp_probe.train.train``).
"""

__version__ = "0.1.0"

# name -> (module, attribute): the public face, imported on first access (PEP 562)
API = {
    "load": ("ntp_probe.checkpoint", "load"),
    "list_models": ("ntp_probe.checkpoint", "list_models"),
    "sample_graphs": ("ntp_probe.api", "sample_graphs"),
    "parse_graph": ("ntp_probe.api", "parse_graph"),
    "generate": ("ntp_probe.task", "generate"),
    "format_graph": ("ntp_probe.task", "format_line"),
    "ProbeSession": ("ntp_probe.probing", "ProbeSession"),
    "load_session": ("ntp_probe.probing", "load_session"),
    "score": ("ntp_probe.evaluate", "evaluate"),
    "clever_hans": ("ntp_probe.metrics", "clever_hans"),
    "patch": ("ntp_probe.probing.patching", "patch"),
    "heatmap": ("ntp_probe.probing.figure", "heatmap"),
    "heatmap_png": ("ntp_probe.probing.figure", "heatmap_png"),
    "Graph": ("ntp_probe.task", "Graph"),
    "GraphBatch": ("ntp_probe.task", "GraphBatch"),
    "LoadedModel": ("ntp_probe.checkpoint", "LoadedModel"),
    "Strategy": ("ntp_probe.decoding", "Strategy"),
    "Step": ("ntp_probe.probing", "Step"),
    "NtpProbeError": ("ntp_probe.errors", "NtpProbeError"),
}

__all__ = ["__version__", *API]


def __getattr__(name: str):
    try:
        module, attr = API[name]
    except KeyError:
        raise AttributeError(f"module 'ntp_probe' has no attribute {name!r}") from None
    import importlib

    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *API})
