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
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from . import checkpoint as ckpt
from .atomic import atomic_write_text
from .errors import UsageError
from .runfiles import LOCK_FILE, METRICS_FILE, PID_FILE, PROGRESS_FILE, STATE_FILE, split_at
from .safejson import is_int, is_real
from .safejson import loads as safe_loads

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


def _lock_listed(run: Path) -> bool | None:
    """Whether the kernel lists a ``flock`` on the run's lock file (``/proc/locks``, Linux), found without taking
    any lock; None where it cannot tell (no lock file, no ``/proc/locks``)."""
    try:
        ino = str(os.stat(run / LOCK_FILE).st_ino)
        text = Path("/proc/locks").read_text()
    except OSError:
        return None
    for line in text.splitlines():  # "1: FLOCK  ADVISORY  WRITE 5540 fe:00:2146323 0 EOF" ("-> FLOCK": a waiter)
        f = line.split()
        if len(f) >= 6 and f[1] == "FLOCK" and f[5].rpartition(":")[2] == ino:
            return True
    return False


def owner(run: Path, peek: bool = False) -> int | None:
    """The pid of the live process training ``run``, or None (nobody holds its lock). ``peek``: without taking
    even a momentary shared lock (a follower polling every second), from ``/proc/locks`` or else the pid file."""
    pid = _read_pid(run)
    held = _lock_listed(run) if peek else _lock_held(run)
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


# a metrics line is one evaluation: step, accuracy and per_position must be there (train writes all of these),
# the others are checked when present
_CURVES = ("per_position", "forced_per_position")
_NUMBERS = ("lr", "decision_accuracy", "forced_accuracy", "forced_after_decision", "wall_time_s")  # optional, finite
MAX_LINE = 1_000_000
_warned: set[tuple[str, str]] = set()  # (file, its bad lines) already reported


def _show(x) -> str:
    try:
        text = json.dumps(x)
    except (TypeError, ValueError):
        text = repr(x)
    return text if len(text) <= 20 else text[:20] + "…"


def check_record(rec, positions: int | None = None) -> str | None:
    """Why a parsed metrics line is not an evaluation record we can show (None if it is one).
    ``positions``: the answer length of the file's earlier records (every curve must have it)."""
    if not isinstance(rec, dict):
        return f"a JSON {type(rec).__name__}, not an object"
    step = rec.get("step")
    if not is_int(step) or not 0 <= step <= 10**12:
        return f"step {_show(step)} is not a whole number ≥ 0"
    acc = rec.get("accuracy")
    if not is_real(acc) or not math.isfinite(acc):
        return f"accuracy {_show(acc)} is not a number"
    if "loss" in rec and rec["loss"] is not None and not is_real(rec["loss"]):  # NaN is a real loss: a diverged run
        return f"loss {_show(rec['loss'])} is not a number"
    for key in _NUMBERS:
        if key in rec and rec[key] is not None and (not is_real(rec[key]) or not math.isfinite(rec[key])):
            return f"{key} {_show(rec[key])} is not a number"
    for key in _CURVES:
        curve = rec.get(key)
        if curve is None and key == "forced_per_position":  # optional: the greedy curve is the one every view shows
            continue
        if not isinstance(curve, list) or not 0 < len(curve) <= 10_000 or \
                not all(is_real(x) and math.isfinite(x) for x in curve):
            return f"{key} is not a list of numbers"
        if positions is not None and len(curve) != positions:
            return f"{key} has {len(curve)} positions, the lines before it {positions}"
    return None


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def read_metrics(path: Path, warn: Callable[[str], None] | None = _warn) -> list[dict]:
    """The evaluation records of a ``metrics.jsonl``. A line torn by a kill mid-write (the last, without its
    newline) is skipped quietly; any other bad line (not JSON, nested too deep, a step or accuracy that is not a
    number, …) is skipped with one warning per file through ``warn`` (stderr; once per process for the same lines)."""
    if not path.is_file():
        return []
    text = path.read_text(errors="replace")
    lines = text.split("\n")
    if lines and not text.endswith("\n"):
        lines = lines[:-1]  # a torn last line: the writer is mid-append, or was killed there
    out, bad, positions = [], [], None
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = safe_loads(line, max_depth=8, max_chars=MAX_LINE)
        except ValueError as e:
            bad.append(f"line {no}: not JSON ({str(e).splitlines()[0][:60] if str(e) else 'empty'})")
            continue
        why = check_record(rec, positions)
        if why:
            bad.append(f"line {no}: {why}")
            continue
        positions = len(rec["per_position"])
        out.append(rec)
    if bad and warn is not None:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        msg = f"{path}: skipped {len(bad)} bad line{'s' if len(bad) > 1 else ''}: {bad[0]}{more}"
        key = (str(path), "\n".join(bad))
        if key not in _warned:  # watch --follow re-reads the file every second: say it once
            _warned.add(key)
            warn(msg)
    return out


