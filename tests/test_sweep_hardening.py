"""Issue 30, round 4: hostile inputs to `ntp-probe sweep` (run, list, table, plot, archive). A sweep or archive never
deletes or overwrites a finished run; no text from a file, a path or an error is read as markup; every file a sweep
reads is checked like a metrics line; every count has a memory bound. Each bad input: one line, exit 2."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ntp_probe.cli import app

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "docs" / "teacherless" / "map").glob("*/record.json"))

TINY = """
[train]
objective = "next-token"
degree = 2
path-len = 3
nodes = 10
layers = 1
d_model = 32
heads = 2
batch-size = 16
eval-every = 10
eval-count = 32
steps = {steps}
amp = "fp32"
device = "cpu"
threads = 1
"""


def recipe(tmp: Path, body: str = "", steps: int = 20, head: str | None = None) -> Path:
    path = tmp / "recipes.toml"
    path.write_text((TINY.format(steps=steps) if head is None else head) + body)
    return path


def cli(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_line(res, code: int = 2, says: str = "") -> str:
    """The command failed with one line (no traceback) that says ``says``."""
    assert res.exit_code == code, res.output
    err = res.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in res.output, res.output
    assert says in err, err
    return err


def no_traceback(res) -> None:
    assert res.exit_code in (0, 2), res.output
    assert "Traceback" not in res.output and not isinstance(res.exception, Exception) or isinstance(res.exception, SystemExit), res.output
    if res.exit_code == 2:
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr


def snapshot(d: Path) -> dict:
    return {str(p.relative_to(d)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(d.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------------
# 1 (high): a finished run whose train_state is gone or unreadable is never started over with --force


def _train_run(tmp: Path, steps_now: int, steps_recipe: int = 20):
    """A sweep directory whose one run ('run') was trained to ``steps_now`` of the recipe's ``steps_recipe``."""
    from ntp_probe.cli.sweep import load_runs

    r = recipe(tmp, steps=steps_recipe)
    out = tmp / "sweep"
    runs, schema = load_runs(r, out)
    args = runs[0].train_args(schema)
    args[args.index("--steps") + 1] = str(steps_now)
    assert cli(*args).exit_code == 0
    return r, out, runs[0]


@pytest.mark.parametrize("damage", ["deleted", "unreadable"])
def test_1_a_finished_run_without_its_train_state_is_finished_not_retrained(tmp_path, damage):
    r, out, run = _train_run(tmp_path, 20)
    state = run.dir / "train_state.safetensors"
    if damage == "deleted":
        state.unlink()  # to save space: it is 3x the model
    else:
        state.write_bytes(b"not a checkpoint")
    before = snapshot(run.dir)
    listed = cli("sweep", "list", r, "--out", out)
    assert listed.exit_code == 0 and listed.stdout == "" and "--force" not in listed.output
    res = cli("sweep", "run", r, "--out", out)
    assert res.exit_code == 0, res.output
    assert "already finished" in res.stderr and "1/1 runs finished" in res.stderr
    assert snapshot(run.dir) == before  # model, metrics, everything as it was


def test_1_an_unfinished_run_with_a_model_and_no_train_state_is_reported_never_deleted(tmp_path):
    r, out, run = _train_run(tmp_path, 10)  # 10 of 20 steps, then its train_state is deleted: it cannot resume
    (run.dir / "train_state.safetensors").unlink()
    before = snapshot(run.dir)
    listed = cli("sweep", "list", r, "--out", out)
    assert listed.exit_code == 0 and listed.stdout == "", listed.output  # no line for a scheduler to run
    assert "--force" not in listed.output
    note = listed.stderr.strip()
    assert len(note.splitlines()) == 1 and "cannot resume" in note and "move it away" in note and "step 10 of 20" in note
    res = cli("sweep", "run", r, "--out", out)
    assert res.exit_code == 1, res.output
    assert "failed:" in res.stderr and "cannot resume" in res.stderr and "0/1 runs finished" in res.stderr
    assert snapshot(run.dir) == before
    assert not (out / "run.log").exists()  # nothing was started


def test_1_only_what_a_kill_before_the_first_checkpoint_leaves_starts_over_and_never_with_force(tmp_path):
    from ntp_probe.cli.sweep import load_runs

    r = recipe(tmp_path)
    out = tmp_path / "sweep"
    runs, schema = load_runs(r, out)
    d = runs[0].dir
    d.mkdir(parents=True)
    (d / "train.pid").write_text("999999999\n")  # a dead process's
    (d / "metrics.jsonl").write_text('{"step": 10, "accuracy": 0.1, "per_position": [1, 0, 0]}\n')
    assert runs[0].state() == "empty"
    listed = cli("sweep", "list", r, "--out", out)
    assert listed.exit_code == 0 and listed.stdout.count("ntp-probe train") == 1 and "--force" not in listed.stdout
    (d / "notes.txt").write_text("mine")  # anything else: kept, reported
    assert runs[0].state() == "stuck" and "cannot resume" in runs[0].why
    with pytest.raises(Exception, match="cannot resume"):
        runs[0].train_args(schema)


