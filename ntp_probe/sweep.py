"""Sweeps: a recipe file of training runs, run K at a time, resumed, listed for a scheduler, tabled and plotted.

A recipe file is TOML::

    [train]          # options every run shares: train's option names ('-' or '_')
    objective = "teacherless"
    degree = 2
    path-len = 3
    [grid]           # every combination of these lists is one run
    layers = [3, 4]
    seed = [1, 2]
    [[run]]          # and/or single runs: options on top of [train]
    layers = 6

Each run is an ordinary run directory under the sweep's ``--out DIR``, named from the options that vary
between the runs (``layers-4_seed-2``); a ``[[run]]`` may set ``name`` itself. A run may warm-start from another
run of the same sweep with ``init-from = "@NAME"`` (a curriculum): it starts once NAME has finished. With
``tracker = "wandb"`` (or ``"tensorboard"``) each run is its own tracked run, grouped by the sweep: its
``--tracker-group`` is the sweep directory's name unless the recipe sets ``tracker-group``.

This module is the engine (no UI): ``load`` parses and checks a recipe file against a schema of train's options
(the CLI builds it from the ``train`` command), ``Run`` knows its ``ntp-probe train`` line and its state on disk,
``Sweep`` runs subprocesses K at a time, ``records``/``table``/``plot`` read finished and running runs back.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .atomic import atomic_write_text
from .errors import NtpProbeError, UsageError

SWEEP_FILE = "sweep.json"  # the runs of the last `sweep run` on a directory (names, options, train lines)
LOCK_FILE = "sweep.lock"
RECORD_FILE = "record.json"  # an archived run: its header's training record and its curve, no weights
RESERVED = {"out": "the sweep names each run's directory", "resume": "the sweep resumes stopped runs itself",
            "force": "a sweep never overwrites a run", "quiet": "the sweep runs every run quietly"}
FIT = 0.95  # a run 'fits' once its held-out greedy accuracy reaches this
PARTLY = 0.6  # ... 'partly' once an inner answer position does


class RecipeError(UsageError):
    """A recipe file that cannot be run: one line naming the file and the key (or the line)."""


@dataclass(frozen=True)
class Spec:
    """One train option: its flag and the kind of value it takes ('int', 'float', 'str' or 'flag')."""

    flag: str
    kind: str


def _key(name: str) -> str:
    return name.strip().replace("_", "-")


def _check_value(where: str, key: str, value, spec: Spec):
    """``value`` as the option's kind, or a RecipeError naming the key."""
    want = {"int": "an integer", "float": "a number", "str": "a string or a number", "flag": "true or false"}[spec.kind]
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "str": isinstance(value, (str, int, float)) and not isinstance(value, bool),
        "flag": isinstance(value, bool),
    }[spec.kind]
    if not ok:
        raise RecipeError(f"{where} {key}: expected {want}, got {_show(value)}")
    if spec.kind == "float" and not math.isfinite(float(value)):
        raise RecipeError(f"{where} {key}: expected a finite number, got {value!r}")
    if spec.kind == "str":
        value = str(value)
        if not value or "\n" in value or "\x00" in value:
            raise RecipeError(f"{where} {key}: expected a one-line value, got {_show(value)}")
    return value


