"""Archiving: a sweep's runs as records without weights, never over a run."""

from __future__ import annotations

import json
from pathlib import Path

from ..atomic import atomic_write_text
from ..errors import UsageError
from .recipe import (LOCK_FILE, MAX_RECORD_BYTES, RECORD_FILE, RESERVED_NAMES, SWEEP_FILE, _NAME, Warn, _clip,
                     _read_json, _warn)
from .records import Budget, _plan, record


def _is_sweep_dir(d: Path) -> bool:
    from ..runfiles import MODEL_FILE

    return (d / SWEEP_FILE).is_file() and not (d / MODEL_FILE).exists() and not (d / RECORD_FILE).exists()


def _sweep_file(p: Path) -> bool:
    """A file a sweep keeps beside its runs (its plan, its lock, a run's log): skipped by archive without a word."""
    if p.is_dir():
        return False
    if p.name in (SWEEP_FILE, LOCK_FILE):
        return True
    return p.name.endswith(".log") and ((p.parent / p.name[:-4]).is_dir() or (p.parent / SWEEP_FILE).is_file())


def archive_plan(args: list[Path], into: Path, prefix: str = "", warn: Warn = _warn) -> list[tuple[Path, dict]]:
    """What ``sweep archive`` writes: (target record.json, record) per run, everything checked before anything is
    written. A sweep directory stands for its runs (a planned run with no model yet is skipped with a note); its
    plan, lock and logs (``runs/map/*``) are skipped. Refused (UsageError): a path that is no run, a name the recipe
    would refuse, two runs of one name, a target that holds a run (a model, a checkpoint, metrics: a live or finished
    run is never written into) or another record."""
    from ..runfiles import LOCK_FILE as RUN_LOCK
    from ..runfiles import METRICS_FILE, MODEL_FILE, PID_FILE, STATE_FILE

    for ch in prefix:
        if not (ch.isascii() and (ch.isalnum() or ch in "._-")):
            raise UsageError(f"--prefix {_clip(repr(prefix))}: a run name's start: letters, digits, '.', '_' or '-'")
    runs: list[tuple[Path, dict]] = []
    budget = Budget()  # all the runs' curves together
    for arg in args:
        if _sweep_file(arg):
            continue
        if arg.is_dir() and _is_sweep_dir(arg):
            planned = {p["name"] for p in _plan(arg, warn)}
            found = 0
            for sub in sorted(p for p in arg.iterdir() if p.is_dir()):
                rec = record(sub, warn, budget)
                if rec is not None:
                    runs.append((sub, rec))
                    found += 1
                elif sub.name in planned and warn:
                    warn(f"{sub}: no model yet; not archived")
            if not found:
                raise UsageError(f"{arg}: a sweep directory with no run that has a model")
            continue
        rec = record(arg, warn, budget) if arg.is_dir() else None
        if rec is None:
            if arg.is_dir() and arg.parent.is_dir() and arg.name in {p["name"] for p in _plan(arg.parent, None)}:
                if warn:
                    warn(f"{arg}: a planned run with no model yet; not archived")
                continue
            raise UsageError(f"{arg}: not a run directory with a model (or an archived {RECORD_FILE})")
        runs.append((arg, rec))
    if not runs:
        raise UsageError("no run to archive")
    if into.exists() and not into.is_dir():
        raise UsageError(f"--into {into}: exists and is not a directory")
    if into.is_dir() and any((into / f).exists() for f in (MODEL_FILE, STATE_FILE, RECORD_FILE)):
        raise UsageError(f"--into {into}: is a run directory, not a sweep directory; archive into another one")
    plan: list[tuple[Path, dict]] = []
    by_name: dict[str, Path] = {}
    for src, rec in runs:
        name = prefix + src.resolve().name
        if not _NAME.fullmatch(name) or name in RESERVED_NAMES:
            raise UsageError(f"--prefix {_clip(repr(prefix))}: {_clip(repr(name))} is not a run name (letters, digits, "
                             "'.', '_' or '-', starting with a letter or digit, at most 100; not sweep.json or sweep.lock)")
        if name in by_name:
            raise UsageError(f"{by_name[name]} and {src} would both be archived as {name!r}; archive them with "
                             "different --prefix values")
        by_name[name] = src
        target = into / name
        rec = {**rec, "name": name}
        if target.exists() or target.is_symlink():
            if not target.is_dir():
                raise UsageError(f"{target}: exists and is not a directory; nothing archived")
            held = [f for f in (MODEL_FILE, STATE_FILE, METRICS_FILE, PID_FILE, RUN_LOCK)
                    if (target / f).exists()]
            if held:
                raise UsageError(f"{target}: holds a run ({held[0]}); an archive never writes into a run; "
                                 "archive into another directory or with --prefix")
            old = target / RECORD_FILE
            if old.exists():
                try:
                    same = _read_json(old, "a run's record", MAX_RECORD_BYTES) == json.loads(json.dumps(rec))
                except UsageError:
                    same = False
                if not same:
                    raise UsageError(f"{old}: already holds another record; remove it first or archive with --prefix")
        plan.append((target / RECORD_FILE, rec))
    return plan


def write_archive(plan: list[tuple[Path, dict]]) -> None:
    for path, rec in plan:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(rec) + "\n")