# ------------------------------------------------------------------------------------------------
# 2, 3, 4, 5, 9, 10, 11: recipe files refused when read, one line, nothing started


GRID13 = "[grid]\n" + "".join(f"{k} = [{', '.join(str(i + 1) for i in range(10))}]\n" for k in (
    "nodes", "future", "targets-per-graph", "d-state", "expand", "batch-size", "warmup", "layers", "d-model", "heads",
    "seed", "eval-every", "eval-count"))


HOSTILE = [
    ("2-grid-of-10^13", GRID13, "more than 1,000 runs (10 × 10 × 10"),
    ("3-nested-5000-deep", "[[run]]\nlayers = " + "[" * 5000 + "]" * 5000 + "\n", "nested too deep"),
    ("4-a-5000-digit-integer", "[[run]]\nlayers = " + "7" * 5000 + "\n", "a value no recipe can hold"),
    ("4-a-400-digit-float-option", "[[run]]\nlr = " + "7" * 400 + "\n", "lr: expected a finite number, got an integer of 400 digits"),
    ("5-init-from-circle-of-1000", "".join(f'[[run]]\nname = "r{i}"\ninit-from = "@r{(i + 1) % 1000}"\n' for i in range(1000)),
     "init-from runs in a circle: r0 → r1 → r2 → r3 → … (995 more) → r999 → r0"),
    ("9-a-run-named-sweep.json", '[[run]]\nname = "sweep.json"\n', "the name of the sweep's plan"),
    ("9-a-run-named-sweep.lock", '[[run]]\nname = "sweep.lock"\n', "the name of the sweep's lock file"),
    ("9-a-run-named-after-a-log", '[[run]]\nname = "a"\n[[run]]\nname = "a.log"\n', "the name of run 'a''s log"),
    ("10-threads-0", "[[run]]\nthreads = 0\n", "--threads 0: must be an integer from 1"),
    ("10-threads--1", "[[run]]\nthreads = -1\n", "--threads -1: must be an integer from 1"),
    ("10-device-cuda:99", '[[run]]\ndevice = "cuda:99"\n', "--device cuda"),
    ("10-device-cuda:x", '[[run]]\ndevice = "cuda:x"\n', "--device cuda"),
]


@pytest.mark.parametrize("name, body, says", HOSTILE, ids=[c[0] for c in HOSTILE])
def test_a_hostile_recipe_is_one_line_at_once_and_nothing_starts(tmp_path, name, body, says):
    r = recipe(tmp_path, body)
    out = tmp_path / "sweep"
    for cmd in ("run", "list"):
        t0 = time.perf_counter()
        res = cli("sweep", cmd, r, "--out", out)
        assert time.perf_counter() - t0 < 20
        err = one_line(res, says=says)
        assert str(r) in err
    assert not out.exists()


@pytest.mark.parametrize("text", ["", "# only a comment\n\n# and another\n", "[train]\n"])
def test_11_an_empty_recipe_has_no_runs(tmp_path, text):
    r = tmp_path / "r.toml"
    r.write_text(text)
    for cmd in ("run", "list"):
        one_line(cli("sweep", cmd, r, "--out", tmp_path / "out"), says="the recipe has no runs")
    assert not (tmp_path / "out").exists()


def test_2_the_grid_is_multiplied_out_before_anything_is_built(tmp_path):
    import tracemalloc

    from ntp_probe.cli.sweep import train_schema
    from ntp_probe.sweep.recipe import RecipeError, load

    r = recipe(tmp_path, GRID13)
    tracemalloc.start()
    with pytest.raises(RecipeError):
        load(r, tmp_path / "out", train_schema())
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20 * 2**20  # 10^13 combinations would be terabytes


def test_5_a_long_chain_of_warm_starts_is_walked_without_recursion(tmp_path):
    from ntp_probe.cli.sweep import train_schema
    from ntp_probe.sweep.recipe import load

    body = "".join(f'[[run]]\nname = "r{i}"\n' + (f'init-from = "@r{i + 1}"\n' if i < 999 else "") for i in range(1000))
    runs = load(recipe(tmp_path, body), tmp_path / "out", train_schema())
    assert [r.name for r in runs] == [f"r{i}" for i in reversed(range(1000))]