def _show(value) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _options(where: str, table, schema: dict[str, Spec], allow_name: bool = False, lists: bool = False) -> dict:
    if not isinstance(table, dict):
        raise RecipeError(f"{where} must be a table of options")
    out = {}
    for raw, value in table.items():
        key = _key(raw)
        if key == "name" and allow_name:
            if not isinstance(value, str) or not _NAME.fullmatch(value):
                raise RecipeError(f"{where} name: expected a run name of letters, digits, '.', '_' or '-', got {_show(value)}")
            out["name"] = value
            continue
        if key in RESERVED:
            raise RecipeError(f"{where} {raw}: not an option of a sweep's run ({RESERVED[key]})")
        if key not in schema:
            raise RecipeError(f"{where} {raw}: unknown option (train has no --{key})")
        if key in out:
            raise RecipeError(f"{where} {raw}: given twice ('-' and '_' name the same option)")
        if lists:
            if not isinstance(value, list):
                raise RecipeError(f"{where} {raw}: expected a list of values, got {_show(value)}")
            if not value:
                raise RecipeError(f"{where} {raw}: an empty list (no run would have a value)")
            out[key] = [_check_value(where, raw, v, schema[key]) for v in value]
        else:
            out[key] = _check_value(where, raw, value, schema[key])
    return out


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def _fmt(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    text = str(value)
    if text.startswith("@"):
        return text[1:]
    return Path(text).stem if "/" in text else text


def _name(options: dict, varying: list[str]) -> str:
    parts = []
    for key in varying:
        if key not in options:
            continue
        value = options[key]
        if value is True:
            parts.append(key)
        elif value is False:
            parts.append(f"no-{key}")
        else:
            parts.append(f"{key}-{_fmt(value)}")
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", "_".join(parts)).strip("-.") or "run"
    return name[:100]


@dataclass
class Run:
    """One run of a sweep: its name, its options (train's, without --out) and its directory."""

    name: str
    options: dict
    out: Path
    after: str | None = None  # the run of the same sweep it warm-starts from (init-from = "@NAME")
    default_steps: int = 2000  # train's --steps when the recipe does not set it

    @property
    def dir(self) -> Path:
        return self.out / self.name

    @property
    def steps(self) -> int:
        return int(self.options.get("steps", self.default_steps))

    def argv(self, schema: dict[str, Spec]) -> list[str]:
        """train's arguments for this run (without 'resume'/'force')."""
        args = ["--out", str(self.dir)]
        for key, value in self.options.items():
            spec = schema[key]
            if spec.kind == "flag":
                if value:
                    args.append(spec.flag)
                continue
            if key == "init-from" and isinstance(value, str) and value.startswith("@"):
                value = str(self.out / value[1:])
            args += [spec.flag, _fmt_arg(value)]
        if self.options.get("tracker") and "tracker-group" not in self.options and "tracker-group" in schema:
            args += [schema["tracker-group"].flag, self.out.resolve().name]  # tracked runs grouped by sweep
        return args

    def state(self) -> str:
        """'new', 'finished', 'stopped' (a checkpoint to resume), 'running' (another process holds it) or 'empty'
        (a directory with nothing to resume: killed before its first checkpoint)."""
        from .runfiles import STATE_FILE
        from .runs import status

        d = self.dir
        if not d.exists():
            return "new"
        if not (d / STATE_FILE).is_file():
            from .runs import owner

            return "running" if owner(d) is not None else "empty"
        try:
            st = status(d)
        except NtpProbeError:
            return "empty"
        if st["state"] == "running":
            return "running"
        if st["state"] == "target reached" or st["step"] >= self.steps:
            return "finished"
        return "stopped"

    def train_args(self, schema: dict[str, Spec], state: str | None = None) -> list[str]:
        """train's arguments that run (or continue) this run in ``state`` (read from disk when not given)."""
        state = state or self.state()
        extra = ["--resume"] if state == "stopped" else (["--force"] if state == "empty" else [])
        return ["train", *self.argv(schema), *extra, "-q"]

    def command(self, schema: dict[str, Spec], program: str = "ntp-probe", state: str | None = None) -> str:
        """The complete ``ntp-probe train …`` line that runs (or continues) this run."""
        return " ".join(shlex.quote(a) for a in [*program.split(), *self.train_args(schema, state)])


def _fmt_arg(value) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)


