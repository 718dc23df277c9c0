"""Hostile inputs (issue 15, items 2, 6, 7, 11, 13): crafted model headers, malformed session files,
graphs that are not path-stars for clever-hans, bad metrics lines. Each bad file is built here; at the CLI
each is one line on stderr with exit code 2 (or works, where that is what a user expects)."""

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import tiny_config
from hostile import GRAPH, hostile_models, hostile_sessions, session_data, tiny_gpt, write_model
from ntp_probe import checkpoint as ckpt
from ntp_probe.cli import app
from ntp_probe.errors import GraphError, ModelFileError, NtpProbeError
from ntp_probe.metrics import clever_hans, path_star_mask
from ntp_probe.probing import load_session
from ntp_probe.runs import read_metrics, status
from ntp_probe.task import GraphBatch, generate, parse
from ntp_probe.train import train

runner = CliRunner()


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(r, fragment=None):
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    lines = [ln for ln in r.stderr.strip().splitlines() if not ln.startswith(("training on ", "step "))]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in r.output
    if fragment:
        assert fragment in lines[0], lines[0]


# ------------------------------------------------------------------------------------------------
# 2. Hostile model headers


@pytest.fixture(scope="module")
def bad_models(tmp_path_factory):
    return hostile_models(tmp_path_factory.mktemp("hostile-models"))


def test_hostile_model_headers_are_one_line_errors(bad_models):
    for name, (path, fragment) in bad_models.items():
        t0 = time.perf_counter()
        with pytest.raises(ModelFileError) as e:
            ckpt.load(path)
        msg = str(e.value)
        assert fragment in msg and "\n" not in msg and len(msg) < 400, (name, msg)
        assert time.perf_counter() - t0 < 2, name  # the million heads were never built
    assert len(bad_models) == 27


@pytest.mark.parametrize("command", [["eval", "--count", "5"], ["probe", "--graph", GRAPH], ["clever-hans", "--count", "5"]])
def test_hostile_model_headers_at_the_cli(bad_models, command):
    for name, (path, fragment) in bad_models.items():
        r = cli(command[0], path, *command[1:])
        assert_one_line_error(r, fragment)


def test_hostile_headers_through_init_from_reproduce_and_models(bad_models, tmp_path, monkeypatch):
    nested, _ = bad_models["metadata-nested-100k-objects"]
    tiny = ["--degree", 2, "--path-len", 3, "--nodes", 10, "--layers", 1, "--d-model", 32, "--heads", 2, "--steps", 1, "-q"]
    assert_one_line_error(cli("train", "--out", tmp_path / "run", "--init-from", nested, *tiny), "nested more than")
    assert_one_line_error(cli("reproduce", "--models", nested, "--out", tmp_path / "rep"), "nested more than")
    # a model directory whose file lacks task.nodes: `models` lists it as unreadable, no KeyError
    d = tmp_path / "models" / "broken"
    d.mkdir(parents=True)
    (d / "model.safetensors").write_bytes(bad_models["no-task-nodes"][0].read_bytes())
    for name in ("card-a-list", "card-accuracy-a-string"):
        (tmp_path / "models" / name).mkdir()
        (tmp_path / "models" / name / "model.safetensors").write_bytes(bad_models[name][0].read_bytes())
    monkeypatch.setenv("NTP_PROBE_MODELS", str(tmp_path / "models"))
    r = cli("models", "--json")
    assert r.exit_code == 0, r.output
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert "task has no 'nodes'" in rows["broken"]["error"]
    assert "not an object" in rows["card-a-list"]["error"] and "not a number" in rows["card-accuracy-a-string"]["error"]
    assert "g2-5-next-token" in rows and "error" not in rows["g2-5-next-token"]
    r = cli("models")
    assert r.exit_code == 0 and "cannot be read" in r.stdout and "broken" in r.stdout


def test_sound_headers_still_load(tmp_path):
    # the checks reject nothing real: a multi-token model with its heads, an mlm-u model, old files without new fields
    from ntp_probe.objectives import make_objective

    m = tiny_gpt(n_future=3)
    meta = ckpt.make_meta(m, ckpt.TaskSpec(2, 3, 10), make_objective("multi-token", 3))
    assert ckpt.load(write_model(tmp_path / "mt.safetensors", meta, m)).objective.heads == 3
    m = tiny_gpt(block_size=18, causal=False)
    meta = ckpt.make_meta(m, ckpt.TaskSpec(2, 3, 10), make_objective("mlm-u"))
    assert ckpt.load(write_model(tmp_path / "mlmu.safetensors", meta, m)).objective.causal is False
    m = tiny_gpt()
    meta = ckpt.make_meta(m, ckpt.TaskSpec(2, 3, 10), make_objective("next-token"))
    for key in ("causal", "d_state", "d_conv", "expand", "arch", "n_future", "dropout", "bias"):
        del meta["config"][key]
    assert ckpt.load(write_model(tmp_path / "old.safetensors", meta, m)).arch == "gpt"