# ------------------------------------------------------------------------------------------------
# 6: a failing run's log line is text, never markup — in the live view of a real terminal, and after it


def test_6_a_failed_runs_log_line_with_brackets_in_a_terminal(tmp_path):
    if shutil.which("script") is None:
        pytest.skip("no `script` to give the sweep a terminal")
    r = recipe(tmp_path, '[[run]]\nname = "bad"\ninit-from = "no[/such]"\n[[run]]\nname = "bad2"\ninit-from = "x[/y]"\n',
               steps=2)
    out = tmp_path / "sweep"
    cmd = f"{sys.executable} -m ntp_probe sweep run {r} --out {out} --jobs 2; echo EXIT=$?"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "160", "LINES": "40", "TERM": "xterm"}
    res = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, text=True, timeout=180, env=env,
                         stdin=subprocess.DEVNULL)
    text = res.stdout
    assert "EXIT=1" in text, text
    assert "Traceback" not in text and "MarkupError" not in text, text
    assert "failed:" in text and "no[/such]" in text and "x[/y]" in text, text
    assert "0/2 runs finished" in text


def test_6_an_error_in_the_view_stops_every_training_it_started(tmp_path):
    from ntp_probe.cli.sweep import load_runs
    from ntp_probe.sweep.runner import Sweep

    r = recipe(tmp_path, "[grid]\nseed = [1, 2]\n", steps=100_000)
    runs, schema = load_runs(r, tmp_path / "sweep")
    sweep = Sweep(runs, schema, jobs=2, poll_s=0.05)
    procs = []

    def tick(s):
        procs.extend(j.proc for j in s.table if j.proc is not None)
        raise RuntimeError("the view broke")

    with pytest.raises(RuntimeError, match="the view broke"):
        sweep.run(tick)
    assert len(procs) == 2 and all(p.poll() is not None for p in procs)  # none left behind


# ------------------------------------------------------------------------------------------------
# 7, 8: sweep.json and record.json read like a metrics line


def _archived(d: Path, n: int = 1, names=None) -> list[Path]:
    """``n`` archived runs (shipped records) in sweep directory ``d``."""
    out = []
    for i in range(n):
        name = names[i] if names else f"run-{i}"
        (d / name).mkdir(parents=True)
        shutil.copy(SHIPPED[i % len(SHIPPED)], d / name / "record.json")
        out.append(d / name)
    return out


@pytest.mark.parametrize("plan", ['{"runs": 5}', "null", "[" * 100_000 + "]" * 100_000,
                                  '{"runs": [{"name": "a", "options": []}]}', '{"runs": [{"name": "[/x]"}]}',
                                  '{"runs": [{"name": "a", "options": {"degree": {"x": 1}}}]}', "\xff\xfe", "{", "7" * 5000])
def test_7_a_corrupt_sweep_json_is_skipped_with_a_warning(tmp_path, plan):
    d = tmp_path / "sweep"
    d.mkdir()
    (d / "sweep.json").write_bytes(plan.encode("latin-1") if plan == "\xff\xfe" else plan.encode())
    one_line(cli("sweep", "table", d), says="holds no runs")  # nothing else in it
    one_line(cli("sweep", "plot", d, "--out", tmp_path / "x.png"), says="holds no runs")
    _archived(d)
    res = cli("sweep", "table", d, "--json")
    assert res.exit_code == 0, res.output
    assert [row["run"] for row in json.loads(res.stdout)] == ["run-0"]
    assert "warning:" in res.stderr and "sweep.json" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def _point(**kw):
    return {"step": 10, "accuracy": 0.5, "per_position": [1.0, 0.5, 0.5], **kw}


