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
from .safejson import is_int, is_real
from .safejson import loads as safe_loads

SWEEP_FILE = "sweep.json"  # the runs of the last `sweep run` on a directory (names, options, train lines)
LOCK_FILE = "sweep.lock"
RECORD_FILE = "record.json"  # an archived run: its header's training record and its curve, no weights
RESERVED = {"out": "the sweep names each run's directory", "resume": "the sweep resumes stopped runs itself",
            "force": "a sweep never overwrites a run", "quiet": "the sweep runs every run quietly"}
RESERVED_NAMES = {SWEEP_FILE: "plan", LOCK_FILE: "lock file"}  # files of the sweep directory: no run may be named so
MAX_RUNS = 1000  # runs in one sweep (the grid's size is multiplied out before any run is built)
MAX_RECIPE_BYTES = 1_000_000
MAX_PLAN_BYTES = 64 * 2**20  # sweep.json of 1,000 runs is a few MB at most
MAX_RECORD_BYTES = 16 * 2**20  # an archived record.json (the shipped ones are < 30 kB)
MAX_MARKDOWN_BYTES = 16 * 2**20  # sweep table --markdown FILE: the file the table is written into
MAX_POINTS = 100_000  # evaluations of one run's curve that are read
MAX_METRICS_BYTES = 64 * 2**20  # a run's metrics.jsonl that the map reads (100,000 evaluations of G(5,5) are ~30 MB)
MAX_CELLS = 5_000_000  # numbers of curves (points × positions) one map holds in memory, all runs together
LOG_TAIL_BYTES = 65_536  # a failed run's last line is read from this much of the end of its log
MAX_PANELS = 60  # sweep plot draws at most this many runs (a note says how many were left out)
MAX_LINES = 10  # ... and at most this many inner answer positions per panel
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
    if spec.kind == "float":
        try:
            finite = math.isfinite(float(value))
        except OverflowError:  # an integer of hundreds of digits
            finite = False
        if not finite:
            raise RecipeError(f"{where} {key}: expected a finite number, got {_show(value)}")
    if spec.kind == "str":
        value = str(value)
        if not value or "\n" in value or "\x00" in value:
            raise RecipeError(f"{where} {key}: expected a one-line value, got {_show(value)}")
    return value


