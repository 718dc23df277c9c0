"""Topology sets (issue #16): models trained on many shapes G(d, l) at once, padded batches, figures per shape."""

import json

import pytest
import torch
from typer.testing import CliRunner

from conftest import tiny_config
from ntp_probe.checkpoint import load
from ntp_probe.cli import app
from ntp_probe.decoding import Strategy, beam_search, decode_with, greedy, teacher_forced
from ntp_probe.errors import GraphError, UsageError
from ntp_probe.evaluate import evaluate
from ntp_probe.model import GPT, GPTConfig
from ntp_probe.probing import ProbeSession, parse_for_model
from ntp_probe.task import GraphBatch, Topologies, generate, generate_set, parse, parse_values
from ntp_probe.tokenizer import Tokenizer
from ntp_probe.train import train

runner = CliRunner()
SET = dict(degree=[2, 3], path_len=[3, 4], nodes=12)
SLIDE = "2→1, 0→10, 9→3, 5→4, 4→6, 3→0, 1→7, 9→2, 9→5 || find(9 → 7)"  # the talk's slide: a G(3,4)


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """Tiny real models trained on G({2,3}, {3,4}) N=12 (a few seconds each)."""
    cache = {}

    def get(objective="next-token"):
        if objective not in cache:
            out = tmp_path_factory.mktemp(f"mixed-{objective}")
            train(tiny_config(out, objective, steps=40, eval_every=20, **SET), out)
            cache[objective] = load(out)
        return cache[objective]

    return get


# -- parsing ----------------------------------------------------------------------------------------


def test_parse_values():
    assert parse_values("2-5", "--degree", 1) == (2, 3, 4, 5)
    assert parse_values("2,3,5", "--degree", 1) == (2, 3, 5)
    assert parse_values(" 4 ", "--degree", 1) == (4,)
    assert parse_values("2-3,5", "--degree", 1) == (2, 3, 5)


@pytest.mark.parametrize("degree, path_len, nodes, message", [
    ("5-2", "3", 50, "runs backwards"),
    ("2", "1", 50, "need degree ≥ 1 and path length ≥ 2"),  # one shape: the message it always had
    ("2-3", "1-4", 50, "--path-len 1-4: every value must be ≥ 2"),
    ("2-3", "1", 50, "path length"),
    ("2,x", "3", 50, "expected a number"),
    ("2-5", "3-20", 50, r"biggest shape G\(5,20\) needs 96 distinct nodes but --nodes is 50"),
])
def test_parse_errors(degree, path_len, nodes, message):
    with pytest.raises((UsageError, GraphError), match=message.replace("-", r"\-") if "(" not in message else message):
        Topologies.parse(degree if "," in degree or "-" in degree or not degree.isdigit() else int(degree),
                         path_len if not path_len.isdigit() else int(path_len), nodes)


def test_cli_errors_are_one_line_exit_2():
    for args in (["--degree", "5-2"], ["--path-len", "1"], ["--degree", "2-5", "--path-len", "3-20"]):
        r = run("generate", *args, "--nodes", 50)
        assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1, (args, r.output)


def test_generate_set():
    one = Topologies.parse(2, 5, 50)
    assert torch.equal(generate_set(one, 50, 20, seed=3).edges, generate(2, 5, 50, 20, seed=3).edges)  # bit-identical
    t = Topologies.parse("2-3", "3-4", 12)
    b = generate_set(t, 12, 200, seed=1)
    assert set(b.shapes()) == set(t.shapes) and b.padded
    assert torch.equal(b.edges, generate_set(t, 12, 200, seed=1).edges)
    for g, (d, l) in zip(b.graphs(), b.shapes()):
        assert not g.ood_reasons(d, l) and len(g.path) == l
    groups = b.by_shape()
    assert sum(len(x) for x in groups.values()) == 200 and not any(x.padded for x in groups.values())
    r = run("generate", "--degree", "2-3", "--path-len", "3,4", "--nodes", 12, "--count", 30)
    assert r.exit_code == 0 and {parse(x).topology() for x in r.stdout.splitlines()} <= set(t.shapes)


# -- padding ----------------------------------------------------------------------------------------


def _alone(tok, g):
    return tok.questions(GraphBatch.from_graphs([g]))


def test_padding_invariance_of_logits():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=16, block_size=33, n_layer=2, n_head=2, n_embd=32, n_future=3)).eval()
    tok = Tokenizer(12)
    b = generate_set(Topologies.parse("2-3", "3-4", 12), 12, 12, seed=5)
    q = tok.questions(b)
    x = torch.cat([q, b.path[:, :-1]], dim=1)  # answers right-padded with -1
    mixed = model(x, all_heads=True).logits
    for i, g in enumerate(b.graphs()):
        qa = _alone(tok, g)
        xa = torch.cat([qa, torch.tensor([g.path[:-1]])], dim=1)
        alone = model(xa, all_heads=True).logits[0]
        start = q.shape[1] - qa.shape[1]
        torch.testing.assert_close(mixed[i, start : start + xa.shape[1]], alone, atol=1e-5, rtol=0)


