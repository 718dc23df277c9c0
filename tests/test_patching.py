"""The causal probes (activation patching, edge knock-out, direct logit attribution) on tiny real models and the
shipped ones, and ``ntp-probe patch``'s contract."""

import json

import pytest
import torch
from typer.testing import CliRunner

from conftest import FIXTURES, tiny_config
from ntp_probe.checkpoint import load
from ntp_probe.cli import app
from ntp_probe.errors import GraphError, UsageError
from ntp_probe.probing import parse_for_model
from ntp_probe.probing.patching import (attribution, goal_pair, patch, patch_grid, patched_ld, prepare, shuffle_pair,
                                        step_input)
from ntp_probe.task import Graph, read_lines

G25 = "32,3|16,12|3,19|32,34|34,6|6,16|19,47|47,28/32,12=32,34,6,16,12"
runner = CliRunner()


@pytest.fixture(scope="module")
def two_layer(tmp_path_factory):
    """A tiny 2-layer next-token GPT on G(2,3) N=10 (a second of training)."""
    from ntp_probe.train import train

    out = tmp_path_factory.mktemp("two-layer")
    train(tiny_config(out, layers=2, steps=20), out)
    return load(out)


def _graphs(lm, n=6):
    from ntp_probe.task import generate

    t = lm.task
    return list(generate(t.degree, t.path_len, t.nodes, n, seed=3).graphs())


def _models(two_layer, trained):
    # causal GPT, bidirectional mlm-u with hidden mask tokens (shipped), Mamba (shipped), teacherless (tiny)
    return [two_layer, load("g2-3-mlm-u"), load("g2-5-mamba-next-token"), trained("teacherless")]


def test_embed_layer_patched_everywhere_gives_the_clean_run(two_layer, trained):
    for lm in _models(two_layer, trained):
        gs = _graphs(lm, 4)
        step = lm.objective.path_index(1, lm.task.path_len)
        prep = prepare(lm, gs, [goal_pair(g) for g in gs], step)
        T = prep.clean_x.shape[1]
        got = patched_ld(lm, prep, 0, range(T))
        assert torch.allclose(got, prep.clean_ld, atol=1e-5), lm.display_name
        assert not torch.allclose(prep.clean_ld, prep.corrupt_ld, atol=1e-3)  # the pair does differ


def test_positions_before_the_first_difference_change_nothing_in_causal_models(two_layer):
    for lm in (two_layer, load("g2-5-mamba-next-token"), load("g2-5-reverse")):
        gs = _graphs(lm, 3)
        for corrupts in ([goal_pair(g) for g in gs], [shuffle_pair(g, 1) for g in gs]):
            step = lm.objective.path_index(1, lm.task.path_len)
            prep = prepare(lm, gs, corrupts, step)
            full = patch_grid(lm, prep, skip=False)  # every cell run
            for k in range(len(gs)):
                first = int((prep.clean_x[k] != prep.corrupt_x[k]).nonzero()[0])
                assert torch.allclose(full[k, :, :first], prep.corrupt_ld[k].expand(full.shape[1], first), atol=1e-5)
                if corrupts[k].edges == gs[k].edges and len(prep.corrupt_x[k]) == len(gs[k].edges) * 3 + 3:
                    # the goal pair of a forward model: the goal is the one token that differs; patching it is the clean run
                    assert float(full[k, 0, first]) == pytest.approx(float(prep.clean_ld[k]), abs=1e-5)
            # the cells the fast path leaves out are exactly the ones that cannot change anything
            assert torch.allclose(patch_grid(lm, prep), full, atol=1e-5)


def test_knocking_out_no_edge_is_the_plain_run(two_layer, trained):
    for lm in (two_layer, load("g2-3-mlm-u"), trained("teacherless")):
        g = _graphs(lm, 1)[0]
        s = step_input(lm, g, 1)
        x = torch.tensor([s.x])
        with torch.no_grad():
            plain = lm.model(x).logits
            none = lm.model(x, knockout=torch.zeros_like(x, dtype=torch.bool)).logits
        assert torch.allclose(plain, none, atol=1e-5)
        one = torch.zeros_like(x, dtype=torch.bool)
        one[0, :2] = True
        assert not torch.allclose(plain[0, s.row], lm.model(x, knockout=one).logits[0, s.row], atol=1e-4)


