import json

import pytest
from typer.testing import CliRunner

from conftest import FIXTURES
from ntp_probe import __version__
from ntp_probe.cli import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_version():
    r = run("--version")
    assert r.exit_code == 0 and __version__ in r.output


def test_generate_is_seeded_and_parses(tmp_path):
    a = run("generate", "--degree", 2, "--path-len", 5, "--nodes", 50, "--count", 5, "--seed", 3)
    b = run("generate", "--degree", 2, "--path-len", 5, "--nodes", 50, "--count", 5, "--seed", 3)
    assert a.exit_code == 0 and a.stdout == b.stdout and len(a.stdout.splitlines()) == 5
    out = tmp_path / "g.txt"
    assert run("generate", "--count", 7, "--out", out).exit_code == 0
    assert len(out.read_text().splitlines()) == 7


def test_generate_impossible_topology_is_exit_2():
    r = run("generate", "--degree", 10, "--path-len", 10, "--nodes", 20)
    assert r.exit_code == 2 and "needs 91 distinct nodes" in r.stderr


def test_train_then_eval_json(tmp_path):
    out = tmp_path / "run"
    r = run("train", "--out", out, "--degree", 2, "--path-len", 3, "--nodes", 10, "--objective", "reverse", "--steps", 20,
            "--batch-size", 32, "--layers", 1, "--d-model", 32, "--heads", 2, "--eval-every", 10, "--eval-count", 50, "-q")
    assert r.exit_code == 0, r.output
    assert (out / "model.safetensors").is_file() and (out / "metrics.jsonl").is_file()
    r = run("eval", out, "--data", FIXTURES / "deg_2_path_3_nodes_10_test_head100.txt", "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    for key in ("count", "accuracy", "per_position", "forced_accuracy", "forced_per_position", "decision_accuracy"):
        assert key in res
    assert res["count"] == 100 and len(res["per_position"]) == 3
    r = run("eval", out, "--count", 30)
    assert r.exit_code == 0 and "greedy accuracy" in r.stdout
    # a second train into the same directory is refused
    r = run("train", "--out", out, "--steps", 1)
    assert r.exit_code == 2 and "--resume" in r.stderr


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["eval", "no-such-model"], "not found"),
        (["eval", "{fixture}"], "not a readable safetensors"),
        (["train", "--out", "{tmp}/x", "--d-model", 30, "--heads", 4], "divisible"),
        (["train", "--out", "{tmp}/x", "--objective", "sideways"], "unknown objective"),
        (["train", "--out", "{tmp}/x", "--arch", "lstm"], "--arch lstm: choose gpt or mamba"),
    ],
)
def test_errors_are_one_line_exit_2(tmp_path, args, fragment):
    args = [str(a).format(fixture=FIXTURES / "README.md", tmp=tmp_path) for a in args]
    r = run(*args)
    assert r.exit_code == 2, r.output
    assert fragment in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.output


def test_eval_with_mismatched_data_is_exit_2(trained, tmp_path):
    lm = trained("next-token")
    r = run("eval", lm.path, "--data", FIXTURES / "deg_2_path_5_nodes_50_test_head200.txt")
    assert r.exit_code == 2 and "out of range" in r.stderr


def test_models_lists_the_shipped_models_in_80_columns():
    rows = {r["name"]: r for r in json.loads(runner.invoke(app, ["models", "--json"]).stdout)}
    assert rows["g2-5-mamba-reverse"]["arch"] == "mamba" and rows["g2-5-reverse"]["arch"] == "gpt"
    assert rows["g2-5-next-token"]["objective"] == "next-token" and 0.45 < rows["g2-5-next-token"]["accuracy"] < 0.55
    r = runner.invoke(app, ["models"], env={"COLUMNS": "80"})
    assert r.exit_code == 0
    lines = r.stdout.splitlines()
    assert max(map(len, lines)) <= 80 and "…" not in r.stdout  # nothing truncated
    assert any(line.split()[:3] == ["g2-5-mamba-next-token", "next-token", "mamba"] for line in lines)


def test_models_lists_an_unreadable_model_with_its_error(trained, tmp_path):
    import shutil

    shutil.copytree(trained("next-token").path.parent, tmp_path / "good", ignore=shutil.ignore_patterns("train_state*"))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model.safetensors").write_bytes(b"not a safetensors file")
    r = runner.invoke(app, ["models"], env={"NTP_PROBE_MODELS": str(tmp_path), "COLUMNS": "80"})
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert any(line.startswith("good ") for line in lines)
    bad = [line for line in lines if line.startswith("broken: ")]
    assert len(bad) == 1 and "safetensors" in bad[0].lower()
