"""Experiment tracking: a run's evaluations mirrored to Weights & Biases or TensorBoard (``train --tracker``).

Both are optional extras (``pip install 'ntp-probe[wandb]'`` / ``'ntp-probe[tensorboard]'``); nothing here imports
either package until a tracker is opened, so ``import ntp_probe.tracking`` is free. ``check`` (called by
``train.validate``, so before anything starts, also for every run of a sweep) turns a tracker that is not installed
into one ``UsageError`` naming the extra.

The training loop calls a ``Tracker`` where it appends to ``metrics.jsonl``, with that same record (plain Python
numbers, already on the host: the tracker adds no device sync to the loop):

* ``log(rec)``: the record as scalars: ``train/loss``, ``train/lr``, ``train/s_per_step`` (seconds per step since the
  previous evaluation), ``train/wall_time_s``, and every held-out figure under ``held_out/`` (``held_out/accuracy``,
  ``held_out/decision_accuracy``, ``held_out/per_position/3``, ``held_out/by_topology/2,5/accuracy`` …), at the
  record's step;
* ``close()``: flush and end the tracked run.

The run's config (train's options, the command line) is the tracked run's config (TensorBoard: a text summary).

Resuming (``train --resume``) continues the same tracked run:

* wandb: the run id is kept in ``RUN/tracker.json``; ``wandb.init(id=…, resume="allow")`` continues it (offline:
  a second offline directory with the same id, which ``wandb sync`` merges). Its files go to ``RUN/wandb/`` unless
  ``WANDB_DIR`` says otherwise; the project is ``WANDB_PROJECT`` (default ``ntp-probe``), the run's name the run
  directory's, its group ``--tracker-group`` (a sweep sets its directory's name), else ``WANDB_RUN_GROUP``.
* tensorboard: the same log directory ``RUN/tensorboard/``, opened with ``purge_step`` = the resumed step + 1, so
  points logged after the last checkpoint (by a run killed before it saved) are dropped by TensorBoard.

A fresh start (``--force``, or a run killed before its first checkpoint started again) clears ``tracker.json`` and
``RUN/tensorboard/``: a new tracked run. ``RUN/wandb/`` (offline runs perhaps not synced yet) is left alone.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import secrets
import shutil
import string
from pathlib import Path

from .atomic import atomic_write_text
from .errors import UsageError
from .runfiles import TENSORBOARD_DIR, TRACKER_FILE, WANDB_DIR

# tracker -> (the module it needs, the extra that installs it)
TRACKERS = {"wandb": ("wandb", "wandb"), "tensorboard": ("tensorboard", "tensorboard")}
TRAIN_KEYS = ("loss", "lr", "s_per_step", "wall_time_s")  # a record's keys that go under train/; the rest is held_out/
SKIP = ("step", "eval_count")  # the x axis, and a constant (in the config)


def check(name: str | None, group: str | None = None) -> None:
    """``--tracker`` (and ``--tracker-group``) checked without importing anything: a known tracker whose package is
    installed. Else one line naming the extra."""
    if name is None:
        if group is not None:
            raise UsageError("--tracker-group names a tracked run's group: give --tracker wandb or tensorboard too")
        return
    if name not in TRACKERS:
        raise UsageError(f"--tracker {name}: choose {' or '.join(TRACKERS)}")
    module, extra = TRACKERS[name]
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise UsageError(f"--tracker {name} needs the {extra} extra: pip install 'ntp-probe[{extra}]'")
    if group is not None and (not group.strip() or len(group) > 128 or any(c in group for c in "\r\n\0")):
        raise UsageError(f"--tracker-group {group!r:.60}: a name of 1 to 128 characters on one line")


def scalars(rec: dict, prefix: str = "") -> dict[str, float]:
    """A metrics record as flat scalars (``train/…``, ``held_out/…``); None, text and booleans are left out."""
    out: dict[str, float] = {}

    def put(key: str, value) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                put(f"{key}/{k}", v)
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                put(f"{key}/{i}", v)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[key] = float(value)

    for key, value in rec.items():
        if key in SKIP:
            continue
        put(f"{prefix}{'train' if key in TRAIN_KEYS else 'held_out'}/{key}", value)
    return out


class Tracker:
    """What the training loop calls. ``start``/``wall``: the step and the training time it starts from (for s/step)."""

    name = ""

    def __init__(self, out: Path, step: int, wall: float):
        self.out, self._last = out, (step, wall)
        self.where = ""  # where its files are, for the user

    def log(self, rec: dict) -> None:
        step, wall = int(rec["step"]), float(rec.get("wall_time_s", self._last[1]))
        if step > self._last[0]:
            rec = {**rec, "s_per_step": (wall - self._last[1]) / (step - self._last[0])}
        self._last = (step, wall)
        self._write(step, scalars(rec))

    def _write(self, step: int, values: dict[str, float]) -> None:
        raise NotImplementedError

    def close(self, interrupted: bool = False) -> None:
        pass


class TensorBoardTracker(Tracker):
    name = "tensorboard"

    def __init__(self, out: Path, config: dict, resume: bool, step: int, wall: float):
        super().__init__(out, step, wall)
        from torch.utils.tensorboard import SummaryWriter

        logdir = out / TENSORBOARD_DIR
        # resumed from step S: points past S (logged before a kill, never checkpointed) are purged on reading
        self.writer = SummaryWriter(str(logdir), purge_step=step + 1 if resume else None, flush_secs=3600)
        if not resume:
            self.writer.add_text("config", "```json\n" + json.dumps(config, indent=1, default=str) + "\n```", 0)
            self.writer.flush()
        self.where = f"tensorboard --logdir {logdir}"

    def _write(self, step: int, values: dict[str, float]) -> None:
        for tag, v in values.items():
            self.writer.add_scalar(tag, v, step)
        self.writer.flush()  # an evaluation is on disk when its metrics line is

    def close(self, interrupted: bool = False) -> None:
        self.writer.close()


def _new_id() -> str:
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(8))


def read_state(out: Path) -> dict:
    """``RUN/tracker.json`` (what a tracker keeps to resume: the wandb run id); {} when absent or unreadable."""
    try:
        data = json.loads((out / TRACKER_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class WandbTracker(Tracker):
    name = "wandb"

    def __init__(self, out: Path, config: dict, resume: bool, step: int, wall: float, group: str | None):
        super().__init__(out, step, wall)
        import wandb

        state = read_state(out).get("wandb") if resume else None
        run_id = state.get("id") if isinstance(state, dict) and isinstance(state.get("id"), str) else None
        if run_id is None or not run_id.isalnum():
            run_id = _new_id()
            # kept before the run starts: a kill right after still resumes this id
            atomic_write_text(out / TRACKER_FILE, json.dumps({"wandb": {"id": run_id}}) + "\n")
        wdir = os.environ.get("WANDB_DIR") or str(out)
        if not os.environ.get("WANDB_DIR"):
            (out / WANDB_DIR).mkdir(exist_ok=True)
        try:
            self.run = wandb.init(project=os.environ.get("WANDB_PROJECT") or "ntp-probe", id=run_id, resume="allow",
                                  name=out.resolve().name, group=group, dir=wdir, job_type="train",
                                  settings=wandb.Settings(silent=True, console="off"))
            self.run.config.update(config, allow_val_change=True)  # a resumed run may have changed --steps
        except Exception as e:  # no login (online, no API key), no network, a bad WANDB_ setting …
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise UsageError(f"--tracker wandb: cannot start the tracked run ({first}); WANDB_MODE=offline logs "
                             "without an account") from None
        offline = bool(getattr(self.run, "offline", False))
        self.where = f"wandb run {run_id} (offline: {Path(self.run.dir).parent})" if offline else \
            f"wandb run {run_id} ({getattr(self.run, 'url', None) or 'online'})"

    def _write(self, step: int, values: dict[str, float]) -> None:
        self.run.log(values, step=step)

    def close(self, interrupted: bool = False) -> None:
        self.run.finish(exit_code=0)


def start(name: str, out: Path, config: dict, resume: bool, step: int = 0, wall: float = 0.0,
          group: str | None = None) -> Tracker:
    """Open the run's tracker (rank 0, the run directory locked and prepared). ``step``/``wall``: where it starts."""
    check(name, group)
    try:
        if name == "tensorboard":
            return TensorBoardTracker(out, config, resume, step, wall)
        return WandbTracker(out, config, resume, step, wall, group)
    except ImportError as e:  # installed but broken (a missing dependency of its own)
        _, extra = TRACKERS[name]
        raise UsageError(f"--tracker {name}: its package does not import ({e}); reinstall the extra: "
                         f"pip install 'ntp-probe[{extra}]'") from None


def clear(out: Path) -> None:
    """A fresh start in ``out``: the old run's tracker id and TensorBoard log go (not ``RUN/wandb/``'s offline runs)."""
    with contextlib.suppress(FileNotFoundError):
        (out / TRACKER_FILE).unlink()
    shutil.rmtree(out / TENSORBOARD_DIR, ignore_errors=True)