def test_attribution_sums_to_the_logit_difference(two_layer):
    for lm in (two_layer, load("g2-5-next-token"), load("g2-3-mlm-u"), load("g2-5-mamba-next-token")):
        gs = _graphs(lm, 5)
        step = lm.objective.path_index(1, lm.task.path_len)
        prep = prepare(lm, gs, [goal_pair(g) for g in gs], step)
        names, vals, total, wrong = attribution(lm, prep, gs, step)
        assert names[0] == "embed" and names[-1] == "ln_f bias" and len(names) == vals.shape[1]
        for k, g in enumerate(gs):  # by hand: the model's own logits
            s = step_input(lm, g, step)
            with torch.no_grad():
                lg = lm.model(torch.tensor([s.x])).logits[0, s.row].float()
            right = s.answer[step]
            assert wrong[k] != right
            assert abs(float(vals[k].sum()) - float(lg[right] - lg[wrong[k]])) < 1e-4
            assert abs(float(total[k]) - float(lg[right] - lg[wrong[k]])) < 1e-4
    gpt = load("g2-5-next-token")
    assert "block 2 head 4" in attribution(gpt, prepare(gpt, _graphs(gpt, 1), [goal_pair(_graphs(gpt, 1)[0])], 1), _graphs(gpt, 1), 1)[0]


def test_pairs():
    g = parse_for_model(G25, load("g2-5-next-token"))
    c = goal_pair(g)
    assert c.edges == g.edges and c.start == g.start and c.goal == 28 and c.path == (32, 3, 19, 47, 28)
    s = shuffle_pair(g, 0)
    assert s.edges != g.edges and sorted(s.edges) == sorted(g.edges) and s.path == g.path
    with pytest.raises(GraphError, match="two arms"):
        goal_pair(Graph(((0, 1), (1, 2)), 0, 2))


def test_patch_json_contract_one_graph_and_averaged():
    lm = load("g2-5-next-token")
    g = parse_for_model(G25, lm)
    r = patch(lm, [g], edges=True, attribute=True)
    assert list(r)[:9] == ["model", "pair", "step", "tokens", "layers", "clean", "corrupt", "grid", "normalized"]
    assert r["step"] == 2 and r["layers"] == ["embed", "block 1", "block 2"] and r["tokens"][-2:] == ["=", "32"]
    assert len(r["grid"]) == 3 and all(len(row) == len(r["tokens"]) for row in r["grid"] + r["normalized"])
    # normalized by this model's 0.003-logit clean − corrupt gap: the kernels' 1e-6 rounding shows at 1e-3
    assert r["tokens"][-3] == "12" and r["normalized"][0][-3] == pytest.approx(1.0, abs=1e-2)  # the goal token carries it in
    assert r["normalized"][-1][-1] == pytest.approx(1.0, abs=1e-2)  # the last layer at the row read out is the clean run
    assert abs(r["clean"] - r["corrupt"]) < 0.01  # the teacher-forced model barely reads the goal at the decision
    rev = patch(load("g2-5-reverse"), [g])
    assert rev["clean"] > 5 > -5 > rev["corrupt"]
    assert rev["normalized"][0][-1] == pytest.approx(1.0, abs=1e-4)  # its last input token: the arm's node it looks up
    assert [e["edge"] for e in r["edges"]] == [f"{u}→{v}" for u, v in g.edges]
    assert {e["role"] for e in r["edges"]} == {"goal arm", "other arm"}
    a = r["attribution"]
    assert a["correct"] == "34" and a["wrong"] == "3"
    assert sum(t["value"] for t in a["terms"]) == pytest.approx(a["logit_diff"], abs=1e-4)
    shuffled = patch(lm, [g], pair="shuffle")  # same answer: the second token is the best wrong one
    assert shuffled["pair"] == "shuffle" and shuffled["clean"] == pytest.approx(a["logit_diff"], abs=1e-5)
    gs = read_lines(FIXTURES / "deg_2_path_5_nodes_50_test_head200.txt", 50)[:20]
    m = patch(lm, gs, edges=True)
    assert m["count"] == 20 and [e["role"] for e in m["edges"]] == ["goal arm", "other arm"]
    assert sum(e["edges"] for e in m["edges"]) == 20 * 8
    assert m["clean"] == pytest.approx(sum(patch(lm, [x])["clean"] for x in gs) / 20, abs=1e-5)


def test_patch_refusals():
    lm = load("g2-5-next-token")
    g = parse_for_model(G25, lm)
    with pytest.raises(GraphError, match="outside the answer"):
        patch(lm, [g], step=5)
    with pytest.raises(GraphError, match="another shape"):
        patch(lm, [g], corrupt=Graph(((32, 3), (3, 19), (32, 34), (34, 6)), 32, 6))
    with pytest.raises(UsageError, match="Mamba"):
        patch(load("g2-5-mamba-next-token"), [g], edges=True)


def _cli(*args):
    return runner.invoke(app, ["patch", *map(str, args)])


