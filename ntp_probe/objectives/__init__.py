"""Training objectives: one module per objective, registered by name.

An objective decides everything that differs between the ways of training on ``question + answer``:
the inputs, targets and loss of a training batch, what it needs from the model (causal or not, output
heads, extra context), how it decodes (its *stepper*, plugged into ``decoding``'s one loop) and scores
teacher-forced, the inputs the probes read (logit lens, attention), its answer order, and what it
supports (a decision step, attention views, decoding strategies). ``base.Objective`` holds the defaults
(plain teacher forcing); every other module overrides what is its own.

The registry maps a name to its class. A module ``foo_bar.py`` holds the objective ``foo-bar``: the
names are read from the file names, so listing them (``--help``) imports no module and no torch, and
``get`` imports only the module asked for. Adding an objective is one new module here::

    @register
    class MyObjective(Objective):
        name = "my-objective"
        ...

``get(name, **options)`` builds one (options a class does not take are ignored, except a switched-on
flag that belongs to another objective: an error), ``from_meta`` rebuilds one from a checkpoint header
(``Objective.to_meta``), ``names()`` lists them.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING

from ..errors import UsageError
from ._shared import IGNORE  # noqa: F401  (re-exported: callers import it from the package)

if TYPE_CHECKING:
    from .base import Objective

REGISTRY: dict[str, type[Objective]] = {}

# listed first, in this order (the paper's, then past it); any other module follows alphabetically
_FIRST = ("next-token", "reverse", "teacherless", "multi-token", "mlm-u")


def register(cls):
    """Class decorator: add an objective class to the registry under ``cls.name``."""
    REGISTRY[cls.name] = cls
    return cls


def names() -> tuple[str, ...]:
    """The registered objectives' names (from the module file names, without importing them)."""
    found = [m.name.replace("_", "-") for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")
             and m.name != "base"]
    return tuple(sorted(found, key=lambda n: (_FIRST.index(n) if n in _FIRST else len(_FIRST), n)))


def choices() -> str:
    """'a, b or c': the names for help texts."""
    n = names()
    return f"{', '.join(n[:-1])} or {n[-1]}" if len(n) > 1 else "".join(n)


def objective_class(name: str) -> type[Objective]:
    if not isinstance(name, str) or name not in names():
        raise UsageError(f"unknown objective {name!r}; choose one of {', '.join(names())}")
    importlib.import_module(f"{__name__}.{name.replace('-', '_')}")
    if name not in REGISTRY:
        raise UsageError(f"objective module {name.replace('-', '_')}.py registers no objective named {name!r}")
    return REGISTRY[name]


def get(name: str, **options) -> Objective:
    """The objective ``name`` with its options (e.g. ``future=4`` for multi-token, ``mix=0.5`` for hybrid)."""
    cls = objective_class(name)
    for key, value in options.items():
        if key not in cls.options and value is True:  # a switch that belongs to other objectives
            owners = [n for n in names() if key in objective_class(n).options]
            if owners:
                raise UsageError(f"--{key.replace('_', '-')} applies to --objective {' or '.join(owners)} only")
    return cls(**{k: v for k, v in options.items() if k in cls.options})


def from_meta(meta: dict) -> Objective:
    """The objective a checkpoint header describes (``Objective.to_meta``'s output)."""
    return objective_class(meta["name"]).from_meta(meta)


# older names, kept for callers and tests written against the flag-based module
OBJECTIVES = names()
objective_from_meta = from_meta


def make_objective(name: str, n_future: int = 4, mix: float = 0.5) -> Objective:
    return get(name, future=n_future, mix=mix)


def __getattr__(attr: str):
    if attr == "Objective":  # lazily: the base class imports torch
        from .base import Objective

        return Objective
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
