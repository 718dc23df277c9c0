"""Reading runs back (the map): plans, archived records and live runs checked like metrics lines, their table,
Markdown and plot."""

from __future__ import annotations

import math
from pathlib import Path

from ..atomic import atomic_write_text
from ..errors import NtpProbeError, UsageError
from ..safejson import is_int, is_real
from .recipe import (FIT, MAX_CELLS, MAX_LINES, MAX_MARKDOWN_BYTES, MAX_PANELS, MAX_PLAN_BYTES, MAX_POINTS,
                     MAX_RECORD_BYTES, MAX_RUNS, PARTLY, RECORD_FILE, SWEEP_FILE, _NAME, Warn, _clip, _fmt, _metrics,
                     _read_json, _warn, read_limited)


def _scalar(x) -> bool:
    return x is None or isinstance(x, (bool, str)) or is_int(x) or (isinstance(x, float) and math.isfinite(x))


def _plan(out: Path, warn: Warn = _warn) -> list[dict]:
    """The planned runs of DIR/sweep.json (name and options); a file of the wrong shape is skipped with a warning."""
    path = out / SWEEP_FILE
    if not path.exists() and not path.is_symlink():
        return []
    try:
        plan = _read_json(path, "a sweep plan", MAX_PLAN_BYTES)
    except UsageError as e:
        if warn:
            warn(f"{e}; ignored")
        return []
    if not isinstance(plan, dict) or not isinstance(plan.get("runs"), list):
        if warn:
            warn(f"{path}: not a sweep plan (no list of runs); ignored")
        return []
    good, bad, seen = [], 0, set()
    for r in plan["runs"][: MAX_RUNS * 10]:
        opts = r.get("options", {}) if isinstance(r, dict) else None
        if (not isinstance(r, dict) or not isinstance(r.get("name"), str) or not _NAME.fullmatch(r["name"])
                or r["name"] in seen or not isinstance(opts, dict) or not all(_scalar(v) for v in opts.values())):
            bad += 1
            continue
        seen.add(r["name"])
        good.append({"name": r["name"], "options": opts})
    bad += max(0, len(plan["runs"]) - MAX_RUNS * 10)
    if bad and warn:
        warn(f"{path}: skipped {bad:,} planned run{'s' if bad > 1 else ''} of the wrong shape")
    return good


_DICTS = ("task", "objective", "config")


class Budget:
    """Numbers of curves still to be held (``MAX_CELLS`` for a map): every count has a memory bound."""

    def __init__(self, cells: int = MAX_CELLS):
        self.cells = cells


def clean_record(raw, name: str, where: Path, warn: Warn = _warn, budget: Budget | None = None) -> dict | None:
    """A run's record as the map reads it, every field checked like a metrics line: ``task``, ``objective`` and
    ``config`` objects, ``command`` a string, ``steps`` a whole number, ``wall_time_s`` a finite number, ``curve``
    evaluation records (``runs.check_record``: a step, an accuracy, per-position lists of one length). A field of the
    wrong type is dropped, a bad point skipped: one warning per file. Not an object: None."""
    from ..runs import check_record

    if not isinstance(raw, dict):
        if warn:
            warn(f"{where}: a JSON {type(raw).__name__}, not a run's record; skipped")
        return None
    bad: list[str] = []
    rec: dict = {"name": name}
    for key in _DICTS:
        v = raw.get(key, {})
        if not isinstance(v, dict):
            bad.append(f"{key} is not an object")
            v = {}
        rec[key] = v
    cmd = raw.get("command", "")
    if not isinstance(cmd, str):
        bad.append("command is not a string")
        cmd = ""
    rec["command"] = cmd
    steps = raw.get("steps")
    if steps is not None and not (is_int(steps) and 0 <= steps <= 10**12):
        bad.append("steps is not a whole number")
        steps = None
    rec["steps"] = steps
    wall = raw.get("wall_time_s")
    if wall is not None and not (is_real(wall) and math.isfinite(wall) and 0 <= wall <= 1e12):
        bad.append("wall_time_s is not a number")
        wall = None
    rec["wall_time_s"] = wall
    curve = raw.get("curve", [])
    if not isinstance(curve, list):
        bad.append("curve is not a list")
        curve = []
    points, positions, skipped = [], None, []
    budget = budget or Budget()
    for i, point in enumerate(curve[:MAX_POINTS]):
        why = check_record(point, positions)
        if why:
            skipped.append(f"point {i + 1}: {why}")
            continue
        cells = 4 + len(point["per_position"]) + len(point.get("forced_per_position") or [])
        if cells > budget.cells:
            skipped.append(f"{len(curve[:MAX_POINTS]) - i:,} points past the {MAX_CELLS:,} numbers a map holds")
            break
        budget.cells -= cells
        positions = len(point["per_position"])
        points.append(point)
    if len(curve) > MAX_POINTS:
        skipped.append(f"{len(curve) - MAX_POINTS:,} points past the first {MAX_POINTS:,}")
    rec["curve"] = points
    if (bad or skipped) and warn:
        parts = bad + ([f"skipped {len(skipped):,} bad point{'s' if len(skipped) > 1 else ''} ({skipped[0]})"]
                       if skipped else [])
        warn(f"{where}: {'; '.join(parts)}")
    return rec