def test_cli_patch_json_png_and_table(tmp_path):
    png = tmp_path / "map.png"
    r = _cli("g2-5-next-token", "--graph", G25, "--json", "--png", png, "--knockout")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["pair"] == "goal" and len(res["edges"]) == 8
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = _cli("g2-5-reverse", "--data", FIXTURES / "deg_2_path_5_nodes_50_test_head200.txt", "--count", 5, "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["count"] == 5
    r = _cli("g2-3-next-token", "--count", 4, "--seed", 2, "--json")  # fresh graphs of the model's shape
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["count"] == 4 and len(json.loads(r.stdout)["tokens"]) == 16
    r = runner.invoke(app, ["patch", "g2-5-next-token", "--graph", G25, "--attribution"], env={"COLUMNS": "120"})
    assert r.exit_code == 0 and "embed" in r.stdout and "direct logit attribution" in r.stdout


@pytest.mark.parametrize("args, fragment", [
    (["--step", 6], "--step 6: outside the answer (answer tokens 1..5)"),
    (["--step", 0], "counted from 1"),
    (["--pair", "sideways"], "--pair 'sideways'"),
    (["--corrupt", "32,3|3,19|32,34|34,6/32,6=32,34,6"], "another shape"),
    (["--corrupt", "32,3|16,12|3,19|32,34|34,6|6,16|19,47|47,99/32,12=32,34,6,16,12"], "node id 99 is out of range"),
])
def test_cli_patch_bad_input_is_one_line_exit_2(args, fragment):
    r = _cli("g2-5-next-token", "--graph", G25, *args)
    assert r.exit_code == 2 and fragment in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_cli_patch_refuses_one_arm_and_mamba_knockout():
    r = _cli("g2-5-next-token", "--graph", "1,2|2,3|3,4|4,5/1,5=1,2,3,4,5")
    assert r.exit_code == 2 and "two arms" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = _cli("g2-5-mamba-next-token", "--graph", G25, "--knockout")
    assert r.exit_code == 2 and "Mamba" in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Tiny 2-layer models of main's newer kinds: the belief state transformer and the query-first layout."""
    from ntp_probe.train import train

    out = {}
    for name, kw in (("bst", dict(objective="bst")), ("query-first", dict(query_first=True))):
        d = tmp_path_factory.mktemp(name)
        train(tiny_config(d, layers=2, steps=20, **kw), d)
        out[name] = load(d)
    return out


def test_bst_patches_and_knocks_out_but_refuses_attribution(tiny):
    lm = tiny["bst"]
    gs = _graphs(lm, 3)
    prep = prepare(lm, gs, [goal_pair(g) for g in gs], 1)
    assert torch.allclose(patched_ld(lm, prep, 0, range(prep.clean_x.shape[1])), prep.clean_ld, atol=1e-5)
    with torch.no_grad():  # the clean end is the model's own decoding distribution (the next head, empty suffix)
        s = step_input(lm, gs[0], 1)
        lg = lm.model(torch.tensor([s.x])).logits[0, s.row]
    assert float(prep.clean_ld[0]) == pytest.approx(float(lg[prep.a[0]] - lg[prep.b[0]]), abs=1e-5)
    r = patch(lm, gs, edges=True)
    assert r["count"] == 3 and len(r["edges"]) == 2
    with pytest.raises(UsageError, match="bst"):
        patch(lm, gs, attribute=True)


def test_query_first_knocks_out_the_edge_tokens(tiny):
    lm = tiny["query-first"]
    g = _graphs(lm, 1)[0]
    s = step_input(lm, g, 1)
    tokens = [lm.tokenizer.token_str(t) for t in s.x]
    assert tokens[2] == "/"  # 's g /' first
    r = patch(lm, [g], edges=True, attribute=True)
    assert r["tokens"] == tokens and len(r["edges"]) == len(g.edges)
    # hiding edge e by hand at its own positions gives the engine's Δ
    from ntp_probe.probing.patching import knockout

    prep = prepare(lm, [g], [goal_pair(g)], 1)
    dp, dl = knockout(lm, prep, [g])
    x = torch.tensor([s.x])
    for e, (u, v) in enumerate(g.edges):
        keys = torch.zeros_like(x, dtype=torch.bool)
        keys[0, [3 + 3 * e, 4 + 3 * e]] = True
        assert (int(x[0, 3 + 3 * e]), int(x[0, 4 + 3 * e])) == (u, v)
        with torch.no_grad():
            p = lm.model(x, knockout=keys).logits[0, s.row].softmax(-1)[prep.a[0]]
        assert float(p - prep.clean_logits[0].softmax(-1)[prep.a[0]]) == pytest.approx(float(dp[0, e]), abs=1e-5)