def load(path: str | Path, out: str | Path, schema: dict[str, Spec], default_steps: int = 2000) -> list[Run]:
    """Parse and check a recipe file; the runs in the order they start (a run after the one it starts from)."""
    path = Path(path)
    try:
        text = path.read_bytes()
    except OSError as e:
        raise RecipeError(f"{path}: cannot read the recipe file ({e.strerror or e})") from None
    if len(text) > 1_000_000:
        raise RecipeError(f"{path}: a recipe file is at most 1 MB")
    try:
        data = tomllib.loads(text.decode("utf-8"))
    except UnicodeDecodeError:
        raise RecipeError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise RecipeError(f"{path}: TOML syntax error: {' '.join(str(e).split())}") from None
    where = str(path)
    unknown = [k for k in data if k not in ("train", "grid", "run")]
    if unknown:
        raise RecipeError(f"{where}: unknown table [{unknown[0]}] (a recipe has [train], [grid] and [[run]])")
    base = _options(f"{where}: [train]", data.get("train", {}), schema)
    grid = _options(f"{where}: [grid]", data.get("grid", {}), schema, lists=True)
    singles = data.get("run", [])
    if not isinstance(singles, list):
        raise RecipeError(f"{where}: run must be written [[run]] (a list of tables)")
    runs_opts: list[dict] = []
    if grid:
        keys = list(grid)
        for combo in itertools.product(*(grid[k] for k in keys)):
            runs_opts.append({**base, **dict(zip(keys, combo))})
    for i, single in enumerate(singles):
        runs_opts.append({**base, **_options(f"{where}: [[run]] #{i + 1}", single, schema, allow_name=True)})
    if not runs_opts:
        runs_opts.append(dict(base))
    if len(runs_opts) > 1000:
        raise RecipeError(f"{where}: {len(runs_opts):,} runs; a sweep runs at most 1,000")
    # the options that vary name the runs
    unnamed = [o for o in runs_opts if "name" not in o]  # the options that vary between them name them
    keys = list(dict.fromkeys(k for o in unnamed for k in o))
    varying = [k for k in keys if len({json.dumps(o.get(k), sort_keys=True) for o in unnamed}) > 1]
    out = Path(out)
    runs: list[Run] = []
    seen: dict[str, int] = {}
    for i, opts in enumerate(runs_opts):
        opts = dict(opts)
        name = opts.pop("name", None) or _name(opts, varying)
        if name in seen:
            raise RecipeError(f"{where}: two runs are named {name!r} (runs {seen[name] + 1} and {i + 1}); "
                              "give a [[run]] a name = \"…\" or vary an option")
        seen[name] = i
        after = None
        init = opts.get("init-from")
        if isinstance(init, str) and init.startswith("@"):
            after = init[1:]
        runs.append(Run(name, opts, out, after, default_steps))
    names = {r.name for r in runs}
    for r in runs:
        if r.after is not None and r.after not in names:
            raise RecipeError(f"{where}: run {r.name!r}: init-from = \"@{r.after}\" names no run of this sweep "
                              f"(its runs: {', '.join(sorted(names)[:6])}{'…' if len(names) > 6 else ''})")
    return _ordered(runs, where)


def _ordered(runs: list[Run], where: str) -> list[Run]:
    """File order, except that a run comes after the run it warm-starts from; a cycle is an error."""
    by_name = {r.name: r for r in runs}
    done: list[Run] = []
    placed: set[str] = set()

    def place(r: Run, chain: tuple[str, ...]) -> None:
        if r.name in placed:
            return
        if r.name in chain:
            raise RecipeError(f"{where}: init-from runs in a circle: {' → '.join((*chain, r.name))}")
        if r.after is not None:
            place(by_name[r.after], (*chain, r.name))
        placed.add(r.name)
        done.append(r)

    for r in runs:
        place(r, ())
    return done


def write_plan(runs: list[Run], out: Path, recipe: Path, schema: dict[str, Spec]) -> None:
    """DIR/sweep.json: which runs the directory holds (so `sweep table` lists the ones not started yet)."""
    plan = {"recipe": str(recipe), "runs": [{"name": r.name, "options": r.options, "after": r.after,
                                             "argv": r.argv(schema)} for r in runs]}
    atomic_write_text(out / SWEEP_FILE, json.dumps(plan, indent=1) + "\n")


# ------------------------------------------------------------------------------------------------
# running


@dataclass
class Job:
    run: Run
    state: str  # pending, waiting (for the run it starts from), running, finished, stopped, failed, skipped
    proc: subprocess.Popen | None = None
    code: int | None = None
    note: str = ""
    log: Path | None = None
    started: float | None = None