def record(run: Path, warn: Warn = _warn, budget: Budget | None = None) -> dict | None:
    """What the map needs of one run directory: name, task, objective, config, command, steps, wall time and the
    held-out curve — from its model header and metrics.jsonl, or from an archived ``record.json``. Every field is
    checked (``clean_record``); the name is the directory's."""
    from .. import checkpoint as ckpt
    from ..runfiles import METRICS_FILE, MODEL_FILE

    arch = run / RECORD_FILE
    model = run / MODEL_FILE
    if model.is_file():
        try:
            meta = ckpt.read_meta(model)
        except NtpProbeError:
            return None
        training = meta.get("training") if isinstance(meta.get("training"), dict) else {}
        curve = _metrics(run / METRICS_FILE, warn)
        raw = {"task": meta.get("task", {}), "objective": meta.get("objective", {}),
               "config": training.get("config") if isinstance(training.get("config"), dict) else {},
               "command": training.get("command", ""), "steps": training.get("steps"),
               "wall_time_s": training.get("wall_time_s"), "curve": curve}
        where = model
    elif arch.is_file():
        try:
            raw = _read_json(arch, "a run's record", MAX_RECORD_BYTES)
        except UsageError as e:
            if warn:
                warn(f"{e}; skipped")
            return None
        where = arch
    else:
        return None
    return clean_record(raw, run.name, where, warn, budget)


def records(out: str | Path, warn: Warn = _warn) -> list[dict]:
    """Every run of a sweep directory: its runs' records, then the planned runs not started yet (``curve`` empty,
    ``pending`` true), in the plan's order, then any other run directory in name order."""
    out = Path(out)
    if not out.is_dir():
        raise UsageError(f"{out}: no such sweep directory")
    said: list[str] = []  # the warnings, said once the map has a run (else the one error line says the first)
    plan = {p["name"]: p for p in _plan(out, said.append)}
    try:
        dirs = sorted(p.name for p in out.iterdir() if p.is_dir())
    except OSError as e:
        raise UsageError(f"{out}: cannot read the sweep directory ({e.strerror or e})") from None
    names = list(dict.fromkeys([*plan, *dirs]))
    recs = []
    budget = Budget()  # all runs together
    for name in names:
        rec = record(out / name, said.append, budget) if (out / name).is_dir() else None
        if rec is None and name in plan:
            rec = {"name": name, "pending": True, "options": plan[name]["options"], "curve": []}
        if rec is not None:
            recs.append(rec)
    if not recs:
        why = f"; {said[0]}" if said else f" (no run directory with a model, and no {SWEEP_FILE})"
        raise UsageError(f"{out}: holds no runs{why}")
    if warn:
        for message in said:
            warn(message)
    return recs


def _num(x) -> bool:
    return is_real(x) and math.isfinite(x)