CORRUPT_RECORDS = {
    "curve-5": {"curve": 5},
    "accuracy-x": {"curve": [_point(accuracy="x")]},
    "per-position-ragged": {"curve": [_point(), _point(step=20, per_position=[1, 0])]},
    "name-markup": {"name": "[/]", "curve": [_point()]},
    "point-without-step": {"curve": [{"accuracy": 0.5, "per_position": [1, 0]}]},
    "step-1e308": {"curve": [_point(step=1e308)]},
    "step-huge-int": {"curve": [_point(step=10**30)]},
    "per-position-strings": {"curve": [_point(per_position=["a", "b"])]},
    "per-position-nan": {"curve": [_point(per_position=[float("nan")])]},
    "wall-x": {"wall_time_s": "x", "curve": [_point(wall_time_s="x")]},
    "wall-1e308": {"wall_time_s": 1e308, "curve": [_point()]},
    "steps-x": {"steps": "x", "curve": [_point()]},
    "task-list": {"task": [1], "curve": [_point()]},
    "task-degree-dict": {"task": {"degree": {"a": [1]}, "path_len": "[/]"}, "curve": [_point()]},
    "task-degrees-junk": {"task": {"degrees": "[/x]", "path_lens": 5}, "curve": [_point()]},
    "objective-list": {"objective": [], "curve": [_point()]},
    "objective-junk": {"objective": {"name": "[bold]x[/]", "n_future": "x", "k": [1], "rate": {"a": 1}}, "curve": [_point()]},
    "config-junk": {"config": {"lr": "x", "weight_decay": "x", "train_file": 5, "init_from": [], "layers": "[/]",
                               "min_lr": {}, "seed": "x" * 10_000}, "curve": [_point()]},
    "config-list": {"config": [], "curve": [_point()]},
    "command-list": {"command": [], "curve": [_point()]},
    "point-a-list": {"curve": [[1, 2]]},
    "points-out-of-order": {"curve": [_point(step=20), _point(step=10)]},
    "per-position-long": {"curve": [_point(per_position=[0.5] * 5000)]},
}


@pytest.mark.parametrize("name", sorted(CORRUPT_RECORDS))
def test_8_a_record_of_the_wrong_shape_is_checked_like_a_metrics_line(tmp_path, name):
    d = tmp_path / "arch"
    base = json.loads(SHIPPED[0].read_text())
    (d / "bad").mkdir(parents=True)
    (d / "bad" / "record.json").write_text(json.dumps({**base, **CORRUPT_RECORDS[name]}))
    _archived(d, names=["good"])
    res = cli("sweep", "table", d, "--json")
    assert res.exit_code == 0, res.output
    assert [row["run"] for row in json.loads(res.stdout)] == ["bad", "good"]  # the record's own name is not trusted
    res = cli("sweep", "table", d)
    assert res.exit_code == 0, res.output
    assert "Traceback" not in res.output


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, "null", "[1, 2]", '"x"', "{", "\xff", "1" * 5000])
def test_8_a_record_that_is_not_an_object_is_skipped_with_one_warning(tmp_path, text):
    d = tmp_path / "arch"
    (d / "bad").mkdir(parents=True)
    (d / "bad" / "record.json").write_bytes(text.encode("latin-1"))
    one_line(cli("sweep", "table", d), says="holds no runs")
    _archived(d, names=["good"])
    res = cli("sweep", "table", d, "--json")
    assert res.exit_code == 0 and [row["run"] for row in json.loads(res.stdout)] == ["good"]
    assert "warning:" in res.stderr and "bad/record.json" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_8_names_and_texts_from_files_are_never_markup_in_tables_and_plots(tmp_path, wide_console):
    d = tmp_path / "arch"
    names = ["[red]run", "a[b]c", r"m$\frac$"]
    _archived(d, 3, names=names)
    rec = json.loads((d / "a[b]c" / "record.json").read_text())
    rec["config"]["train_file"] = "x/[bold]data[red].txt"
    (d / "a[b]c" / "record.json").write_text(json.dumps(rec))
    res = CliRunner().invoke(app, ["sweep", "table", str(d)])
    assert res.exit_code == 0, res.output
    for text in (*names, "[bold]data[red].txt"):
        assert text in res.stdout, res.stdout
    md = tmp_path / "map.md"
    assert cli("sweep", "table", d, "--markdown", md).exit_code == 0
    assert "[red]run" in md.read_text()
    res = cli("sweep", "plot", d, "--out", tmp_path / "c.png")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


# ------------------------------------------------------------------------------------------------
# 14, 17, and issue 29's README line: archive


def _two_sweeps(tmp: Path):
    s1, s2 = tmp / "s1", tmp / "s2"
    _archived(s1, names=["run"])
    _archived(s2, names=["run"])
    return s1 / "run", s2 / "run"


def test_14_two_runs_of_one_name_are_refused_before_anything_is_written(tmp_path):
    a, b = _two_sweeps(tmp_path)
    into = tmp_path / "into"
    one_line(cli("sweep", "archive", a, b, "--into", into), says="would both be archived as 'run'")
    assert not into.exists()


@pytest.mark.parametrize("held", ["model.safetensors", "train_state.safetensors", "metrics.jsonl", "train.pid"])
def test_14_a_target_that_holds_a_run_is_refused(tmp_path, held):
    a, _ = _two_sweeps(tmp_path)
    into = tmp_path / "into"
    (into / "run").mkdir(parents=True)
    (into / "run" / held).write_bytes(b"a live run's file")
    before = snapshot(into)
    one_line(cli("sweep", "archive", a, "--into", into), says="holds a run")
    assert snapshot(into) == before


