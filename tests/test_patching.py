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
    # the teacher-forced model barely reads the goal at the decision: a 0.003-logit clean − corrupt gap, under the
    # noise threshold (5% of the clean logits' spread, ~0.1): flagged, and no normalized map (a ratio of noise)
    assert abs(r["clean"] - r["corrupt"]) < 0.01 and r["gap"] == pytest.approx(abs(r["clean"] - r["corrupt"]), abs=1e-6)
    assert r["near_zero"] is True and 0.05 < r["noise_threshold"] < 0.2 and r["gap"] < r["noise_threshold"]
    assert all(v is None for row in r["normalized"] for v in row) and r["grid"][0][0] == pytest.approx(r["corrupt"])
    assert r["tokens"][-3] == "12"
    rev = patch(load("g2-5-reverse"), [g])
    assert rev["clean"] > 5 > -5 > rev["corrupt"] and rev["near_zero"] is False and rev["gap"] > 10
    assert rev["normalized"][0][-1] == pytest.approx(1.0, abs=1e-4)  # its last input token: the arm's node it looks up
    assert rev["normalized"][-1][-1] == pytest.approx(1.0, abs=1e-4)  # the last layer at the row read out: the clean run
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


def _close(a, b, tol=1e-4):
    """Two patch results equal but for float rounding in the order of the sums."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], tol) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_close(x, y, tol) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= tol * max(1.0, abs(a))
    return a == b


def test_patch_in_chunks_is_the_whole_batch_at_once(two_layer):
    """Running sums over chunks of graphs (issue 30 #12): the same result as one batch, to float rounding;
    the graphs are read from an iterator a chunk at a time."""
    from ntp_probe.task import generate

    t = two_layer.task
    gs = list(generate(t.degree, t.path_len, t.nodes, 23, seed=5).graphs())
    whole = patch(two_layer, gs, edges=True, attribute=True, chunk=1000)
    for chunk in (1, 5, 22):
        got = patch(two_layer, iter(gs), edges=True, attribute=True, chunk=chunk)
        assert _close(got, whole), chunk
    assert whole["count"] == 23 and sum(e["edges"] for e in whole["edges"]) == 23 * len(gs[0].edges)
    assert 0 <= whole["normalized_graphs"] <= 23
    shuffled = patch(two_layer, iter(gs), pair="shuffle", chunk=4)
    assert _close(shuffled, patch(two_layer, gs, pair="shuffle", chunk=100))


def test_near_zero_is_flagged_on_the_shipped_models():
    """Issue 29 #5: g2-5-next-token's decision does not read the goal (flagged, no normalized map); reverse and
    G(2,3) teacherless do (not flagged, the map drawn)."""
    lm = load("g2-5-next-token")
    g = parse_for_model(G25, lm)
    r = patch(lm, [g])
    assert r["near_zero"] is True and r["gap"] < r["noise_threshold"]
    gs = read_lines(FIXTURES / "deg_2_path_5_nodes_50_test_head200.txt", 50)[:12]
    m = patch(lm, gs)
    assert m["near_zero"] is True and m["normalized_graphs"] <= 1 and m["gap"] < m["noise_threshold"] / 5
    rev = patch(load("g2-5-reverse"), gs)
    assert rev["near_zero"] is False and rev["normalized_graphs"] == 12 and rev["gap"] > 100 * rev["noise_threshold"]
    tl = load("g2-3-teacherless")
    from ntp_probe.task import generate

    g3 = list(generate(2, 3, 50, 6, seed=0).graphs())
    res = patch(tl, g3)
    assert res["step"] == 2 and res["near_zero"] is False and res["normalized_graphs"] == 6
    one = patch(tl, g3[:1])
    assert one["near_zero"] is False and "normalized_graphs" not in one and one["normalized"][0][0] is not None


PEAK = ("import resource, subprocess, sys; r = subprocess.run([sys.executable, '-m', 'ntp_probe', *sys.argv[1:]], "
        "stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True); "
        "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024); sys.stderr.write(r.stderr)")


def _peak(*args) -> int:
    """Peak resident set (bytes) of one ntp-probe command, in a process of its own (RUSAGE_CHILDREN of a wrapper)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "-c", PEAK, *map(str, args)], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"})
    code, peak = map(int, r.stdout.split())
    assert code == 0, r.stderr[-2000:]
    return peak


@pytest.mark.slow
def test_patch_memory_does_not_grow_with_the_count(tmp_path):
    """Issue 30 #12: `patch --count 30000` held every graph's activations at once (over 2 GB). Now chunks of
    patching.GRAPHS into running sums: on a tiny but wide model (d_model 256, ~50 kB of activations a graph) 2,000
    graphs peak where 200 do (all at once, 2,000 took ~290 MB more)."""
    from ntp_probe.train import train

    wide = tmp_path / "wide"
    train(tiny_config(wide, d_model=256, heads=2, layers=1, steps=2, eval_every=2, eval_count=8), wide)
    small = _peak("patch", wide, "--count", 200, "--json", "--threads", 1)
    large = _peak("patch", wide, "--count", 2000, "--json", "--threads", 1)
    assert large - small < 60 * 2**20, (small, large)


def test_cli_names_a_near_zero_effect_in_the_table_json_and_png(tmp_path):
    """Issue 29 #5: `patch g2-5-next-token --graph G` printed clean −0.196, corrupt −0.192, then "strongest … +1.00"
    (a ratio of noise). Now the table says the goal does not change the output and shows the raw differences; the
    JSON carries the flag, the gap and the threshold; the PNG draws the raw differences."""
    png = tmp_path / "nz.png"
    r = runner.invoke(app, ["patch", "g2-5-next-token", "--graph", G25, "--png", png], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    text = " ".join(r.stdout.split())
    assert "the goal does not change this step's output: nothing to patch here" in text
    assert "strongest" not in text and "|clean − corrupt| = 0.0033 logits" in text and "noise threshold" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    res = json.loads(_cli("g2-5-next-token", "--graph", G25, "--json").stdout)
    assert res["near_zero"] is True and res["gap"] < res["noise_threshold"] and res["clean"] == pytest.approx(-0.196, abs=1e-3)
    r = runner.invoke(app, ["patch", "g2-5-reverse", "--graph", G25], env={"COLUMNS": "200"})
    assert r.exit_code == 0 and "strongest" in r.stdout and "nothing to patch" not in r.stdout
    assert json.loads(_cli("g2-5-reverse", "--graph", G25, "--json").stdout)["near_zero"] is False