def recipe_text(rec: dict) -> str:
    """The recipe in a few words: objective and its options, size, batch, lr, data, seed, warm start."""
    if rec.get("pending"):
        return _clip(" ".join(f"{k} {_fmt(v)}" for k, v in rec.get("options", {}).items()), 300)
    c = rec.get("config") if isinstance(rec.get("config"), dict) else {}
    obj = rec.get("objective") if isinstance(rec.get("objective"), dict) else {}
    name = _clip(str(obj.get("name", c.get("objective", "?"))))
    for key in sorted(obj):
        if key not in ("name", "n_future"):
            v = obj[key]
            if v is True:
                name += f" {key.replace('_', '-')}"
            elif v not in (False, None, 0) and _scalar(v):
                name += f" {key.replace('_', '-')} {_fmt(v)}"
    if is_int(obj.get("n_future")) and obj["n_future"] != 1:
        name += f" k {obj['n_future']}"
    if c.get("mask_question") and "mask_question" not in obj:
        name += " mask-question"
    parts = [name, f"{_clip(c.get('layers'), 12)}L/{_clip(c.get('d_model'), 12)}d", f"batch {_clip(c.get('batch_size'), 12)}"]
    if _num(c.get("lr")):
        parts.append(f"lr {c['lr']:g}" + (" const" if c.get("min_lr") == c.get("lr") else ""))
    if _num(c.get("weight_decay")) and c["weight_decay"]:
        parts.append(f"wd {c['weight_decay']:g}")
    train_file = c.get("train_file")
    parts.append(f"file {_clip(Path(train_file).name)}" if isinstance(train_file, str) and train_file else "fresh graphs")
    parts.append(f"seed {_clip(c.get('seed'), 24)}")
    if isinstance(c.get("init_from"), str) and c["init_from"]:
        parts.append(f"from {_clip(Path(c['init_from']).name)}")
    return _clip(", ".join(parts), 300)


def verdict(rec: dict) -> str:
    """fit (greedy ≥ 0.95 at some evaluation), partly (an inner answer position ≥ 0.6), plateau, or pending."""
    curve = rec.get("curve") or []
    if rec.get("pending") or not curve:
        return "pending"
    if any(r["accuracy"] >= FIT for r in curve):
        return "fit"
    if any(max((r.get("per_position") or [0, 0])[1:-1], default=0) >= PARTLY for r in curve):
        return "partly"
    return "plateau"


def _shape(rec: dict) -> str:
    t = rec.get("task") if isinstance(rec.get("task"), dict) else {}
    if rec.get("pending"):
        o = rec.get("options", {})
        return f"G({_clip(o.get('degree', '?'), 24)},{_clip(o.get('path-len', '?'), 24)})"
    if t.get("degrees"):
        from ..task import format_values

        try:
            return _clip(f"G({format_values(t['degrees'])},{format_values(t['path_lens'])})", 60)
        except Exception:  # noqa: BLE001 - a record's field of any type: fall back to the plain shape
            pass
    return f"G({_clip(t.get('degree', '?'), 24)},{_clip(t.get('path_len', '?'), 24)})"


def rows(recs: list[dict]) -> list[dict]:
    """One row per run: run, shape, recipe, steps, wall (min), greedy last and best, per position, verdict."""
    out = []
    for r in recs:
        curve = r.get("curve") or []
        last = curve[-1] if curve else {}
        wall = r.get("wall_time_s") or last.get("wall_time_s") or 0
        out.append({"run": r["name"], "shape": _shape(r), "recipe": recipe_text(r),
                    "steps": last.get("step", 0) if curve else 0,
                    "wall_min": round(float(wall) / 60, 1) if _num(wall) else None,
                    "greedy_last": last.get("accuracy"), "greedy_best": max((x["accuracy"] for x in curve), default=None),
                    "per_position": last.get("per_position") or [], "verdict": verdict(r)})
    return out


def _md(text) -> str:
    """A Markdown table cell: '|' escaped, one line."""
    return " ".join(str(text).split()).replace("|", r"\|")