def test_14_an_archive_never_replaces_another_record_but_may_repeat_itself(tmp_path):
    a, b = _two_sweeps(tmp_path)
    (b / "record.json").write_text(SHIPPED[1].read_text())
    into = tmp_path / "into"
    assert cli("sweep", "archive", a, "--into", into).exit_code == 0
    assert cli("sweep", "archive", a, "--into", into).exit_code == 0  # the same record again: unchanged
    before = snapshot(into)
    one_line(cli("sweep", "archive", b, "--into", into), says="already holds another record")
    assert snapshot(into) == before
    one_line(cli("sweep", "archive", a, "--into", into / "run"), says="is a run directory")


@pytest.mark.parametrize("prefix", ["a\nb", ".", "..", "-", "a/b", "x" * 100, "[/x]", " "])
def test_17_a_prefix_follows_the_recipes_run_name_rule(tmp_path, prefix):
    a, _ = _two_sweeps(tmp_path)
    into = tmp_path / "into"
    one_line(cli("sweep", "archive", a, "--into", into, "--prefix", prefix), says="--prefix")
    assert not into.exists()


def test_issue29_the_readmes_archive_line_skips_a_sweeps_own_files(tmp_path):
    m = tmp_path / "runs" / "map"
    _archived(m, 2, names=["g2-4", "layers-6"])
    (m / "g2-4.log").write_text("# a log\n")
    (m / "layers-6.log").write_text("# a log\n")
    (m / "sweep.json").write_text(json.dumps({"runs": [{"name": "g2-4", "options": {}}, {"name": "layers-6", "options": {}},
                                                        {"name": "later", "options": {}}]}))
    (m / "sweep.lock").write_text("")
    (m / "later").mkdir()  # planned, killed before its first checkpoint: no model yet
    into = tmp_path / "docs" / "my-map"
    res = cli("sweep", "archive", *sorted(m.iterdir()), "--into", into)  # the shell's runs/map/*
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in into.iterdir()) == ["g2-4", "layers-6"]
    assert "later: a planned run with no model yet" in res.stderr
    # and the sweep directory itself stands for its runs
    res = cli("sweep", "archive", m, "--into", tmp_path / "again")
    assert res.exit_code == 0 and sorted(p.name for p in (tmp_path / "again").iterdir()) == ["g2-4", "layers-6"]
    one_line(cli("sweep", "archive", tmp_path / "nothing.txt", "--into", into), says="not a run directory")


# ------------------------------------------------------------------------------------------------
# 16: --markdown F that is not text


@pytest.mark.parametrize("content", [b"\xff\xfe\x00 not utf-8", "dir", "fifo"])
def test_16_a_markdown_file_that_is_not_utf8_text_is_left_untouched(tmp_path, content):
    d = tmp_path / "arch"
    _archived(d)
    md = tmp_path / "map.md"
    if content == "dir":
        md.mkdir()
    elif content == "fifo":
        os.mkfifo(md)
    else:
        md.write_bytes(content)
    before = md.read_bytes() if md.is_file() else None
    one_line(cli("sweep", "table", d, "--markdown", md), says=str(md))
    if before is not None:
        assert md.read_bytes() == before


# ------------------------------------------------------------------------------------------------
# 19: plotting hundreds of runs takes seconds, and stays under matplotlib's pixel limit


def test_19_a_plot_of_760_runs_takes_seconds_with_a_note(tmp_path):
    from PIL import Image

    d = tmp_path / "arch"
    _archived(d, 760)
    png = tmp_path / "curves.png"
    t0 = time.perf_counter()
    res = cli("sweep", "plot", d, "--out", png)
    took = time.perf_counter() - t0
    assert res.exit_code == 0, res.output
    assert "760 runs with curves: the first 60 drawn" in res.stderr
    assert took < 60, took  # minutes before; a few seconds on an idle core
    with Image.open(png) as im:
        assert max(im.size) < 65_536


def test_a_maps_curves_have_a_memory_bound(tmp_path):
    from ntp_probe.sweep.records import Budget, clean_record

    raw = {"curve": [_point(step=i, per_position=[0.5] * 50) for i in range(100)]}
    warned = []
    rec = clean_record(raw, "r", tmp_path / "record.json", warned.append, Budget(540))  # 54 numbers a point: 10 fit
    assert len(rec["curve"]) == 10 and len(warned) == 1 and "90 points past" in warned[0]
