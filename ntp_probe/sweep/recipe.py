"""Recipe files: read and checked against train's options (``load``), each run's ``ntp-probe train`` line and
its state on disk (``Run``), the plan a sweep directory keeps (``write_plan``)."""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import shlex
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import atomic_write_text
from ..errors import NtpProbeError, UsageError
from ..safejson import is_int, is_real
from ..safejson import loads as safe_loads


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
        from ..runfiles import STATE_FILE
        from ..runs import owner, status

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
        from .. import checkpoint as ckpt
        from ..runfiles import LOCK_FILE as RUN_LOCK
        from ..runfiles import METRICS_FILE, MODEL_FILE, PID_FILE, PROGRESS_FILE, STATE_FILE

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


def _warn(message: str) -> None:
    from ..runs import _warn as warn

    warn(" ".join(message.split()))  # one line, whatever a path holds


Warn = Callable[[str], None] | None


def _read_json(path: Path, what: str, max_bytes: int, max_depth: int = 16):
    """A JSON file a sweep reads, with the project's guarded reader (size, nesting, UTF-8); UsageError on failure."""
    data = read_limited(path, what, max_bytes)
    try:
        return safe_loads(data, max_depth=max_depth, max_chars=max_bytes)
    except ValueError as e:
        raise UsageError(f"{path}: not {what} ({_first(e)[:80]})") from None


def _metrics(path: Path, warn: Warn) -> list[dict]:
    """A run's metrics.jsonl through ``runs.read_metrics`` (each line checked), if it is a regular file of a size a
    map reads; else no curve (and a warning)."""
    from ..runs import read_metrics

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