def _show(value) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**30:
        return f"an integer of {len(str(abs(value))):,} digits"
    try:
        text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    except (ValueError, RecursionError):
        text = type(value).__name__
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
            raise RecipeError(f"{where} {_clip(raw)}: not an option of a sweep's run ({RESERVED[key]})")
        if key not in schema:
            raise RecipeError(f"{where} {_clip(raw)}: unknown option (train has no --{key})")
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
    why: str = field(default="", compare=False)  # why the last state() was 'stuck'

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
        """'new', 'finished', 'stopped' (a checkpoint to resume), 'running' (another process holds it), 'empty' (what a
        kill before the first checkpoint leaves: no model, no checkpoint; train starts it over by itself) or 'stuck'
        (a model or other files but no readable checkpoint, and not finished: never started over, since that would
        delete them; ``self.why`` says so in one line)."""
        from .runfiles import STATE_FILE
        from .runs import owner, status

        self.why = ""
        d = self.dir
        if not d.exists() and not d.is_symlink():
            return "new"
        if not d.is_dir():
            self.why = f"{d}: exists and is not a run directory; move it away"
            return "stuck"
        if (d / STATE_FILE).is_file():
            try:
                st = status(d)
            except NtpProbeError:
                st = None  # unreadable: judged below from the model's header and the metrics, like a missing one
            if st is not None:
                if st["state"] == "running":
                    return "running"
                if st["state"] == "target reached" or st["step"] >= self.steps:
                    return "finished"
                return "stopped"
        if owner(d) is not None:
            return "running"
        return self._without_state(d)

    def _without_state(self, d: Path) -> str:
        """A run directory with no readable train_state: finished if its model's header or its metrics reached
        ``steps`` (or the target accuracy); 'empty' if it holds only what a kill before the first checkpoint leaves;
        else 'stuck'."""
        from . import checkpoint as ckpt
        from .runfiles import LOCK_FILE as RUN_LOCK
        from .runfiles import METRICS_FILE, MODEL_FILE, PID_FILE, PROGRESS_FILE, STATE_FILE

        model = d / MODEL_FILE
        step, best = -1, -1.0
        header_ok = False
        if model.is_file():
            try:
                meta = ckpt.read_meta(model)
                header_ok = True
            except NtpProbeError:
                meta = {}
            training = meta.get("training") if isinstance(meta.get("training"), dict) else {}
            if is_int(training.get("steps")):
                step = training["steps"]
            metrics = meta.get("metrics") if isinstance(meta.get("metrics"), dict) else {}
            if is_real(metrics.get("accuracy")):
                best = float(metrics["accuracy"])
        curve = _metrics(d / METRICS_FILE, None)
        if curve:
            step = max(step, max(r["step"] for r in curve))
            best = max(best, max(r["accuracy"] for r in curve))
        target = self.options.get("target-accuracy")
        if step >= self.steps or (is_real(target) and best >= target):
            return "finished"
        try:
            names = {p.name for p in d.iterdir()}
        except OSError as e:
            self.why = f"{d}: cannot read the run directory ({e.strerror or e})"
            return "stuck"
        leftovers = {RUN_LOCK, PID_FILE, PROGRESS_FILE, METRICS_FILE}
        if all(n in leftovers or (n.startswith(".") and n.endswith(".tmp")) for n in names):
            return "empty"
        what = (f"a model (step {step:,} of {self.steps:,})" if header_ok and step >= 0 else
                "a model" if header_ok else "an unreadable model" if model.is_file() else
                f"{len(names - leftovers):,} other files")
        self.why = (f"{d}: holds {what} but no readable {STATE_FILE}: it cannot resume and is not finished; "
                    "move it away to retrain it")
        return "stuck"

    def train_args(self, schema: dict[str, Spec], state: str | None = None) -> list[str]:
        """train's arguments that run (or continue) this run in ``state`` (read from disk when not given). Never
        --force: what a kill before the first checkpoint leaves, train clears by itself; anything else is kept."""
        state = state or self.state()
        if state == "stuck":
            raise UsageError(self.why or f"{self.dir}: cannot resume; move it away to retrain it")
        extra = ["--resume"] if state == "stopped" else []
        return ["train", *self.argv(schema), *extra, "-q"]

    def command(self, schema: dict[str, Spec], program: str = "ntp-probe", state: str | None = None) -> str:
        """The complete ``ntp-probe train …`` line that runs (or continues) this run."""
        return " ".join(shlex.quote(a) for a in [*program.split(), *self.train_args(schema, state)])


def _fmt_arg(value) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)