@pytest.mark.parametrize("objective", ["next-token", "reverse"])
def test_decoding_a_mixed_batch_matches_each_graph_alone(mixed, objective):
    lm = mixed(objective)
    b = generate_set(lm.task.topologies, 12, 10, seed=7)
    q, lengths = lm.tokenizer.questions(b), b.lengths()
    dec = greedy(lm, q, lengths=lengths)
    seqs, scores = beam_search(lm, q, 3, lengths=lengths)
    ver, tries = decode_with(lm, q, Strategy("verify", tries=3), batch=b)
    forced = torch.full((len(b), int(lengths.max())), -1)
    forced[:, 1] = b.path[:, 0]  # force a token on every row
    fdec = greedy(lm, q, forced, lengths=lengths)
    tf = teacher_forced(lm, q, lm.objective.answer(b.path))
    for i, g in enumerate(b.graphs()):
        l = len(g.path)
        qa, la = _alone(lm.tokenizer, g), torch.tensor([l])
        one = greedy(lm, qa, lengths=la)
        assert dec.tokens[i, :l].tolist() == one.tokens[0].tolist() and (dec.tokens[i, l:] == -1).all()
        torch.testing.assert_close(dec.logits[i, :l], one.logits[0], atol=1e-5, rtol=0)
        s1, sc1 = beam_search(lm, qa, 3, lengths=la)
        assert seqs[i, :, :l].tolist() == s1[0].tolist()
        torch.testing.assert_close(scores[i], sc1[0], atol=1e-4, rtol=0)
        v1, t1 = decode_with(lm, qa, Strategy("verify", tries=3), batch=GraphBatch.from_graphs([g]))
        assert ver[i, :l].tolist() == v1[0].tolist() and tries[i] == t1[0]
        assert fdec.tokens[i, :l].tolist() == greedy(lm, qa, forced[i : i + 1, :l], lengths=la).tokens[0].tolist()
        tf1 = teacher_forced(lm, qa, lm.objective.answer(torch.tensor([g.path])))
        torch.testing.assert_close(tf[i, :l], tf1[0], atol=1e-5, rtol=0)


# -- a tiny mixed model, end to end ------------------------------------------------------------------


def test_mixed_model_header_and_eval_per_shape(mixed):
    lm = mixed("reverse")
    assert lm.meta["task"] == {"degree": 3, "path_len": 4, "nodes": 12, "degrees": [2, 3], "path_lens": [3, 4]}
    assert lm.task.label() == "G(d∈{2,3}, l∈{3,4}) N=12"
    res = evaluate(lm, generate_set(lm.task.topologies, 12, 200, seed=1))
    assert set(res["by_topology"]) == {"2,3", "2,4", "3,3", "3,4"}
    assert sum(r["count"] for r in res["by_topology"].values()) == res["count"] == 200
    assert res["by_topology"]["3,4"]["chance"] == pytest.approx(1 / 3)
    r = run("eval", lm.path.parent, "--count", 100, "--json")
    assert r.exit_code == 0, r.output
    j = json.loads(r.stdout)
    assert set(j["by_topology"]) == {"2,3", "2,4", "3,3", "3,4"}
    r = run("eval", lm.path.parent, "--count", 50, "--degree", 2, "--path-len", 3, "--json")
    assert set(json.loads(r.stdout)["by_topology"]) == {"2,3"}
    r = run("eval", lm.path.parent, "--count", 50)  # the table: a row per shape
    assert r.exit_code == 0 and "G(3,4)" in r.stdout


def test_clever_hans_per_shape(mixed):
    lm = mixed("next-token")
    r = run("clever-hans", lm.path.parent, "--count", 100, "--json")
    assert r.exit_code == 0, r.output
    j = json.loads(r.stdout)
    assert set(j["by_topology"]) == {"2,3", "2,4", "3,3", "3,4"} and j["count"] == 100


def test_single_shape_json_has_no_by_topology(trained):
    lm = trained("next-token")
    assert "by_topology" not in evaluate(lm, generate(2, 3, 10, 50, seed=1))
    assert "degrees" not in lm.meta["task"]


def test_sets_refused_where_padding_does_not_hold(tmp_path):
    with pytest.raises(UsageError, match="one shape only"):
        train(tiny_config(tmp_path, "teacherless", **SET), tmp_path / "t")
    with pytest.raises(UsageError, match="--arch mamba trains on one shape only"):
        train(tiny_config(tmp_path, arch="mamba", **SET), tmp_path / "m")


