"""Training runs on disk: who is training a run right now (a lock), and where a run stands.

``train`` takes ``train.lock`` with ``fcntl.flock`` before it touches anything in a run directory and
holds it while it runs: two trainings of one run cannot both start, and the kernel releases the lock
when the process ends, even by ``kill -9`` (the file stays behind then, unlocked: harmless). ``train.pid`` names the holder (for messages and ``watch``);
it is trusted only while the lock is held, so a stale pid file whose number a new program reused
blocks nothing. ``status(run)`` reads the checkpoint's metadata and ``metrics.jsonl`` (never the
weights) for ``ntp-probe watch``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import time
from pathlib import Path

from . import checkpoint as ckpt
from .atomic import atomic_write_text
from .errors import UsageError

PID_FILE = "train.pid"
LOCK_FILE = "train.lock"  # flock'ed by the training process, removed (while held) when it ends
PROGRESS_FILE = "progress.json"  # step and time between checkpoints, for watch; only while the run is live
METRICS_FILE = "metrics.jsonl"
BEAT_SECONDS = 5.0
LOCK_WAIT_S = 1.0  # a watcher's momentary look at the lock must not make a starting training fail


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _read_pid(run: Path) -> int | None:
    try:
        pid = int((run / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid > 0 else None


def _lock_held(run: Path) -> bool | None:
    """Whether a process holds the run's lock (None: no lock file, a run from before the lock)."""
    try:
        fd = os.open(run / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as e:
        return e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
    finally:
        os.close(fd)  # closing drops the shared lock at once
    return False


def owner(run: Path) -> int | None:
    """The pid of the live process training ``run``, or None (nobody holds its lock)."""
    pid = _read_pid(run)
    held = _lock_held(run)
    if held is None:  # no lock file: trust the pid file if its process lives
        return pid if pid is not None and _alive(pid) else None
    if not held:
        return None
    return pid if pid is not None else -1


def check_free(run: Path) -> None:
    """Refuse a run another live process trains (a quick look; ``RunLock`` is the real guard)."""
    pid = owner(run)
    if pid is not None and pid != os.getpid():
        raise UsageError(_busy(run, pid))


def _busy(run: Path, pid: int | None) -> str:
    who = f"process {pid}" if pid and pid > 0 else "another process"
    return (f"--out {run}: {who} is training this run right now; watch it with 'ntp-probe watch {run}' or stop it "
            "(Ctrl-C there) first")


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


class RunLock:
    """Hold the run: ``flock`` on ``run/train.lock``, then ``train.pid`` (only the writing process, rank 0).

    ``acquire`` is called before anything in the run directory is read or changed; ``release`` (or the
    process's end, however it ends) gives the run back."""

    def __init__(self, run: Path, enabled: bool = True, about: dict | None = None) -> None:
        self.run = run
        self.path = run / PID_FILE
        self.progress = run / PROGRESS_FILE
        self.enabled = enabled
        self.about = about or {}  # the run's settings (objective, task, arch), shown before its first checkpoint
        self._last_beat = 0.0
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        if not self.enabled or self._fd is not None:
            return self
        try:
            fd = os.open(self.run / LOCK_FILE, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as e:
            raise UsageError(f"--out {self.run}: cannot write there ({e.strerror or e})") from None
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if _same_file(fd, self.run / LOCK_FILE):
                    break
                # the holder removed the file as we locked it: lock the new one
                os.close(fd)
                fd = os.open(self.run / LOCK_FILE, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
                continue
            except OSError as e:
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES) or time.monotonic() > deadline:
                    os.close(fd)
                    if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                        raise UsageError(_busy(self.run, _read_pid(self.run))) from None
                    raise
                time.sleep(0.05)
        self._fd = fd
        try:
            atomic_write_text(self.path, f"{os.getpid()}\n")
        except BaseException:
            self.release()
            raise
        return self

    def __enter__(self) -> RunLock:
        return self.acquire()

    def beat(self, step: int, wall_time_s: float, loss: float) -> None:
        """Record where the loop is (at most every BEAT_SECONDS), so that watch moves between checkpoints."""
        now = time.monotonic()
        if not self.enabled or now - self._last_beat < BEAT_SECONDS:
            return
        self._last_beat = now
        with contextlib.suppress(OSError):  # progress is a courtesy: never stop training for it
            atomic_write_text(self.progress, json.dumps(
                {"step": step, "wall_time_s": round(wall_time_s, 2), "loss": loss, "train": self.about}))

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self.progress.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            if self.path.read_text().strip() == str(os.getpid()):
                self.path.unlink()
        with contextlib.suppress(OSError):  # removed while held; a waiter that opened it re-checks (_same_file)
            if _same_file(self._fd, self.run / LOCK_FILE):
                (self.run / LOCK_FILE).unlink()
        os.close(self._fd)  # drops the flock
        self._fd = None

    def __exit__(self, *exc) -> None:
        self.release()


def read_metrics(path: Path) -> list[dict]:
    """The evaluation records of a ``metrics.jsonl`` (a torn last line, from a kill mid-write, is skipped)."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and "step" in rec:
            out.append(rec)
    return out


def _read_progress(run: Path) -> dict:
    try:
        rec = json.loads((run / PROGRESS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return rec if isinstance(rec, dict) and isinstance(rec.get("step"), int) else {}


def status(run: str | Path) -> dict:
    """Where a run directory stands: state, step/steps, speed, ETA, the last evaluation and the curve."""
    run = Path(run)
    state = run / ckpt.STATE_FILE
    if not run.is_dir():
        raise UsageError(f"{run}: no such run directory")
    pid = owner(run)
    if not state.is_file() and not (run / METRICS_FILE).is_file() and pid is None:
        raise UsageError(f"{run}: not a training run (no {ckpt.STATE_FILE} or {METRICS_FILE})")
    meta = ckpt.read_state_meta(state) if state.is_file() else {}
    beat = _read_progress(run) if pid is not None else {}
    cfg = meta.get("train") or beat.get("train") or {}
    curve = read_metrics(run / METRICS_FILE)
    last = curve[-1] if curve else {}
    step = int(meta.get("step", last.get("step", 0)))
    steps = cfg.get("steps")
    wall = float(meta.get("wall_time_s", last.get("wall_time_s", 0.0)))
    if beat.get("step", 0) > step:  # live: the loop is past its last checkpoint
        step, wall = int(beat["step"]), float(beat["wall_time_s"])
    target = cfg.get("target_accuracy")
    if pid is not None:
        state_name = "running"
    elif steps is not None and step >= steps:
        state_name = "finished"
    elif target is not None and last.get("accuracy", -1) >= target and last.get("step") == step:
        state_name = "target reached"
    else:
        state_name = "stopped"
    per_step = wall / step if step else None
    eta = (steps - step) * per_step if per_step is not None and steps and state_name in ("running", "stopped") else None
    return {
        "run": str(run),
        "state": state_name,
        "pid": pid,
        "objective": cfg.get("objective"),
        "task": {k: cfg.get(k) for k in ("degree", "path_len", "nodes")},
        "arch": cfg.get("arch", "gpt"),
        "step": step,
        "steps": steps,
        "wall_time_s": round(wall, 1),
        "seconds_per_step": None if per_step is None else round(per_step, 4),
        "eta_s": None if eta is None else round(eta),
        "last": {k: last[k] for k in ("step", "loss", "accuracy", "decision_accuracy", "forced_after_decision",
                                      "per_position") if k in last},
        "curve": [{k: r.get(k) for k in ("step", "accuracy", "per_position")} for r in curve],
    }


def statuses(runs: list[Path]) -> list[dict]:
    """``status`` of each run; a run directory that holds runs (one per objective) is expanded."""
    out = []
    for r in runs:
        if r.is_dir() and not any((r / f).exists() for f in (ckpt.STATE_FILE, METRICS_FILE, PID_FILE)):
            subs = sorted(p for p in r.iterdir() if any((p / f).is_file() for f in (ckpt.STATE_FILE, PID_FILE)))
            if subs:
                out += [status(p) for p in subs]
                continue
        out.append(status(r))
    return out


__all__ = ["owner", "check_free", "RunLock", "status", "statuses", "read_metrics"]
