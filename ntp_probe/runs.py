"""Training runs on disk: who is training a run right now (a pid file), and where a run stands.

``train`` writes ``train.pid`` while its loop runs and refuses a run directory that a live process
holds; ``status(run)`` reads the checkpoint's metadata and ``metrics.jsonl`` (never the weights) for
``ntp-probe watch``.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

from . import checkpoint as ckpt
from .errors import UsageError

PID_FILE = "train.pid"
PROGRESS_FILE = "progress.json"  # step and time between checkpoints, for watch; only while the run is live
METRICS_FILE = "metrics.jsonl"
BEAT_SECONDS = 5.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def owner(run: Path) -> int | None:
    """The pid of the live process training ``run``, or None (no pid file, or its process is gone)."""
    try:
        pid = int((run / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid > 0 and _alive(pid) else None


def check_free(run: Path) -> None:
    pid = owner(run)
    if pid is not None and pid != os.getpid():
        raise UsageError(f"--out {run}: process {pid} is training this run right now; watch it with "
                         f"'ntp-probe watch {run}' or stop it (Ctrl-C there) first")


class RunLock:
    """Hold ``run/train.pid`` while training (only the writing process, rank 0, takes it)."""

    def __init__(self, run: Path, enabled: bool = True, about: dict | None = None) -> None:
        self.path = run / PID_FILE
        self.progress = run / PROGRESS_FILE
        self.enabled = enabled
        self.about = about or {}  # the run's settings (objective, task, arch), shown before its first checkpoint
        self._last_beat = 0.0

    def __enter__(self) -> RunLock:
        if self.enabled:
            ckpt.atomic_write_text(self.path, f"{os.getpid()}\n")
        return self

    def beat(self, step: int, wall_time_s: float, loss: float) -> None:
        """Record where the loop is (at most every BEAT_SECONDS), so that watch moves between checkpoints."""
        now = time.monotonic()
        if not self.enabled or now - self._last_beat < BEAT_SECONDS:
            return
        self._last_beat = now
        with contextlib.suppress(OSError):  # progress is a courtesy: never stop training for it
            ckpt.atomic_write_text(self.progress, json.dumps(
                {"step": step, "wall_time_s": round(wall_time_s, 2), "loss": loss, "train": self.about}))

    def __exit__(self, *exc) -> None:
        if self.enabled:
            with contextlib.suppress(OSError):
                self.progress.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                if self.path.read_text().strip() == str(os.getpid()):
                    self.path.unlink()


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
