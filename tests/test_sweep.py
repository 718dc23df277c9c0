"""`ntp-probe sweep`: recipe files, runs K at a time, resume, list, table, plot — on tiny real runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file
from typer.testing import CliRunner

from ntp_probe.cli import app

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
eval-every = {every}
eval-count = 32
steps = {steps}
amp = "fp32"
device = "cpu"
threads = 1
"""


def recipe(tmp: Path, body: str, steps: int = 20, every: int = 10) -> Path:
    path = tmp / "recipes.toml"
    path.write_text(TINY.format(steps=steps, every=every) + body)
    return path


def cli(*args: str):
    return CliRunner().invoke(app, list(args))


def sweep_proc(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.Popen([sys.executable, "-m", "ntp_probe", "sweep", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


@pytest.mark.slow
def test_a_two_run_grid_runs_then_is_skipped_listed_and_tabled(tmp_path):
    r = recipe(tmp_path, "[grid]\nseed = [1, 2]\n")
    out = tmp_path / "sweep"
    listed = cli("sweep", "list", str(r), "--out", str(out))
    assert listed.exit_code == 0
    lines = listed.stdout.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith(f"ntp-probe train --out {out}/seed-") for line in lines)
    assert "--seed 1" in lines[0] and "--seed 2" in lines[1] and "--resume" not in listed.stdout

    p = sweep_proc("run", str(r), "--out", str(out), "--jobs", "2")
    _, stderr = p.communicate(timeout=120)
    assert p.returncode == 0, stderr
    assert "2/2 runs finished" in stderr
    for name in ("seed-1", "seed-2"):
        metrics = [json.loads(x) for x in (out / name / "metrics.jsonl").read_text().splitlines()]
        assert [m["step"] for m in metrics] == [10, 20]
    # the weights differ: the seeds reached their runs
    a, b = (load_file(out / n / "model.safetensors") for n in ("seed-1", "seed-2"))
    assert any((a[k] != b[k]).any() for k in a)

    # finished runs are skipped, and listed no more
    again = sweep_proc("run", str(r), "--out", str(out))
    _, stderr = again.communicate(timeout=60)
    assert again.returncode == 0 and "already finished" in stderr
    assert cli("sweep", "list", str(r), "--out", str(out)).stdout == ""

    table = cli("sweep", "table", str(out), "--json")
    assert table.exit_code == 0
    rows = json.loads(table.stdout)
    assert [row["run"] for row in rows] == ["seed-1", "seed-2"]
    assert all(row["shape"] == "G(2,3)" and row["steps"] == 20 and len(row["per_position"]) == 3 for row in rows)
    md = tmp_path / "map.md"
    md.write_text("# the map\n\n<!-- sweep table -->\nold\n<!-- /sweep table -->\n\nafter\n")
    assert cli("sweep", "table", str(out), "--markdown", str(md)).exit_code == 0
    text = md.read_text()
    assert text.startswith("# the map") and text.endswith("after\n") and "old" not in text
    assert text.count("| seed-") == 2
    # archived without weights, the records table the same under their new names
    arch = tmp_path / "archive"
    assert cli("sweep", "archive", str(out / "seed-1"), str(out / "seed-2"), "--into", str(arch), "--prefix", "a-").exit_code == 0
    assert not list(arch.rglob("*.safetensors"))
    archived = json.loads(cli("sweep", "table", str(arch), "--json").stdout)
    assert [r["run"] for r in archived] == ["a-seed-1", "a-seed-2"]
    assert [{k: v for k, v in r.items() if k != "run"} for r in archived] == [{k: v for k, v in r.items() if k != "run"} for r in rows]
    png = tmp_path / "curves.png"
    assert cli("sweep", "plot", str(out), "--out", str(png)).exit_code == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_ctrl_c_checkpoints_and_a_second_run_resumes_to_the_same_weights(tmp_path):
    steps = 400
    r = recipe(tmp_path, "", steps=steps, every=20)
    out = tmp_path / "sweep"
    p = sweep_proc("run", str(r), "--out", str(out))
    metrics = out / "run" / "metrics.jsonl"
    deadline = time.time() + 90
    while time.time() < deadline and not (metrics.is_file() and metrics.read_text().strip()):
        time.sleep(0.1)
    p.send_signal(signal.SIGINT)  # Ctrl-C: every running run checkpoints, the sweep exits 0
    _, stderr = p.communicate(timeout=60)
    assert p.returncode == 0, stderr
    assert "stopped" in stderr
    state = json.loads(cli("watch", str(out / "run"), "--json").stdout)[0]
    assert state["state"] == "stopped" and 0 < state["step"] < steps

    listed = cli("sweep", "list", str(r), "--out", str(out)).stdout.strip().splitlines()
    assert len(listed) == 1 and listed[0].endswith("--resume -q")

    p = sweep_proc("run", str(r), "--out", str(out))
    _, stderr = p.communicate(timeout=120)
    assert p.returncode == 0, stderr
    # an uninterrupted run of the same options gives the same final weights
    straight = tmp_path / "straight"
    line = listed[0].replace(f"--out {out / 'run'}", f"--out {straight}").replace(" --resume", "").split()[2:]
    assert cli("train", *line).exit_code == 0
    a, b = load_file(out / "run" / "model.safetensors"), load_file(straight / "model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_names_come_from_the_options_that_vary_and_runs_follow_their_warm_start(tmp_path):
    from ntp_probe.cli.sweep import load_runs

    r = recipe(tmp_path, '[grid]\nlayers = [1, 2]\nseed = [1, 2]\n[[run]]\nname = "deep"\nlayers = 3\n'
                         '[[run]]\nname = "curriculum"\npath-len = 4\ninit-from = "@deep"\n')
    runs, schema = load_runs(r, tmp_path / "out")
    names = [x.name for x in runs]
    assert names[:4] == ["layers-1_seed-1", "layers-1_seed-2", "layers-2_seed-1", "layers-2_seed-2"]
    assert names.index("deep") < names.index("curriculum")
    cur = runs[names.index("curriculum")]
    argv = cur.argv(schema)
    assert argv[argv.index("--init-from") + 1] == str(tmp_path / "out" / "deep")
    assert argv[argv.index("--path-len") + 1] == "4"


@pytest.mark.parametrize("body, says", [
    ("[grid]\nlayer = [1, 2]\n", "[grid] layer: unknown option"),
    ("[[run]]\nlayers = \"four\"\n", "[[run]] #1 layers: expected an integer, got 'four'"),
    ("[grid]\nseed = []\n", "[grid] seed: an empty list"),
    ("[grid]\nseed = [1, 2\n", "TOML syntax error"),
    ("[[run]]\nname = \"a\"\n[[run]]\nname = \"a\"\n", "two runs are named 'a'"),
    ("[[run]]\nseed = 1\n[[run]]\nseed = 1\n", "two runs are named 'run'"),
    ("[[run]]\nout = \"x\"\n", "[[run]] #1 out: not an option of a sweep's run"),
    ("[[run]]\ninit-from = \"@nobody\"\n", "names no run of this sweep"),
    ("[[run]]\nlayers = 0\n", "run 'run': --layers"),
    ("[[run]]\nobjective = \"nope\"\n", "unknown objective 'nope'"),
])
def test_a_bad_recipe_file_is_one_line_and_nothing_starts(tmp_path, body, says):
    r = recipe(tmp_path, body)
    out = tmp_path / "sweep"
    for cmd in ("run", "list"):
        res = cli("sweep", cmd, str(r), "--out", str(out))
        assert res.exit_code == 2, res.output
        assert len(res.stderr.strip().splitlines()) == 1 and says in res.stderr, res.stderr
        assert str(r) in res.stderr
    assert not out.exists()


def test_the_readme_example_and_the_shipped_recipe_files_parse(tmp_path):
    from ntp_probe.cli.sweep import load_runs

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text().split("## Sweeps: many runs from one recipe file")[1]
    example = tmp_path / "readme.toml"
    example.write_text(readme.split("```toml\n")[1].split("```")[0])
    runs, _ = load_runs(example, tmp_path / "out")
    assert [r.name for r in runs] == ["layers-3_seed-1", "layers-3_seed-2", "layers-4_seed-1", "layers-4_seed-2",
                                      "layers-6", "g2-4"]
    for recipe_file in sorted((root / "docs").rglob("*.toml")):
        assert load_runs(recipe_file, tmp_path / recipe_file.stem)[0], recipe_file
