"""The app's operation queue: calls of the probing API, applied in order by one thread worker at a time.

An action pushes an ``Op``; if no drain is running, the app starts one (a thread worker) that applies every
queued op, each to the session the previous one returned, until the queue is empty. Nothing here touches the
UI: the drain returns what happened and the app posts it as a message.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import NtpProbeError


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