def markdown(recs: list[dict]) -> str:
    lines = ["| run | shape | recipe | steps | wall | greedy last (best) | per position at the end | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows(recs):
        greedy = "–" if row["greedy_last"] is None else f"{row['greedy_last']:.3f} ({row['greedy_best']:.3f})"
        wall = wall_text(row["wall_min"])
        verdict_md = f"**{row['verdict']}**" if row["verdict"] == "fit" else row["verdict"]
        lines.append(f"| {_md(row['run'])} | {_md(row['shape'])} | {_md(row['recipe'])} | {row['steps']:,} | {wall} | "
                     f"{greedy} | {' '.join(f'{x:.2f}' for x in row['per_position'])} | {verdict_md} |")
    return "\n".join(lines)


def wall_text(minutes: float | None) -> str:
    return "–" if minutes is None else ("< 1 min" if minutes < 1 else f"{minutes:.0f} min")


BEGIN, END = "<!-- sweep table -->", "<!-- /sweep table -->"


def write_markdown(path: str | Path, table_md: str) -> None:
    """Write the table to ``path``: between its ``<!-- sweep table -->`` markers when the file has them, else the
    whole file. A file that is not UTF-8 text (or not a regular file, or too large) is refused and left untouched."""
    path = Path(path)
    text = ""
    if path.exists() or path.is_symlink():
        data = read_limited(path, "the --markdown file", MAX_MARKDOWN_BYTES)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"--markdown {path}: not UTF-8 text; left untouched") from None
    if BEGIN in text and END in text.split(BEGIN, 1)[1]:
        head, rest = text.split(BEGIN, 1)
        text = f"{head}{BEGIN}\n{table_md}\n{END}{rest.split(END, 1)[1]}"
    else:
        text = table_md + "\n"
    atomic_write_text(path, text)


def _tex(text: str) -> str:
    """Text for a matplotlib title: '$' would start mathtext."""
    return str(text).replace("$", r"\$")


def plot(recs: list[dict], out: str | Path, title: str = "held-out accuracy per inner answer position") -> tuple[Path, str]:
    """The curves: one panel per run (greedy accuracy and every inner answer position), as a PNG; at most
    ``MAX_PANELS`` runs (a sweep may hold 1,000: the grid stays seconds to draw and far under matplotlib's pixel
    limit), and a note saying how many were left out (also returned; '' when none)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = [r for r in recs if r.get("curve")]
    if not recs:
        raise UsageError("no run has an evaluation yet: nothing to plot")
    total = len(recs)
    note = ""
    if total > MAX_PANELS:
        recs = recs[:MAX_PANELS]
        note = (f"{total:,} runs with curves: the first {MAX_PANELS} drawn (table order); `sweep table` lists them all, "
                f"or archive a subset into its own directory to plot it")
    cols = min(3 if total <= 12 else 6 if total <= 36 else 8, len(recs))
    nrows = -(-len(recs) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.0 * cols, 2.6 * nrows + (0.4 if note else 0)), dpi=100,
                             squeeze=False)
    from matplotlib.ticker import FixedLocator, MaxNLocator
    for k, (ax, r) in enumerate(zip(axes.flat, recs)):
        curve = r["curve"]
        steps = [x["step"] for x in curve]
        L = len(curve[0].get("per_position") or [])
        for i in range(1, min(L - 1, MAX_LINES + 1)):
            ax.plot(steps, [(x.get("per_position") or [0] * L)[i] for x in curve], lw=1.2, label=f"answer pos {i + 1}")
        ax.plot(steps, [x["accuracy"] for x in curve], color="black", lw=1.8, label="greedy")
        ax.set_title(_tex(f"{_clip(r['name'], 50)}: {_shape(r)}"), fontsize=8)
        ax.set_ylim(-0.02, 1.02)
        ax.yaxis.set_major_locator(FixedLocator([0, 0.5, 1]))  # few ticks: a tick's layout is most of a panel's time
        ax.xaxis.set_major_locator(MaxNLocator(4))
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
        if total <= 12 or k == 0:  # many panels: one legend (each costs a layout pass)
            ax.legend(fontsize=6, loc="upper left")
    for ax in list(axes.flat)[len(recs):]:
        ax.axis("off")
    fig.suptitle(_tex(title + (f"\n{note}" if note else "")), fontsize=10)
    if total <= 12:
        fig.tight_layout()
    else:  # tight_layout over tens of panels takes most of a minute; a fixed layout fits these panels
        fig.subplots_adjust(left=0.04, right=0.99, bottom=0.02, top=1 - 1.15 / (2.6 * nrows + 0.4), hspace=0.45,
                            wspace=0.15)
    out = Path(out)
    from ..atomic import atomic_write

    try:
        atomic_write(out, lambda tmp: fig.savefig(tmp, format="png"))
    finally:
        plt.close(fig)
    return out, note