@dataclass
class Sweep:
    """Runs a sweep's runs as ``train`` subprocesses, ``jobs`` at a time. ``stop()`` (SIGINT, SIGTERM) makes every
    running run checkpoint and exit, and starts nothing new."""

    runs: list[Run]
    schema: dict[str, Spec]
    jobs: int = 1
    program: list[str] = field(default_factory=lambda: [sys.executable, "-m", "ntp_probe"])
    poll_s: float = 0.5
    env: dict | None = None

    def __post_init__(self):
        self.table = [Job(r, "pending") for r in self.runs]
        self.stopping = False

    def job(self, name: str) -> Job:
        return next(j for j in self.table if j.run.name == name)

    def _start(self, job: Job) -> None:
        state = job.run.state()
        if state == "finished":
            job.state, job.note = "finished", "already finished"
            return
        if state == "running":  # started by hand or by another machine: wait for it, as for a warm start
            job.state, job.note = "waiting", "another process trains it"
            return
        job.run.out.mkdir(parents=True, exist_ok=True)
        job.log = job.run.out / f"{job.run.name}.log"
        with open(job.log, "ab") as log:
            log.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} {job.run.command(self.schema, state=state)}\n".encode())
            log.flush()
            job.proc = subprocess.Popen([*self.program, *job.run.train_args(self.schema, state)],
                                        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True, env=self.env)
        job.state, job.started = "running", time.time()
        job.note = "resumed" if state == "stopped" else ""

    def _reap(self, job: Job) -> None:
        code = job.proc.poll()
        if code is None:
            return
        job.code, job.proc = code, None
        if code == 0:
            job.state = "finished" if job.run.state() == "finished" else "stopped"
        else:
            job.state, job.note = "failed", f"exit {code}: {_last_line(job.log)}"

    def stop(self) -> None:
        self.stopping = True
        for j in self.table:
            if j.proc is not None and j.proc.poll() is None:
                try:
                    os.killpg(j.proc.pid, signal.SIGINT)
                except ProcessLookupError:
                    pass

    def step(self) -> bool:
        """Reap finished processes, start what may start; False once nothing is left to do."""
        from .runs import owner

        for j in self.table:
            if j.proc is not None:
                self._reap(j)
        if not self.stopping:
            for j in self.table:
                if sum(x.proc is not None for x in self.table) >= self.jobs:
                    break
                if j.state not in ("pending", "waiting"):
                    continue
                if j.note == "another process trains it" and owner(j.run.dir) is not None:  # a pid check, not a status read
                    continue
                if j.run.after is not None:
                    dep = self.job(j.run.after)
                    if dep.state in ("failed", "skipped", "stopped") or (dep.state == "finished" and dep.run.state() != "finished"):
                        j.state, j.note = "skipped", f"{dep.run.name} did not finish"
                        continue
                    if dep.state != "finished":
                        j.state = "waiting"
                        continue
                j.note = ""
                self._start(j)
        return any(j.proc is not None for j in self.table) or (
            not self.stopping and any(j.state in ("pending", "waiting") for j in self.table))

    def run(self, on_tick: Callable[[Sweep], None] | None = None) -> list[Job]:
        """Run to the end (or until ``stop``), calling ``on_tick`` between polls."""
        while self.step():
            if on_tick:
                on_tick(self)
            time.sleep(self.poll_s)
        for j in self.table:
            if j.state in ("pending", "waiting") and self.stopping:
                j.state = "pending"
        if on_tick:
            on_tick(self)
        return self.table


def _last_line(log: Path | None) -> str:
    try:
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip() and not ln.startswith("# ")]
    except (OSError, AttributeError):
        return "see its log"
    return " ".join(lines[-1].split())[:200] if lines else "no output"


# ------------------------------------------------------------------------------------------------
# reading runs back: the map


def _plan(out: Path) -> list[dict]:
    try:
        plan = json.loads((out / SWEEP_FILE).read_text())
        return [r for r in plan.get("runs", []) if isinstance(r, dict) and isinstance(r.get("name"), str)]
    except (OSError, ValueError, AttributeError):
        return []