def read_limited(path: str | Path, what: str, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most ``max_bytes`` (a FIFO is refused, not waited on; /dev/zero never read);
    else a UsageError of one line."""
    import stat

    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise UsageError(f"{path}: cannot read {what} ({e.strerror or e.__class__.__name__})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode) else "not a regular file"
            raise UsageError(f"{path}: is {kind}; {what} is read from a regular file only")
        if st.st_size > max_bytes:
            raise UsageError(f"{path}: {st.st_size:,} bytes; {what} is at most {max_bytes:,}")
        f = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with f:
        try:
            data = f.read(max_bytes + 1)
        except OSError as e:
            raise UsageError(f"{path}: cannot read {what} ({e.strerror or e.__class__.__name__})") from None
    if len(data) > max_bytes:
        raise UsageError(f"{path}: more than {max_bytes:,} bytes; {what} is at most {max_bytes:,}")
    return data


def _first(e: BaseException) -> str:
    text = " ".join(str(e).split()) or e.__class__.__name__
    return text if len(text) <= 120 else text[:117] + "..."


def load(path: str | Path, out: str | Path, schema: dict[str, Spec], default_steps: int = 2000) -> list[Run]:
    """Parse and check a recipe file; the runs in the order they start (a run after the one it starts from)."""
    path = Path(path)
    try:
        text = read_limited(path, "a recipe file", MAX_RECIPE_BYTES)
    except UsageError as e:
        raise RecipeError(str(e)) from None
    try:
        data = tomllib.loads(text.decode("utf-8"))
    except UnicodeDecodeError:
        raise RecipeError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise RecipeError(f"{path}: TOML syntax error: {_first(e)}") from None
    except RecursionError:  # tomllib recurses once per nesting level
        raise RecipeError(f"{path}: nested too deep to be a recipe file") from None
    except (ValueError, OverflowError) as e:  # e.g. an integer of 5,000 digits (Python refuses to convert it)
        raise RecipeError(f"{path}: a value no recipe can hold ({_first(e)})") from None
    where = str(path)
    unknown = [k for k in data if k not in ("train", "grid", "run")]
    if unknown:
        raise RecipeError(f"{where}: unknown table [{_clip(unknown[0])}] (a recipe has [train], [grid] and [[run]])")
    base = _options(f"{where}: [train]", data.get("train", {}), schema)
    grid = _options(f"{where}: [grid]", data.get("grid", {}), schema, lists=True)
    singles = data.get("run", [])
    if not isinstance(singles, list):
        raise RecipeError(f"{where}: run must be written [[run]] (a list of tables)")
    if not grid and not singles and not base:
        raise RecipeError(f"{where}: the recipe has no runs (no [train] options, no [grid] and no [[run]])")
    count = 1 if grid else 0  # multiplied out first: a grid of 13 lists of 10 is 10^13 runs, never built
    for values in grid.values():
        count *= len(values)
        if count > MAX_RUNS:
            break
    count += len(singles)
    if count > MAX_RUNS:
        raise RecipeError(f"{where}: more than {MAX_RUNS:,} runs "
                          f"({' × '.join(str(len(v)) for v in grid.values()) or 0} in [grid], {len(singles):,} [[run]]); "
                          f"a sweep runs at most {MAX_RUNS:,}")
    runs_opts: list[dict] = []
    if grid:
        keys = list(grid)
        for combo in itertools.product(*(grid[k] for k in keys)):
            runs_opts.append({**base, **dict(zip(keys, combo))})
    for i, single in enumerate(singles):
        runs_opts.append({**base, **_options(f"{where}: [[run]] #{i + 1}", single, schema, allow_name=True)})
    if not runs_opts:
        runs_opts.append(dict(base))
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
        if name in RESERVED_NAMES:
            raise RecipeError(f"{where}: a run is named {name!r}, the name of the sweep's {RESERVED_NAMES[name]}; "
                              "give it another name")
        seen[name] = i
        after = None
        init = opts.get("init-from")
        if isinstance(init, str) and init.startswith("@"):
            after = init[1:]
        runs.append(Run(name, opts, out, after, default_steps))
    names = {r.name for r in runs}
    for r in runs:
        if r.name.endswith(".log") and r.name[:-4] in names:
            raise RecipeError(f"{where}: a run is named {r.name!r}, the name of run {r.name[:-4]!r}'s log "
                              f"({out / r.name}); give it another name")
        if r.after is not None and r.after not in names:
            raise RecipeError(f"{where}: run {r.name!r}: init-from = \"@{_clip(r.after)}\" names no run of this sweep "
                              f"(its runs: {', '.join(sorted(names)[:6])}{'…' if len(names) > 6 else ''})")
    return _ordered(runs, where)


def _clip(text: str, n: int = 60) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _cut(names: list[str], head: int = 4, tail: int = 2) -> str:
    """A chain of names, cut short in the middle when long."""
    if len(names) <= head + tail + 1:
        return " → ".join(names)
    return " → ".join([*names[:head], f"… ({len(names) - head - tail:,} more)", *names[-tail:]])


def _ordered(runs: list[Run], where: str) -> list[Run]:
    """File order, except that a run comes after the run it warm-starts from; a circle is an error. An iterative
    walk (a chain of 1,000 warm starts is no recursion): each run has at most one run it starts from."""
    by_name = {r.name: r for r in runs}
    done: list[Run] = []
    placed: set[str] = set()
    for first in runs:
        chain: list[str] = []  # first, the run it starts from, the one that one starts from, …
        on_chain: set[str] = set()
        r: Run | None = first
        while r is not None and r.name not in placed:
            if r.name in on_chain:
                raise RecipeError(f"{where}: init-from runs in a circle: {_cut([*chain, r.name])}")
            chain.append(r.name)
            on_chain.add(r.name)
            r = by_name[r.after] if r.after is not None else None
        for name in reversed(chain):
            placed.add(name)
            done.append(by_name[name])
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
        if state == "stuck":  # a model (or other files) and nothing to resume from: never started over, reported
            job.state, job.note = "failed", job.run.why
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
            state = job.run.state()
            job.state = "finished" if state == "finished" else "stopped"
            if state == "stuck":
                job.state, job.note = "failed", job.run.why
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
        """Run to the end (or until ``stop``), calling ``on_tick`` between polls. If anything fails here (the view
        included), every running training is stopped (it checkpoints) and waited for before the error goes on: a
        sweep never leaves trainings behind."""
        try:
            while self.step():
                if on_tick:
                    on_tick(self)
                time.sleep(self.poll_s)
        except BaseException:
            self.stop()
            self.wait()
            raise
        for j in self.table:
            if j.state in ("pending", "waiting") and self.stopping:
                j.state = "pending"
        if on_tick:
            on_tick(self)
        return self.table


    def wait(self, timeout_s: float = 120.0) -> None:
        """Wait for the running trainings to exit (after ``stop``); past ``timeout_s``, kill them."""
        deadline = time.time() + timeout_s
        for j in self.table:
            if j.proc is None:
                continue
            try:
                j.proc.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(j.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                j.proc.wait()
            j.code, j.proc = j.proc.returncode, None
            j.state = "stopped"


def _last_line(log: Path | None) -> str:
    """The last line of a run's log (its error, most often), from the end of the file only, on one line. Plain
    text: whoever shows it must not read it as markup."""
    if log is None:
        return "see its log"
    try:
        with open(log, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - LOG_TAIL_BYTES))
            text = f.read(LOG_TAIL_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return "see its log"
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("# ")]
    return " ".join(lines[-1].split())[:200] if lines else "no output"


# ------------------------------------------------------------------------------------------------
# reading runs back: the map


def _warn(message: str) -> None:
    from .runs import _warn as warn

    warn(" ".join(message.split()))  # one line, whatever a path holds


Warn = Callable[[str], None] | None


def _read_json(path: Path, what: str, max_bytes: int, max_depth: int = 16):
    """A JSON file a sweep reads, with the project's guarded reader (size, nesting, UTF-8); UsageError on failure."""
    data = read_limited(path, what, max_bytes)
    try:
        return safe_loads(data, max_depth=max_depth, max_chars=max_bytes)
    except ValueError as e:
        raise UsageError(f"{path}: not {what} ({_first(e)[:80]})") from None


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


def _metrics(path: Path, warn: Warn) -> list[dict]:
    """A run's metrics.jsonl through ``runs.read_metrics`` (each line checked), if it is a regular file of a size a
    map reads; else no curve (and a warning)."""
    from .runs import read_metrics

    try:
        size = path.stat().st_size if path.is_file() else None
    except OSError:
        size = None
    if size is None:
        return []
    if size > MAX_METRICS_BYTES:
        if warn:
            warn(f"{path}: {size:,} bytes, more than the {MAX_METRICS_BYTES:,} a map reads; its curve is left out")
        return []
    return read_metrics(path, warn=warn)


class Budget:
    """Numbers of curves still to be held (``MAX_CELLS`` for a map): every count has a memory bound."""

    def __init__(self, cells: int = MAX_CELLS):
        self.cells = cells


def clean_record(raw, name: str, where: Path, warn: Warn = _warn, budget: Budget | None = None) -> dict | None:
    """A run's record as the map reads it, every field checked like a metrics line: ``task``, ``objective`` and
    ``config`` objects, ``command`` a string, ``steps`` a whole number, ``wall_time_s`` a finite number, ``curve``
    evaluation records (``runs.check_record``: a step, an accuracy, per-position lists of one length). A field of the
    wrong type is dropped, a bad point skipped: one warning per file. Not an object: None."""
    from .runs import check_record

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
    from . import checkpoint as ckpt
    from .runfiles import METRICS_FILE, MODEL_FILE

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
        from .task import format_values

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
    from .atomic import atomic_write

    try:
        atomic_write(out, lambda tmp: fig.savefig(tmp, format="png"))
    finally:
        plt.close(fig)
    return out, note


# ------------------------------------------------------------------------------------------------
# archiving: records without weights, never over a run


def _is_sweep_dir(d: Path) -> bool:
    from .runfiles import MODEL_FILE

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
    from .runfiles import LOCK_FILE as RUN_LOCK
    from .runfiles import METRICS_FILE, MODEL_FILE, PID_FILE, STATE_FILE

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


__all__ = ["Spec", "Run", "Sweep", "RecipeError", "load", "write_plan", "records", "record", "clean_record", "rows",
           "markdown", "plot", "archive_plan", "write_archive"]