def _read_progress(run: Path) -> dict:
    try:
        rec = safe_loads((run / PROGRESS_FILE).read_text(), max_depth=8)
    except (OSError, ValueError):
        return {}
    if not isinstance(rec, dict) or not is_int(rec.get("step")) or not is_real(rec.get("wall_time_s")):
        return {}
    if not isinstance(rec.get("train"), dict):
        rec["train"] = {}
    return rec


def _whole(x, default):
    return x if is_int(x) and x >= 0 else default


def _finite(x, default):
    return float(x) if is_real(x) and math.isfinite(x) and x >= 0 else default


def status(run: str | Path, at: int | None = None, peek: bool = False) -> dict:
    """Where a run directory stands: state, step/steps, speed, ETA, the last evaluation and the curve.
    ``at``: as of a kept checkpoint (``RUN@STEP``): that step, its evaluation, the curve up to it.
    ``peek``: tell whether it runs without touching its lock (``owner``)."""
    run = Path(run)
    state = run / STATE_FILE
    if not run.is_dir():
        raise UsageError(f"{run}: no such run directory")
    kept = None
    if at is not None:
        kept = ckpt.resolve_at(f"{run}@{at}")[0]  # a step it did not keep: one line
    pid = owner(run, peek)
    if not state.is_file() and not (run / METRICS_FILE).is_file() and pid is None:
        raise UsageError(f"{run}: not a training run (no {STATE_FILE} or {METRICS_FILE})")
    meta = ckpt.read_state_meta(state) if state.is_file() else {}
    beat = _read_progress(run) if pid is not None else {}
    cfg = meta.get("train") if isinstance(meta.get("train"), dict) and meta["train"] else beat.get("train") or {}
    curve = read_metrics(run / METRICS_FILE)
    last = curve[-1] if curve else {}
    step = _whole(meta.get("step"), last.get("step", 0))  # the checkpoint first; never trust a field's type
    steps = _whole(cfg.get("steps"), None)
    wall = _finite(meta.get("wall_time_s"), _finite(last.get("wall_time_s"), 0.0))
    if beat.get("step", 0) > step:  # live: the loop is past its last checkpoint
        step, wall = int(beat["step"]), _finite(beat["wall_time_s"], wall)
    target = cfg.get("target_accuracy") if is_real(cfg.get("target_accuracy")) else None
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
    if kept is not None:  # as of the kept step: the run's state and speed stay the run's own
        curve = [r for r in curve if r["step"] <= at]
        last, step = next((r for r in curve if r["step"] == at), {}), at
    row = {
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
    if kept is not None:
        row["checkpoint"] = str(kept)
    return row


def statuses(runs: list[Path]) -> list[dict]:
    """``status`` of each run; a run directory that holds runs (one per objective) is expanded."""
    out = []
    for r in runs:
        if (at := split_at(r)) is not None:  # RUN@STEP: the run as of a kept checkpoint
            out.append(status(at[0], at=at[1]))
            continue
        if r.is_dir() and not any((r / f).exists() for f in (STATE_FILE, METRICS_FILE, PID_FILE)):
            subs = sorted(p for p in r.iterdir() if any((p / f).is_file() for f in (STATE_FILE, PID_FILE)))
            if subs:
                out += [status(p) for p in subs]
                continue
        out.append(status(r))
    return out


__all__ = ["owner", "check_free", "RunLock", "status", "statuses", "read_metrics", "check_record"]