def record(run: Path) -> dict | None:
    """What the map needs of one run directory: name, task, objective, config, command, steps, wall time and the
    held-out curve — from its model header and metrics.jsonl, or from an archived ``record.json``."""
    from . import checkpoint as ckpt
    from .runfiles import MODEL_FILE
    from .runs import read_metrics

    arch = run / RECORD_FILE
    model = run / MODEL_FILE
    if model.is_file():
        try:
            meta = ckpt.read_meta(model)
        except NtpProbeError:
            return None
        training = meta.get("training") if isinstance(meta.get("training"), dict) else {}
        curve = read_metrics(run / "metrics.jsonl", warn=None) if (run / "metrics.jsonl").is_file() else []
        rec = {"name": run.name, "task": meta.get("task", {}), "objective": meta.get("objective", {}),
               "config": training.get("config") if isinstance(training.get("config"), dict) else {},
               "command": training.get("command", ""), "steps": training.get("steps"),
               "wall_time_s": training.get("wall_time_s"), "curve": curve}
    elif arch.is_file():
        try:
            rec = json.loads(arch.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(rec, dict):
            return None
        rec.setdefault("name", run.name)
    else:
        return None
    rec["curve"] = [r for r in rec.get("curve") or [] if isinstance(r, dict) and "accuracy" in r]
    return rec


def records(out: str | Path) -> list[dict]:
    """Every run of a sweep directory: its runs' records, then the planned runs not started yet (``curve`` empty,
    ``pending`` true), in the plan's order, then any other run directory in name order."""
    out = Path(out)
    if not out.is_dir():
        raise UsageError(f"{out}: no such sweep directory")
    plan = [p["name"] for p in _plan(out)]
    dirs = sorted(p.name for p in out.iterdir() if p.is_dir())
    names = list(dict.fromkeys([*plan, *dirs]))
    recs = []
    for name in names:
        rec = record(out / name) if (out / name).is_dir() else None
        if rec is None and name in plan:
            p = next(x for x in _plan(out) if x["name"] == name)
            rec = {"name": name, "pending": True, "options": p.get("options", {}), "curve": []}
        if rec is not None:
            recs.append(rec)
    if not recs:
        raise UsageError(f"{out}: holds no runs (no run directory with a model, and no {SWEEP_FILE})")
    return recs


def recipe_text(rec: dict) -> str:
    """The recipe in a few words: objective and its options, size, batch, lr, data, seed, warm start."""
    if rec.get("pending"):
        return " ".join(f"{k} {_fmt(v)}" for k, v in rec.get("options", {}).items())
    c = rec.get("config") or {}
    obj = rec.get("objective") or {}
    name = str(obj.get("name", c.get("objective", "?")))
    for key in sorted(obj):
        if key not in ("name", "n_future"):
            v = obj[key]
            if v is True:
                name += f" {key.replace('_', '-')}"
            elif v not in (False, None, 0):
                name += f" {key.replace('_', '-')} {_fmt(v)}"
    if obj.get("n_future", 1) not in (1, None):
        name += f" k {obj['n_future']}"
    if c.get("mask_question") and "mask_question" not in obj:
        name += " mask-question"
    parts = [name, f"{c.get('layers')}L/{c.get('d_model')}d", f"batch {c.get('batch_size')}"]
    if isinstance(c.get("lr"), (int, float)):
        parts.append(f"lr {c['lr']:g}" + (" const" if c.get("min_lr") == c.get("lr") else ""))
    if c.get("weight_decay"):
        parts.append(f"wd {c['weight_decay']:g}")
    parts.append(f"file {Path(c['train_file']).name}" if c.get("train_file") else "fresh graphs")
    parts.append(f"seed {c.get('seed')}")
    if c.get("init_from"):
        parts.append(f"from {Path(str(c['init_from'])).name}")
    return ", ".join(parts)


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
    t = rec.get("task") or {}
    if rec.get("pending"):
        o = rec.get("options", {})
        return f"G({o.get('degree', '?')},{o.get('path-len', '?')})"
    if t.get("degrees"):
        from .task import format_values

        try:
            return f"G({format_values(t['degrees'])},{format_values(t['path_lens'])})"
        except (TypeError, ValueError, KeyError):
            pass
    return f"G({t.get('degree', '?')},{t.get('path_len', '?')})"


def rows(recs: list[dict]) -> list[dict]:
    """One row per run: run, shape, recipe, steps, wall (min), greedy last and best, per position, verdict."""
    out = []
    for r in recs:
        curve = r.get("curve") or []
        last = curve[-1] if curve else {}
        wall = r.get("wall_time_s") or last.get("wall_time_s") or 0
        out.append({"run": r["name"], "shape": _shape(r), "recipe": recipe_text(r),
                    "steps": last.get("step", 0) if curve else 0,
                    "wall_min": round(float(wall) / 60, 1) if isinstance(wall, (int, float)) else None,
                    "greedy_last": last.get("accuracy"), "greedy_best": max((x["accuracy"] for x in curve), default=None),
                    "per_position": last.get("per_position") or [], "verdict": verdict(r)})
    return out


def markdown(recs: list[dict]) -> str:
    lines = ["| run | shape | recipe | steps | wall | greedy last (best) | per position at the end | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows(recs):
        greedy = "–" if row["greedy_last"] is None else f"{row['greedy_last']:.3f} ({row['greedy_best']:.3f})"
        wall = wall_text(row["wall_min"])
        verdict_md = f"**{row['verdict']}**" if row["verdict"] == "fit" else row["verdict"]
        lines.append(f"| {row['run']} | {row['shape']} | {row['recipe']} | {row['steps']:,} | {wall} | {greedy} | "
                     f"{' '.join(f'{x:.2f}' for x in row['per_position'])} | {verdict_md} |")
    return "\n".join(lines)


def wall_text(minutes: float | None) -> str:
    return "–" if minutes is None else ("< 1 min" if minutes < 1 else f"{minutes:.0f} min")


BEGIN, END = "<!-- sweep table -->", "<!-- /sweep table -->"


def write_markdown(path: str | Path, table_md: str) -> None:
    """Write the table to ``path``: between its ``<!-- sweep table -->`` markers when the file has them, else the
    whole file."""
    path = Path(path)
    text = path.read_text() if path.is_file() else ""
    if BEGIN in text and END in text.split(BEGIN, 1)[1]:
        head, rest = text.split(BEGIN, 1)
        text = f"{head}{BEGIN}\n{table_md}\n{END}{rest.split(END, 1)[1]}"
    else:
        text = table_md + "\n"
    atomic_write_text(path, text)


def plot(recs: list[dict], out: str | Path, title: str = "held-out accuracy per inner answer position") -> Path:
    """The curves: one panel per run (greedy accuracy and every inner answer position), as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = [r for r in recs if r.get("curve")]
    if not recs:
        raise UsageError("no run has an evaluation yet: nothing to plot")
    cols = min(3, len(recs))
    nrows = -(-len(recs) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.0 * cols, 2.6 * nrows), dpi=100, squeeze=False)
    for ax, r in zip(axes.flat, recs):
        steps = [x["step"] for x in r["curve"]]
        L = len(r["curve"][0].get("per_position") or [])
        for i in range(1, L - 1):
            ax.plot(steps, [(x.get("per_position") or [0] * L)[i] for x in r["curve"]], lw=1.2, label=f"answer pos {i + 1}")
        ax.plot(steps, [x["accuracy"] for x in r["curve"]], color="black", lw=1.8, label="greedy")
        ax.set_title(f"{r['name']}: {_shape(r)}", fontsize=8)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, loc="upper left")
    for ax in list(axes.flat)[len(recs):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out = Path(out)
    from .atomic import atomic_write

    atomic_write(out, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
    return out


__all__ = ["Spec", "Run", "Sweep", "RecipeError", "load", "write_plan", "records", "rows", "markdown", "plot"]