# ------------------------------------------------------------------------------------------------
# 7. Session files (and 13: forced nodes that are not in the graph)


def _write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    return path


def test_hostile_session_files(trained, tmp_path):
    lm = trained("next-token")
    cases = hostile_sessions(lm.path)
    for name, (text, fragment) in cases.items():
        f = _write(tmp_path / f"{name}.json", text)
        with pytest.raises(NtpProbeError) as e:
            load_session(f, None if name.startswith("model-") else lm, [lm])
        msg = str(e.value)
        assert fragment in msg and "\n" not in msg and len(msg) < 400, (name, msg)
        assert str(f) in msg, (name, msg)
    assert len(cases) == 40


def test_hostile_session_files_at_the_cli(trained, tmp_path):
    lm = trained("next-token")
    for name, (text, fragment) in hostile_sessions(lm.path).items():
        r = cli("probe", "--load", _write(tmp_path / f"{name}.json", text))
        assert_one_line_error(r, fragment)


def test_session_special_files(trained, tmp_path):
    lm = trained("next-token")
    assert_one_line_error(cli("probe", "--load", tmp_path), "Is a directory")
    assert_one_line_error(cli("probe", "--load", "/dev/zero"), "is a device")  # was: read until out of memory


def test_session_with_forced_nodes_outside_its_graph(trained, tmp_path):
    """The app lets you force any token the model proposes, so such a session loads (an off-graph probe), and says so."""
    lm = trained("next-token")
    d = session_data(lm.path)
    d["forced"] = {"1": 7}  # node 7 is a valid id of the model, not a node of the graph
    f = _write(tmp_path / "off.json", json.dumps(d))
    s = load_session(f, lm)
    assert s.forced == {1: 7} and s.tokens[1] == 7
    assert len(s.notes) == 1 and "node 7 at answer token 2 is not in the graph" in s.notes[0]
    r = cli("probe", "--load", f, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["tokens"][1] == "7"
    warnings = r.stderr.strip().splitlines()
    assert len(warnings) == 1 and warnings[0].startswith("warning: ") and "not in the graph" in warnings[0]
    # a sound session round-trips with no note
    s.force(1, 3)
    s.save(tmp_path / "good.json")
    r = cli("probe", "--load", tmp_path / "good.json", "--json")
    assert r.exit_code == 0 and r.stderr == ""


# ------------------------------------------------------------------------------------------------
# 6. clever-hans on graphs that are not path-stars

OOD = {
    "start-with-3-children": "0,1|1,2|0,3|0,4/0,2=0,1,2",
    "start-with-1-child": "0,1|1,2|2,3|3,4/0,2=0,1,2",
    "cycle": "0,1|1,2|2,1|0,3/0,2=0,1,2",
    "branch": "0,1|1,2|1,3|0,4/0,2=0,1,2",
    "goal-inside-an-arm": "0,1|1,2|0,3|3,4/0,1=0,1",
}


def test_clever_hans_skips_graphs_that_are_not_path_stars(trained, tmp_path):
    lm = trained("next-token")
    good = [parse("0,1|1,2|0,3|3,4/0,4"), parse("5,6|6,7|5,8|8,9/5,7")]
    ood = [parse(t) for t in OOD.values()]
    assert all(g.ood_reasons(2, 3) for g in ood)
    assert path_star_mask(GraphBatch.from_graphs(good), 2, 3, 10).all()
    res = clever_hans(lm, good + [g for g in ood if len(g.path) == 3])
    assert res["count"] == 2 and res["skipped_ood"] == 4
    with pytest.raises(GraphError, match="none of the 4 graphs is a path-star"):
        clever_hans(lm, [g for g in ood if len(g.path) == 3])
    # at the CLI (the crash: RuntimeError "shape '[1, 2]' is invalid" in arm_table)
    data = tmp_path / "mixed.txt"
    data.write_text("\n".join(["0,1|1,2|0,3|3,4/0,4=0,3,4", *[t for k, t in OOD.items() if k != "goal-inside-an-arm"]]) + "\n")
    r = cli("clever-hans", lm.path, "--data", data, "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["count"] == 1 and out["skipped_ood"] == 4 and 0 <= out["goal_copy_rate"] <= 1
    r = cli("clever-hans", lm.path, "--data", data)
    assert r.exit_code == 0 and "4 skipped" in r.stdout
    only = tmp_path / "ood.txt"
    only.write_text(OOD["cycle"] + "\n")
    assert_one_line_error(cli("clever-hans", lm.path, "--data", only), "none of the 1 graphs")
    r = cli("reproduce", "--models", lm.path, "--data", data, "--out", tmp_path / "rep")
    assert r.exit_code == 0, r.output
    r = cli("reproduce", "--models", lm.path, "--data", only, "--out", tmp_path / "rep2")  # evaluated; no Clever Hans column
    assert r.exit_code == 0, r.output


def test_path_star_mask_on_generated_graphs():
    for d, l in ((2, 3), (3, 4), (5, 5), (1, 2)):
        b = generate(d, l, 40, 200, seed=d)
        assert path_star_mask(b, d, l, 40).all()
        assert not path_star_mask(b, d + 1, l, 40).any()


# ------------------------------------------------------------------------------------------------
# 11. Bad metrics lines: watch and train --resume

BAD_LINES = {
    "step-a-string": '{"step": "abc", "accuracy": 0.5, "per_position": [1, 0.5, 0.5]}',
    "step-null": '{"step": null, "accuracy": 0.5, "per_position": [1, 0.5, 0.5]}',
    "step-1e999": '{"step": 1e999, "accuracy": 0.5, "per_position": [1, 0.5, 0.5]}',
    "step-NaN": '{"step": NaN, "accuracy": 0.5, "per_position": [1, 0.5, 0.5]}',
    "step-true": '{"step": true, "accuracy": 0.5, "per_position": [1, 0.5, 0.5]}',
    "step-negative": '{"step": -5, "accuracy": 0.5, "per_position": [1, 0.5, 0.5]}',
    "accuracy-a-string": '{"step": 15, "accuracy": "x", "per_position": [1, 0.5, 0.5]}',
    "per_position-a-string": '{"step": 15, "accuracy": 0.5, "per_position": "x"}',
    "per_position-too-short": '{"step": 15, "accuracy": 0.5, "per_position": [1]}',
    "wall_time-a-string": '{"step": 15, "accuracy": 0.5, "per_position": [1, 0.5, 0.5], "wall_time_s": "x"}',
    "nested-100k": '{"a":' * 100_000 + "1" + "}" * 100_000,
    "a-list": "[1, 2]",
    "not-json": "{oops",
}


def test_watch_skips_bad_metrics_lines_with_one_warning(trained, tmp_path):
    run = tmp_path / "run"
    train(tiny_config(run, steps=20), run)
    good = (run / "metrics.jsonl").read_text()
    for name, line in BAD_LINES.items():
        (run / "metrics.jsonl").write_text(good + line + "\n")
        for args in ([], ["--json"]):
            r = cli("watch", run, *args)
            assert r.exit_code == 0, (name, r.output, r.exception)
            assert "Traceback" not in r.output
        assert [rec["step"] for rec in status(run)["curve"]] == [10, 20]
    # the warning: one line per file, on stderr, naming the line and why
    (run / "metrics.jsonl").write_text(good + BAD_LINES["step-a-string"] + "\n" + BAD_LINES["nested-100k"] + "\n")
    seen = []
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl", warn=seen.append)] == [10, 20]
    assert seen == [f"{run / 'metrics.jsonl'}: skipped 2 bad lines: line 3: step \"abc\" is not a whole number ≥ 0 "
                    "(and 1 more)"]
    (run / "metrics.jsonl").write_text(BAD_LINES["accuracy-a-string"] + "\n" + good)  # not shown before in this process
    r = cli("watch", run)
    assert r.exit_code == 0
    assert r.stderr.strip().splitlines() == [f"warning: {run / 'metrics.jsonl'}: skipped 1 bad line: line 1: accuracy \"x\" "
                                             "is not a number"]
    r = cli("watch", run)  # watch --follow reads the file again and again: the warning is given once
    assert r.exit_code == 0 and r.stderr == ""
    # a torn last line (a writer mid-append) is skipped quietly
    (run / "metrics.jsonl").write_text(good + '{"step": 30, "lo')
    seen = []
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl", warn=seen.append)] == [10, 20] and seen == []


def test_resume_trusts_only_the_checkpoint(tmp_path):
    run = tmp_path / "run"
    train(tiny_config(run, steps=10), run)
    good = (run / "metrics.jsonl").read_text()
    (run / "metrics.jsonl").write_text(good + "".join(line + "\n" for line in BAD_LINES.values()))
    train(tiny_config(run, steps=20), run, resume=True)
    assert [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [10, 20]
    r = cli("watch", run, "--json")
    assert r.exit_code == 0 and r.stderr == "" and json.loads(r.stdout)[0]["step"] == 20