# -- probing: in the set, outside it, outside the context --------------------------------------------


def test_probe_the_slide_example(mixed):
    lm = mixed("reverse")
    r = run("probe", lm.path.parent, "--graph", SLIDE, "--json")
    assert r.exit_code == 0, r.output
    j = json.loads(r.stdout)
    assert len(j["steps"]) == 4 and not j["ood"]


def test_probe_any_shape_in_context(mixed):
    lm = mixed("next-token")
    g34 = generate(3, 4, 12, 1, seed=2)
    s = ProbeSession(lm, next(g34.graphs()))
    assert s.length == 4 and not s.ood and len(s.steps) == 4
    s.set_graph(next(generate(2, 3, 12, 1, seed=2).graphs()))  # another shape in the same session
    assert s.length == 3 and len(s.steps) == 3 and not s.ood
    g25 = next(generate(2, 5, 12, 1, seed=2).graphs())  # in context, outside the set
    s.set_graph(g25)
    assert s.length == 5 and any("outside" in r or "trained on" in r for r in s.ood)
    unequal = parse("0→1, 1→2, 0→3, 3→4, 4→5 || find(0 → 5)")  # a star with arms of unequal length
    s.set_graph(unequal)
    assert any("unequal" in r for r in s.ood)
    s.set_graph(parse("0→1, 1→2, 1→3, 0→4, 4→5 || find(0 → 2)"))  # a tree that is not a star
    assert s.length == 3 and len(s.steps) == 3 and any("more than one child" in r for r in s.ood)
    with pytest.raises(GraphError, match="longer than the model's context"):
        parse_for_model(", ".join(f"{i}→{i + 1}" for i in range(11)) + " || find(0 → 11)", lm)


def test_reproduce_grid_heat_map(mixed, tmp_path):
    nt, rev = mixed("next-token"), mixed("reverse")
    r = run("reproduce", "--models", f"{nt.path.parent},{rev.path.parent}", "--count", 80, "--out", tmp_path)
    assert r.exit_code == 0, r.output
    assert "per shape" in r.stdout and "G(3,4)" in r.stdout
    assert (tmp_path / "grid.png").stat().st_size > 1000
    report = (tmp_path / "report.md").read_text()
    assert "![accuracy per shape](grid.png)" in report and "| G(2,3) |" in report


# -- the app -------------------------------------------------------------------------------------------


def test_app_defaults_to_star_models_when_shipped(tmp_path, monkeypatch):
    from ntp_probe.tui.app import ProbeApp

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NTP_PROBE_MODELS", str(tmp_path / "models"))
    for name in ("star-next-token", "star-reverse"):
        (tmp_path / "models" / name).mkdir(parents=True)
        (tmp_path / "models" / name / "model.safetensors").write_bytes(b"")
    app = ProbeApp()
    assert app.specs == ["star-next-token", "star-reverse"]


def test_app_takes_a_graph_of_another_shape(mixed):
    import asyncio

    from textual.widgets import TextArea

    from ntp_probe.task import format_human
    from ntp_probe.tui.app import ProbeApp
    from test_tui import SIZE, text_of

    lm = mixed("next-token")
    g23 = next(generate(2, 3, 12, 1, seed=4).graphs())

    async def go():
        app = ProbeApp([lm], graph=format_human(g23))
        async with app.run_test(size=SIZE) as pilot:
            await app.wait_idle()
            assert app.session.length == 3
            app.query_one("#graph", TextArea).load_text(SLIDE)  # another shape, typed: the slide's G(3,4)
            await app.wait_idle()
            assert app.session.graph.goal == 7 and app.session.length == 4 and not app.session.ood
            assert len(app.session.steps) == 4 and "✓ G(3,4)" in text_of(app, "#graph-status")
            app.query_one("#graph", TextArea).load_text("G(2,4)")  # ask for a shape
            await app.wait_idle()
            assert app.session.graph.topology() == (2, 4) and "G(2,4)" in text_of(app, "#graph-status")
            await pilot.press("escape", "t")  # the next shape of the set
            await app.wait_idle()
            assert app.session.graph.topology() in lm.task.topologies.shapes
            g25 = "0→1, 1→2, 2→3, 3→4, 0→5, 5→6, 6→7, 7→8 || find(0 → 4)"  # in context, outside the set
            app.query_one("#graph", TextArea).load_text(g25)
            await app.wait_idle()
            assert app.session.length == 5 and app.session.ood and "⚠" in text_of(app, "#graph-status")

    asyncio.run(go())


