"""What the files of a run directory are called: the one place that names them (``train`` writes them;
``checkpoint``, ``runs``, ``follow``, ``sweep``, ``report`` and the app read them). Imports no torch and no other
module of the project, so anything may import it.

A run directory (``train --out RUN``)::

    RUN/model.safetensors          the newest weights with the model header (what ``load(RUN)`` opens)
    RUN/train_state.safetensors    model + optimizer + step, for --resume
    RUN/metrics.jsonl              one evaluation a line
    RUN/train.pid, RUN/train.lock  while a process trains it (the lock is flock'ed)
    RUN/progress.json              step and time between checkpoints, while it runs
    RUN/kept/step-000250.safetensors   with --keep-checkpoints: the model file as it was at that step
    RUN/tracker.json               with --tracker wandb: the tracked run's id (--resume continues it)
    RUN/tensorboard/               with --tracker tensorboard: its event files
    RUN/wandb/                     with --tracker wandb: its local (offline) run files, unless WANDB_DIR is set

``RUN@STEP`` names a kept checkpoint wherever a MODEL is taken: ``split_at`` reads the form, and
``checkpoint.resolve_at`` (with the rest of model resolution) finds the file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

MODEL_FILE = "model.safetensors"
STATE_FILE = "train_state.safetensors"
METRICS_FILE = "metrics.jsonl"
PID_FILE = "train.pid"
LOCK_FILE = "train.lock"  # flock'ed by the training process, removed (while held) when it ends
PROGRESS_FILE = "progress.json"  # step and time between checkpoints, for watch; only while the run is live
KEPT_DIR = "kept"
TRACKER_FILE = "tracker.json"  # train --tracker: what resumes the same tracked run (the wandb run id)
TENSORBOARD_DIR = "tensorboard"
WANDB_DIR = "wandb"
KEPT_NAME = re.compile(r"step-([0-9]{1,12})\.safetensors")
AT = re.compile(r"(.+)@([0-9]{1,12})")


def kept_name(step: int) -> str:
    return f"step-{step:06d}.safetensors"


def kept_files(run: str | Path) -> dict[int, Path]:
    """The run's kept checkpoints, step -> file, in step order (none: an empty dict)."""
    d = Path(run) / KEPT_DIR
    try:
        names = os.listdir(d)
    except OSError:
        return {}
    found = {int(m.group(1)): d / n for n in names if (m := KEPT_NAME.fullmatch(n))}
    return dict(sorted(found.items()))


def split_at(spec: str | Path) -> tuple[Path, int] | None:
    """``RUN@STEP`` -> (RUN, STEP); None for anything else (also for a file or directory whose own name ends
    in ``@N``)."""
    text = str(spec)
    m = AT.fullmatch(text)
    if m is None or Path(text).exists():
        return None
    return Path(m.group(1)), int(m.group(2))


def is_run(d: Path) -> bool:
    """A directory ``train`` writes or wrote: its training state, its pid or lock file, or kept checkpoints."""
    return any((d / f).exists() for f in (STATE_FILE, PID_FILE, LOCK_FILE, KEPT_DIR))


def run_of(path: Path | None) -> Path | None:
    """The run directory a model file belongs to (``RUN/model.safetensors`` or ``RUN/kept/step-N.safetensors``),
    or None (a shipped model, a loose file)."""
    if path is None:
        return None
    path = Path(path)
    if path.parent.name == KEPT_DIR and KEPT_NAME.fullmatch(path.name):
        return path.parent.parent
    if path.name == MODEL_FILE and is_run(path.parent):
        return path.parent
    return None
