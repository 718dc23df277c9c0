"""Following a training run from outside it, and the checkpoints it kept. Nothing here takes the run's lock or
writes in the run directory.

* **Kept checkpoints.** ``train --keep-checkpoints`` keeps the weights of every evaluation step as
  ``RUN/kept/step-000250.safetensors``: the very file ``model.safetensors`` was at that step (weights and the
  model header, no optimizer state), written atomically. ``RUN@STEP`` names one wherever a MODEL is taken
  (``checkpoint.resolve``: eval, probe, the app; ``watch RUN@STEP``); the run's files are named in ``runfiles``.
* **Following.** ``stamps(run)`` is the cheap look (a ``stat`` of the checkpoint, the metrics log and the run's
  pid/lock files) a UI makes every second; when it changes, ``look(run, before, after)`` (in a worker) loads
  the new checkpoint, re-reads ``metrics.jsonl`` and tells the run's state as ``watch`` does. A checkpoint
  that cannot be read comes back as a message, never as an exception; a run directory that is gone, too.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ModelFileError, NtpProbeError, UsageError
from .runfiles import KEPT_DIR, LOCK_FILE, METRICS_FILE, MODEL_FILE, PID_FILE, PROGRESS_FILE, STATE_FILE, is_run, \
    kept_files, split_at

# checkpoint and runs import torch, this module does not (they are imported where they are used): the CLI
# checks --follow before the app starts, and the app imports torch only in its loading worker


def check_followable(spec: str | Path) -> Path:
    """The run directory ``tui RUN --follow`` follows; else a UsageError (one line)."""
    text = str(spec)
    if split_at(text) is not None:
        raise UsageError(f"--follow {text}: follows a run's newest checkpoint; give RUN, not RUN@STEP (step through "
                         "its kept checkpoints with , and . in the app)")
    p = Path(text)
    if p.is_file():
        raise UsageError(f"--follow {text}: a model file, not a run directory; follow the directory that "
                         "'ntp-probe train --out' writes")
    if not p.is_dir():
        raise UsageError(f"--follow {text}: no such run directory")
    if not is_run(p):
        raise UsageError(f"--follow {text}: not a training run (no {STATE_FILE}, {PID_FILE} or {LOCK_FILE}); "
                         "a finished model opens without --follow")
    return p


def checkpoint_step(lm) -> tuple[int | None, int | None]:
    """(step, steps of the run) from a loaded checkpoint's header."""
    tr = lm.meta.get("training") if isinstance(getattr(lm, "meta", None), dict) else None
    tr = tr if isinstance(tr, dict) else {}
    step, total = tr.get("steps"), tr.get("target_steps")
    ok = lambda x: x if isinstance(x, int) and not isinstance(x, bool) and x >= 0 else None  # noqa: E731
    return ok(step), ok(total)


# ------------------------------------------------------------------------------------------------
# Following a run


def _stamp(path: Path) -> tuple | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def stamps(run: Path) -> dict[str, tuple | None]:
    """What a follower compares every tick: a few ``stat`` calls, nothing read. ``dir`` None: the run is gone."""
    out = {"dir": _stamp(run)}
    for key, name in (("model", MODEL_FILE), ("metrics", METRICS_FILE), ("pid", PID_FILE), ("lock", LOCK_FILE),
                      ("state", STATE_FILE), ("kept", KEPT_DIR), ("progress", PROGRESS_FILE)):
        out[key] = _stamp(run / name)
    if out["dir"] is not None:
        out["dir"] = out["dir"][:1]  # the directory's own mtime moves with every temp file: only its identity
    return out


@dataclass
class Look:
    """What one look at a followed run found."""

    model: object | None = None  # the new checkpoint (LoadedModel), None: unchanged or unreadable
    error: str | None = None  # why a new checkpoint was skipped
    metrics: list[dict] | None = None  # the evaluation records, when metrics.jsonl changed
    status: dict | None = None  # runs.status (running / stopped / finished), looked at without the lock
    kept: dict[int, Path] = field(default_factory=dict)
    newest: int | None = None  # the step of model.safetensors
    gone: str | None = None  # the run directory is gone
    warnings: list[str] = field(default_factory=list)
    first_checkpoint: int | None = None  # no checkpoint yet: the step the first one is written at, when known


def first_checkpoint(run: Path, step: int, steps: int | None) -> int | None:
    """The step of a live run's first checkpoint (its first evaluation, ``--eval-every``, read from its progress
    file; its last step if sooner), not before ``step``; None when the run does not say."""
    from .runs import _read_progress
    from .safejson import is_int

    every = _read_progress(run).get("train", {}).get("eval_every")
    if not is_int(every) or every < 1:
        return None
    at = max(every, -(-step // every) * every)
    return min(at, steps) if is_int(steps) and steps > 0 else at


def load_checkpoint(path: Path, name: str | None = None, device: str = "cpu"):
    """Load a checkpoint that its writer may replace at any moment: its bytes are copied through one open file
    first, so the header and the weights are of the same step (the writer renames a new file over it, never
    changes this one). Raises ModelFileError."""
    try:
        src = open(path, "rb")  # noqa: SIM115 - one open: one file, whatever is renamed over the path
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such file") from None
    except OSError as e:
        raise ModelFileError(f"{path}: cannot read ({e.strerror or e})") from None
    fd, tmp = tempfile.mkstemp(prefix="ntp-probe-follow-", suffix=".safetensors")
    try:
        with src, os.fdopen(fd, "wb") as dst:
            shutil.copyfileobj(src, dst)
        from .checkpoint import load_file

        lm = load_file(tmp, device, name)
    except OSError as e:
        raise ModelFileError(f"{path}: cannot read ({e.strerror or e})") from None
    except ModelFileError as e:
        raise ModelFileError(str(e).replace(tmp, str(path))) from None
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass
    lm.path = Path(path)
    return lm


def look(run: Path, before: dict | None, after: dict) -> Look:
    """In a worker: what changed between two ``stamps`` of ``run``. Never raises for anything the run holds."""
    from .runs import read_metrics, status

    out = Look()
    if after["dir"] is None:
        out.gone = f"{run}: the run directory is gone"
        return out
    before = before or {}
    if after["model"] is not None and after["model"] != before.get("model"):
        try:
            out.model = load_checkpoint(run / MODEL_FILE, run.name)
            out.newest = checkpoint_step(out.model)[0]
        except NtpProbeError as e:
            out.error = str(e)
        except Exception as e:  # noqa: BLE001 - a file we cannot load is a message, not a crash
            out.error = f"{run / MODEL_FILE}: cannot load ({e.__class__.__name__}: {e})"
    if after["metrics"] != before.get("metrics"):
        out.metrics = read_metrics(run / METRICS_FILE, warn=out.warnings.append)
    try:
        out.status = status(run, peek=True)
    except NtpProbeError:
        out.status = None
    out.kept = kept_files(run)
    if after["model"] is None and out.status is not None:
        out.first_checkpoint = first_checkpoint(run, out.status["step"], out.status["steps"])
    if not run.is_dir():
        out.gone = f"{run}: the run directory is gone"
    return out


__all__ = ["check_followable", "stamps", "look", "Look", "load_checkpoint", "checkpoint_step", "first_checkpoint"]
