"""The app's model work: the operation queue (calls of the probing API, applied in order by one thread worker
at a time), loading the models, and what the panels show about a session (``probe``), all run in workers.

An action pushes an ``Op``; if no drain is running, the app starts one (a thread worker) that applies every
queued op, each to the session the previous one returned, until the queue is empty. Nothing here touches the
UI: the drain returns what happened and the app posts it as a message.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from textual.message import Message

from ..errors import NtpProbeError
from .widgets.base import Probed

DEFAULT_MODEL = "g2-5-next-token"
DEFAULT_COMPARE = ("g2-5-reverse", "g2-5-teacherless")
STAR_MODEL = "star-next-token"  # trained on every shape G(2..5, 3..6): any star a user types
STAR_COMPARE = ("star-reverse", "star-teacherless")


@dataclass
class ModelsLoaded(Message):
    models: list
    errors: list[str]
    seconds: float


@dataclass
class Decoded(Message):
    seq: int  # operations applied so far
    probed: Probed | None  # None when no session exists yet (errors only)
    errors: list[str]
    loaded: str | None = None  # what an op loaded (a file line, a session): its graph goes in the editor


def shipped(name: str) -> bool:
    """Whether a model NAME is in the model folders (``checkpoint.model_dirs``' order, without importing torch)."""
    dirs = [Path(os.environ["NTP_PROBE_MODELS"])] if os.environ.get("NTP_PROBE_MODELS") else []
    try:
        dirs.append(Path.cwd() / "models")
    except OSError:  # the working directory is gone
        pass
    dirs.append(Path(__file__).resolve().parents[2] / "models")
    try:
        return any((d / name / "model.safetensors").is_file() for d in dirs)
    except OSError:
        return False


def default_models() -> tuple[str, tuple[str, ...]]:
    """The app's models with no argument: star-next-token with star-reverse beside it when they exist, else the
    G(2,5) ones."""
    if shipped(STAR_MODEL):
        return STAR_MODEL, tuple(m for m in STAR_COMPARE if shipped(m))
    return DEFAULT_MODEL, DEFAULT_COMPARE


def load_models(specs: Sequence, optional: set, cancelled: Callable[[], bool]) -> tuple[list, list[str]] | None:
    """In the loading worker: torch imported, each spec loaded (already-loaded models kept, an ``optional`` one
    that does not resolve skipped); (models, errors), or None if ``cancelled()``."""
    models, errors = [], []
    try:
        import torch

        torch.set_num_threads(1)  # tiny models: one thread is fastest and leaves the other cores alone
        from ..checkpoint import load, resolve
    except Exception as e:  # noqa: BLE001 - a broken torch install is a message, not a crash
        return [], [f"cannot import the engine: {e}"]
    for spec in specs:
        if cancelled():
            return None
        if not isinstance(spec, (str, Path)):
            models.append(spec)  # an already-loaded model (tests, notebooks)
            continue
        try:
            if spec in optional:
                try:
                    resolve(spec)
                except NtpProbeError:
                    continue
            models.append(load(spec))
        except NtpProbeError as e:
            errors.append(str(e))
        except Exception as e:  # noqa: BLE001
            errors.append(f"{spec}: cannot load ({e.__class__.__name__}: {e})")
    # import what the main thread will need while still in the worker (torch is loaded by now)
    from .. import cards, probing, task  # noqa: F401
    from ..probing import patching  # noqa: F401

    return models, errors


def probe(s, other, models: Sequence, t0: float, why: bool = False) -> Probed:
    """In the worker: what the panels show about ``s`` — the comparison model ``other``'s decode, attention, the
    logit lens, and with ``why`` the causal probes (goal-pair patching and edge knock-out at the token on show)."""
    mirror = mirror_error = None
    if other is s.lm:  # a loaded session switched the main model to the one on the side
        other = next((m for m in models if m is not s.lm), None)
    if other is not None:
        try:
            mirror = s.mirror(other)
        except NtpProbeError as e:
            mirror_error = str(e)
        except Exception as e:  # noqa: BLE001
            mirror_error = f"{e.__class__.__name__}: {e}"
    try:
        attention = s.attention()
    except Exception:  # noqa: BLE001 - the panel says "not available"
        attention = None
    try:
        lens = s.layers()
    except Exception:  # noqa: BLE001
        lens = None
    causal, causal_error = None, None
    if why:
        causal, causal_error = why_probe(s)
    return Probed(s, mirror, mirror_error, None if other is None else other.display_name, attention, lens,
                  time.perf_counter() - t0, causal, causal_error)


def why_probe(s) -> tuple[dict | None, str | None]:
    """Goal-pair patching at the answer token on show, with the edge knock-out where the model has attention."""
    from ..probing.patching import patch

    knock = s.lm.arch != "mamba"
    try:
        return patch(s.lm, [s.graph], "goal", step=s.current, edges=knock), None
    except NtpProbeError as e:
        return None, str(e)
    except Exception as e:  # noqa: BLE001 - the panel says why
        return None, f"{e.__class__.__name__}: {e}"


@dataclass(frozen=True)
class Op:
    """One queued operation.

    ``change``: a ``ProbeSession`` method that changes a session in place, applied to a copy
    (``session.then(change, *args, **kwargs)``); ``start``: builds a session when there is none yet (or always,
    without a ``change``); ``effect``: uses the session without changing it (saving). ``loads`` names what it
    loads (its graph goes in the editor); ``done`` is said when it succeeds. ``Op()`` changes nothing (a redraw)."""

    change: Callable | None = None
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    start: Callable | None = None
    effect: Callable | None = None
    loads: str | None = None
    done: str | None = None

    def run(self, s):
        if self.start is not None and (s is None or self.change is None):
            return self.start()
        if s is None:
            raise NtpProbeError("no graph yet")
        if self.effect is not None:
            self.effect(s)
        if self.change is None:
            return s.copy()  # a copy all the same: the session on show is never touched again (its mirror cache)
        return s.then(self.change, *self.args, **self.kwargs)


@dataclass
class Drained:
    """What one drain did: the session after it, how many ops have been applied in all, what went wrong."""

    session: object | None
    applied: int
    errors: list[str]
    loaded: str | None


class OpQueue:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ops: deque[Op] = deque()
        self._draining = False
        self._session = None  # the session after the last op applied
        self.applied = 0  # ops applied since the start, in order

    @property
    def busy(self) -> bool:
        with self._lock:
            return self._draining or bool(self._ops)

    def push(self, op: Op) -> bool:
        """Queue ``op``; True if the caller must start a drain (none is running)."""
        with self._lock:
            self._ops.append(op)
            if self._draining:
                return False
            self._draining = True
            return True

    def drain(self, cancelled: Callable[[], bool], say: Callable[[str], None]) -> Drained:
        """In the worker: apply the queued ops in order until none is left (or ``cancelled()``). An op that fails
        leaves the session as it was; its error is collected, never raised."""
        errors: list[str] = []
        loaded = None
        while True:
            with self._lock:
                if not self._ops or cancelled():
                    self._draining = False
                    return Drained(self._session, self.applied, errors, loaded)
                op = self._ops.popleft()
            try:
                self._session = op.run(self._session)
                loaded = op.loads if op.loads is not None else loaded
                if op.done is not None:
                    say(op.done)
            except NtpProbeError as e:
                errors.append(str(e))
            except Exception as e:  # noqa: BLE001 - a message, never a crash
                errors.append(f"{e.__class__.__name__}: {e}")
            self.applied += 1
