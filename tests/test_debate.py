"""Teacher forcing without the cheat: answer-input dropout (token, span, replace) and structured samples."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from ntp_probe import objectives
from ntp_probe.cli import app
from ntp_probe.errors import UsageError
from ntp_probe.objectives import IGNORE
from ntp_probe.task import GraphBatch, generate, parse_line, with_goals
from ntp_probe.tokenizer import Tokenizer

# G(2,5), N=20: start 0, arms 0→1→2→3→4 and 0→5→6→7→8; goal 4; path 0 1 2 3 4
G = parse_line("3,4|0,5|1,2|6,7|0,1|7,8|2,3|5,6/0,4=0,1,2,3,4")
TOK = Tokenizer(20)
DOLLAR = TOK.dollar
Q = torch.tensor([TOK.question(G)] * 4000)
A = torch.tensor([list(G.path)] * 4000)
TRUE_INPUTS = Q[0].tolist() + [0, 1, 2, 3]


def batch(obj, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return obj.train_batch(Q, obj.answer(A), DOLLAR, gen)


def test_token_dropout_replaces_answer_inputs_by_dollars_at_the_rate_and_keeps_every_target():
    obj = objectives.get("answer-dropout", drop_rate=0.3, drop_mode="token")
    x, y = batch(obj)
    n = Q.shape[1]
    assert (x[:, :n] == Q).all()  # the question is never touched
    answer_inputs = x[:, n:]
    dropped = answer_inputs == DOLLAR
    kept = ~dropped
    assert (answer_inputs[kept] == torch.tensor([0, 1, 2, 3]).expand_as(answer_inputs)[kept]).all()
    assert dropped.float().mean().item() == pytest.approx(0.3, abs=0.02)
    # the targets are next-token's: every answer token, from the '=' on
    assert y[0, :, 0].tolist() == [IGNORE] * (n - 1) + [0, 1, 2, 3, 4]
    assert (y == y[:1]).all()
    # the loss is the mean cross-entropy over the 5 answer positions
    logits = torch.randn(2, x.shape[1], TOK.vocab_size)
    manual = F.cross_entropy(logits[:, n - 1:].reshape(-1, TOK.vocab_size), y[:2, n - 1:, 0].reshape(-1))
    assert obj.loss(logits, y[:2]).item() == pytest.approx(manual.item(), rel=1e-6)


def test_span_dropout_drops_one_contiguous_span_in_a_share_p_of_rows():
    obj = objectives.get("answer-dropout", drop_rate=0.5, drop_mode="span")
    x, _ = batch(obj, seed=1)
    dropped = x[:, Q.shape[1]:] == DOLLAR  # [B, 4]
    hit = dropped.any(1)
    assert hit.float().mean().item() == pytest.approx(0.5, abs=0.03)
    spans = set()
    for row in dropped[hit].tolist():
        on = [i for i, d in enumerate(row) if d]
        assert on == list(range(on[0], on[-1] + 1))  # contiguous
        spans.add((on[0], on[-1] + 1))
    assert len(spans) == 10  # every non-empty span of 4 inputs occurs


def test_replace_mode_writes_random_node_ids_and_rate_zero_is_teacher_forcing():
    obj = objectives.get("answer-dropout", drop_rate=0.5, drop_mode="replace")
    x, _ = batch(obj, seed=2)
    inputs = x[:, Q.shape[1]:]
    changed = inputs != torch.tensor([0, 1, 2, 3])
    assert (inputs < 20).all()  # node ids only: never '$' or a separator
    assert changed.float().mean().item() == pytest.approx(0.5 * 19 / 20, abs=0.03)
    plain, _ = batch(objectives.get("answer-dropout", drop_rate=0.0))
    assert (plain == torch.tensor(TRUE_INPUTS)).all()


def test_options_are_checked_and_kept_in_the_header():
    with pytest.raises(UsageError, match="--drop-rate 1.5"):
        objectives.get("answer-dropout", drop_rate=1.5)
    with pytest.raises(UsageError, match="--drop-mode spans"):
        objectives.get("answer-dropout", drop_mode="spans")
    obj = objectives.get("answer-dropout", drop_rate=0.25, drop_mode="span")
    assert obj.to_meta() == {"name": "answer-dropout", "n_future": 1, "drop_rate": 0.25, "drop_mode": "span"}
    assert objectives.from_meta(obj.to_meta()) == obj


def test_padding_is_never_dropped():
    obj = objectives.get("answer-dropout", drop_rate=1.0, drop_mode="token")
    q = torch.tensor([TOK.question(G)])
    a = torch.tensor([[0, 1, 2, -1, -1]])  # a shorter answer in a padded batch
    x, _ = obj.train_batch(q, a, DOLLAR, torch.Generator().manual_seed(0))
    assert x[0, q.shape[1]:].tolist() == [DOLLAR, DOLLAR, DOLLAR, -1]


def test_structured_samples_give_each_graph_k_goals_on_distinct_arms():
    b = GraphBatch.from_graphs([G])
    two = with_goals(b, 2, torch.Generator().manual_seed(0))
    assert len(two) == 2 and (two.edges == b.edges).all()
    assert sorted(two.goal.tolist()) == [4, 8]
    assert sorted(map(tuple, two.path.tolist())) == [(0, 1, 2, 3, 4), (0, 5, 6, 7, 8)]
    many = generate(5, 4, 50, 64, seed=3)
    three = with_goals(many, 3, torch.Generator().manual_seed(1))
    for i, g in enumerate(three.graphs()):
        assert g.find_path() == g.path  # a real path to its goal
    goals = three.goal.view(64, 3)
    assert all(len(set(row)) == 3 for row in goals.tolist())
    assert (three.edges.view(64, 3, *three.edges.shape[1:]) == many.edges[:, None]).all()


def test_train_with_answer_dropout_and_structured_samples_then_eval(tmp_path):
    out = tmp_path / "run"
    args = ["train", "--out", str(out), "-d", "2", "-l", "3", "-n", "10", "--layers", "1", "--d-model", "32", "--heads", "2",
            "--steps", "20", "--eval-every", "10", "--eval-count", "32", "--batch-size", "32", "--amp", "fp32",
            "--device", "cpu", "--objective", "answer-dropout", "--drop-mode", "span", "--drop-rate", "0.7",
            "--targets-per-graph", "2", "-q"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    from ntp_probe.checkpoint import load

    lm = load(out)
    assert lm.objective.to_meta() == {"name": "answer-dropout", "n_future": 1, "drop_rate": 0.7, "drop_mode": "span"}
    assert lm.meta["training"]["config"]["targets_per_graph"] == 2
    ev = CliRunner().invoke(app, ["eval", str(out), "--count", "50", "--json"])
    assert ev.exit_code == 0 and json.loads(ev.stdout)["objective"] == "answer-dropout"


@pytest.mark.parametrize("extra, says", [
    (["--targets-per-graph", "3"], "--targets-per-graph 3: must be an integer from 1 to 2"),
    (["--targets-per-graph", "2", "--batch-size", "33"], "--batch-size 33 is not a multiple of --targets-per-graph 2"),
    (["--targets-per-graph", "2", "-d", "2-3"], "needs one shape"),
    (["--objective", "answer-dropout", "--drop-mode", "all"], "--drop-mode all: choose token, span, replace"),
])
def test_bad_structured_or_dropout_options_are_one_line(tmp_path, extra, says):
    res = CliRunner().invoke(app, ["train", "--out", str(tmp_path / "r"), "-l", "3", "-n", "20", *extra])
    assert res.exit_code == 2 and says in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.output
    assert not (tmp_path / "r").exists()


def test_query_first_layout_puts_the_query_before_the_edge_list():
    g = parse_line("1,2|0,1|0,3|3,4/0,2=0,1,2")
    tok = Tokenizer(10, query_first=True)
    P, EQ, S = 10, 11, 12
    assert tok.question(g) == [0, 2, S, 1, 2, P, 0, 1, P, 0, 3, P, 3, 4, EQ]
    assert len(tok.question(g)) == Tokenizer(10).question_len(4)
    mask = Tokenizer.edge_node_mask(4, query_first=True)
    assert [t for t, m in zip(tok.question(g), mask.tolist()) if m] == [1, 2, 0, 1, 0, 3, 3, 4]
    assert tok.edge_of_position(g, 0) is None and tok.edge_of_position(g, 3) == (1, 2) and tok.edge_of_position(g, 14) is None


def test_query_first_padded_batch_is_left_padded_like_the_default():
    from ntp_probe.task import Topologies, generate_set
    from ntp_probe.tokenizer import PAD

    b = generate_set(Topologies.parse("2-3", "3-4", 20), 20, 40, seed=5)
    tok = Tokenizer(20, query_first=True)
    q = tok.questions(b)
    for row, g in zip(q.tolist(), b.graphs()):
        want = tok.question(g)
        assert row[len(row) - len(want):] == want and set(row[:len(row) - len(want)]) <= {PAD}


def test_a_query_first_model_keeps_its_layout_and_is_scored_in_it(tmp_path):
    out = tmp_path / "qf"
    args = ["train", "--out", str(out), "-d", "2", "-l", "3", "-n", "10", "--layers", "1", "--d-model", "32", "--heads", "2",
            "--steps", "20", "--eval-every", "10", "--eval-count", "32", "--batch-size", "32", "--amp", "fp32",
            "--device", "cpu", "--query-first", "-q"]
    assert CliRunner().invoke(app, args).exit_code == 0
    from ntp_probe.checkpoint import load

    lm = load(out)
    assert lm.meta["task"]["layout"] == "query-first" and lm.tokenizer.query_first
    g = parse_line("1,2|0,1|0,3|3,4/0,2=0,1,2")
    from ntp_probe.probing import ProbeSession

    s = ProbeSession(lm, g)
    assert s.token_str(lm.tokenizer.question(g)[2]) == "/"
    ev = CliRunner().invoke(app, ["eval", str(out), "--count", "40", "--json"])
    assert ev.exit_code == 0, ev.output
    # eval scores in the header's layout: the held-out figure training logged is what eval measures
    from ntp_probe.evaluate import evaluate

    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    held_out = generate(2, 3, 10, 32, seed=0 + 999_983)
    assert evaluate(lm, held_out)["accuracy"] == pytest.approx(last["accuracy"])


def test_the_leaderboard_has_one_row_per_fix_and_shape(tmp_path, trained):
    from ntp_probe.leaderboard import fix_label

    lm = trained("next-token")
    assert fix_label(lm) == "next-token"
    data = tmp_path / "data"
    data.mkdir()
    from ntp_probe.task import format_lines

    (data / "deg_2_path_3_nodes_10_test_30.txt").write_text("\n".join(format_lines(generate(2, 3, 10, 30, seed=9))) + "\n")
    res = CliRunner().invoke(app, ["reproduce", "--leaderboard", "--out", str(tmp_path / "lb"), "--models", str(lm.path),
                                   "--data-dir", str(data), "--count", "50"])
    assert res.exit_code == 0, res.output
    rows = json.loads((tmp_path / "lb" / "leaderboard.json").read_text())
    assert [(r["shape"], r["side"], r["fix"], r["count"]) for r in rows] == [("G(2,3)", "pitfall", "next-token", 30)]
    assert rows[0]["scored_on"] == "deg_2_path_3_nodes_10_test_30.txt" and rows[0]["chance"] == 0.5
    md = (tmp_path / "lb" / "leaderboard.md").read_text()
    assert md.count("\n| G(2,3) |") == 1
    bad = CliRunner().invoke(app, ["reproduce", "--leaderboard", "--out", str(tmp_path / "lb2"), "--models", "nope-model"])
    assert bad.exit_code == 2 and not (tmp_path / "lb2").exists()