def test_ship_card_has_every_shape(mixed, tmp_path):
    lm = mixed("next-token")
    data = tmp_path / "g23.txt"
    assert run("generate", "--degree", 2, "--path-len", 3, "--nodes", 12, "--count", 50, "--out", data).exit_code == 0
    r = run("ship", lm.path.parent, "--name", "tiny-star", "--data", data, "--models-dir", tmp_path / "models")
    assert r.exit_code == 0, r.output
    shipped = load(tmp_path / "models" / "tiny-star")
    assert set(shipped.meta["card"]["by_topology"]) == {"2,3", "2,4", "3,3", "3,4"}
    card = (tmp_path / "models" / "tiny-star" / "README.md").read_text()
    assert "| G(3,4) |" in card and "2,3 arms, 3,4-node paths" in card


def test_shipped_single_shape_model_scores_as_before():
    """`ntp-probe eval g2-5-next-token --count 500 --seed 3 --json` is what it was before topology sets
    (tests/fixtures/g2-5-next-token-eval-500-seed-3.json: the output of the commit before them, less `seconds`)."""
    from conftest import FIXTURES

    r = run("eval", "g2-5-next-token", "--count", 500, "--seed", 3, "--json")
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    got.pop("seconds")
    assert got == json.loads((FIXTURES / "g2-5-next-token-eval-500-seed-3.json").read_text())


def test_multi_token_trains_on_a_set(tmp_path):
    train(tiny_config(tmp_path, "multi-token", steps=10, eval_every=10, future=2, **SET), tmp_path / "mt")
    lm = load(tmp_path / "mt")
    res = evaluate(lm, generate_set(lm.task.topologies, 12, 40, seed=1))
    assert set(res["by_topology"]) <= {"2,3", "2,4", "3,3", "3,4"} and res["count"] == 40


@pytest.mark.parametrize("task, message", [
    ({"degrees": "2-3"}, "degrees '2-3': not a list of 1 to 1024 whole numbers"),
    ({"degrees": [2, 3], "path_lens": []}, "path_lens"),
    ({"path_lens": None}, "has 'degrees' but no 'path_lens'"),  # one list without the other (None: key removed)
    ({"degrees": [2, 3], "path_lens": [3, 5]}, "largest of degrees/path_lens"),
    ({"degrees": [0, 3], "path_lens": [3, 4]}, "degrees"),
    ({"degrees": [2, 3], "path_lens": [1, 4]}, "≥ 2"),
])
def test_bad_set_in_the_header_is_one_line(mixed, tmp_path, task, message):
    from ntp_probe import checkpoint as ckpt
    from ntp_probe.errors import ModelFileError

    lm = mixed("reverse")
    meta = {**lm.meta, "task": {k: v for k, v in {**lm.meta["task"], **task}.items() if v is not None}}
    ckpt.save(tmp_path / "m.safetensors", lm.model, meta)
    with pytest.raises(ModelFileError, match=message):
        ckpt.load(tmp_path / "m.safetensors")


@pytest.mark.parametrize("objective", ["next-token", "reverse"])
def test_bucketed_loss_is_the_same_loss(objective):
    """Training runs a padded batch in groups of similar length: the same loss and gradients as one pass."""
    import contextlib

    from ntp_probe.objectives import get
    from ntp_probe.train import batch_loss

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=16, block_size=33, n_layer=1, n_head=2, n_embd=32))
    obj, tok = get(objective), Tokenizer(12)
    b = generate_set(Topologies.parse("2-3", "3-4", 12), 12, 64, seed=2)
    x, y = obj.train_batch(tok.questions(b), obj.answer(b.path), tok.dollar)
    grads = []
    for buckets in (1, 4):
        model.zero_grad()
        loss = batch_loss(obj, model, x, y, contextlib.nullcontext(), buckets=buckets)
        loss.backward()
        grads.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    torch.testing.assert_close(grads[0][0], grads[1][0], atol=1e-6, rtol=0)
    for g1, g4 in zip(grads[0][1], grads[1][1]):
        torch.testing.assert_close(g1, g4, atol=1e-6, rtol=1e-5)


def test_clever_hans_per_shape_skips_graphs_that_are_not_stars(mixed):
    from ntp_probe.metrics import clever_hans

    lm = mixed("next-token")
    graphs = list(generate(2, 3, 12, 20, seed=1).graphs()) + list(generate(3, 4, 12, 20, seed=1).graphs())
    graphs.append(parse("0→1, 1→2, 0→3, 3→4, 4→5 || find(0 → 5)"))  # unequal arms
    res = clever_hans(lm, graphs, seed=0)
    assert res["skipped_ood"] == 1 and res["count"] == 40 and set(res["by_topology"]) == {"2,3", "3,4"}
