import json
import math

import pytest
import torch
from typer.testing import CliRunner

from ntp_probe.cli import app
from ntp_probe.errors import GraphError, UsageError
from ntp_probe.metrics import arm_table, clever_hans
from ntp_probe.probing import ProbeSession, parse_for_model, parse_force
from ntp_probe.task import generate, parse

# G(2,3), N=10: arms 0→1→2 and 0→3→4, goal 2
GRAPH = "1→2, 0→1, 0→3, 3→4 || find(0 → 2)"


def test_session_scores_every_position(trained):
    lm = trained("next-token")
    s = ProbeSession(lm, parse_for_model(GRAPH, lm))
    assert len(s.steps) == 3 and s.answer_order == "forward"
    for st in s.steps:
        assert torch.isclose(st.probs.sum(), torch.tensor(1.0), atol=1e-4)
        assert st.entropy == pytest.approx(float(-(st.probs * st.probs.clamp_min(1e-12).log()).sum()), abs=1e-5)
        # rank and probability of the correct token, checked by hand against the distribution
        assert st.correct == [0, 1, 2][st.position]
        assert st.correct_prob == pytest.approx(float(st.probs[st.correct]))
        assert st.correct_rank == 1 + sum(float(p) > st.correct_prob for p in st.probs)
        top = st.top(3)
        assert top[0][1] >= top[1][1] >= top[2][1]
    # legal moves: the start first, then the children of the previous decoded token
    assert s.steps[0].legal == [0]
    assert sorted(s.steps[1].legal) == sorted(s.graph.children(s.tokens[0]))
    assert s.steps[1].legal_mass == pytest.approx(float(s.steps[1].probs[s.steps[1].legal].sum()))
    assert s.decision_position == 1


def test_forcing_changes_what_follows(trained):
    lm = trained("next-token")
    s = ProbeSession(lm, parse_for_model(GRAPH, lm))
    before = [st.probs.clone() for st in s.steps]
    s.force(1, 3)  # the wrong arm
    assert s.tokens[1] == 3 and s.steps[1].forced and not s.steps[2].forced
    assert torch.equal(s.steps[0].probs, before[0])  # nothing before the forced position changes
    assert not torch.allclose(s.steps[2].probs, before[2])  # what follows is re-scored
    assert s.steps[2].legal == [4]  # legal after the forced node is its child
    assert s.cursor >= 2
    assert not s.correct
    s.unforce(1)
    assert all(torch.allclose(a.probs, b) for a, b in zip(s.steps, before))


def test_cursor_steps(trained):
    lm = trained("next-token")
    s = ProbeSession(lm, parse_for_model(GRAPH, lm), cursor=0)
    assert s.current == 0
    s.step(); s.step(); s.step(); s.step()
    assert s.cursor == 3 and s.current == 2
    s.back()
    assert s.cursor == 2
    s.reset()
    assert s.cursor == 0
    s.run_to_end()
    assert s.cursor == 3
    s.reset()
    s.force_here(0)
    assert s.forced == {0: 0} and s.cursor == 1


def test_reverse_model_legal_moves_are_parents(trained):
    lm = trained("reverse")
    s = ProbeSession(lm, parse_for_model(GRAPH, lm))
    assert s.answer_order == "reverse" and s.decision_position == 1
    assert s.steps[0].legal == [2] and s.steps[0].correct == 2
    s.force(0, 2)
    assert s.steps[1].legal == s.graph.parents(2) == [1]
    assert s.true_answer == [2, 1, 0]
    assert s.path == s.tokens[::-1]


def test_teacherless_decodes_in_one_pass_and_reads_forced_inputs(trained):
    lm = trained("teacherless")
    s = ProbeSession(lm, parse_for_model(GRAPH, lm))
    assert len(s.steps) == 3
    s.force(1, 3)
    assert s.tokens[1] == 3


def test_mirror_maps_forced_tokens_by_node(trained):
    s = ProbeSession(trained("next-token"), parse_for_model(GRAPH, trained("next-token")))
    s.force(1, 3)  # off the path 0→1→2 (the other arm): no place in a goal→start answer
    r = s.mirror(trained("reverse"))
    assert r.forced == {} and "forced 3 not applied" in r.notes[0]
    s.force(0, 0)  # the start: the reverse answer's last token
    assert s.mirror(trained("reverse")).forced == {2: 0}
    assert s.mirror(trained("teacherless")).forced == {0: 0, 1: 3}  # same answer order: the same prefix


def test_attention_view(trained):
    lm = trained("next-token")
    s = ProbeSession(lm, parse_for_model(GRAPH, lm))
    a = s.attention(1)
    assert a.weights.shape[:2] == (1, 2)
    assert a.weights.shape[2] == 15 + 1  # the question and the first answer token
    assert torch.allclose(a.weights.sum(-1), torch.ones(1, 2), atol=1e-4)
    edge, w = a.top_edge(0, 0)
    assert edge in s.graph.edges and 0 <= w <= 1
    assert a.labels[-1] == str(s.tokens[0])


def test_bad_graphs_and_forces(trained):
    lm = trained("next-token")
    with pytest.raises(GraphError, match="out of range"):
        parse_for_model("0→1, 1→12 || find(0 → 12)", lm)
    with pytest.raises(GraphError, match="context"):
        parse_for_model(", ".join(f"{i}→{i+1}" for i in range(9)) + " || find(0 → 9)", lm)
    g = parse(GRAPH)
    assert parse_force("0, 3", lm, g) == [0, 3]
    for bad, msg in (("0,1,2,4", "only 3 positions"), ("x", "not a node id"), ("7", "not in the graph"), ("11", "out of range")):
        with pytest.raises(GraphError, match=msg):
            parse_force(bad, lm, g)
    # a graph that parses but is not a path-star is probed and reported as out of distribution
    s = ProbeSession(lm, parse_for_model("0→1, 1→2, 0→3 || find(0 → 2)", lm))
    assert any("unequal" in r for r in s.ood)


def test_arm_table():
    b = generate(3, 4, 20, 50, seed=1)
    arms = arm_table(b, 3, 4, 20)
    for g, a in zip(b.graphs(), arms.tolist()):
        assert sorted(map(tuple, a)) == sorted(map(tuple, g.arms()))


def test_clever_hans_measures(trained):
    lm = trained("next-token")
    res = clever_hans(lm, generate(2, 3, 10, 200, seed=5))
    assert res["count"] == 200 and 0 <= res["goal_copy_rate"] <= 1 and 0 <= res["wrong_leaf_rate"] <= 1
    assert res["follow_rate"] is None  # G(2,3): no inner step after the decision, nothing to follow
    assert res["log_degree"] == pytest.approx(math.log(2))
    assert 0 <= res["decision_mass_on_children"] <= 1.0001
    assert res["follow_rate_per_position"][:2] == [None, None]
    with pytest.raises(UsageError, match="does not apply"):
        clever_hans(trained("reverse"), generate(2, 3, 10, 10, seed=5))


runner = CliRunner()


def test_probe_cli_json_contract(trained):
    lm = trained("next-token")
    r = runner.invoke(app, ["probe", str(lm.path), "--graph", GRAPH, "--force", "0,3", "--top-k", "2", "--json"])
    assert r.exit_code == 0, r.output
    obj = json.loads(r.stdout)
    assert obj["answer_order"] == "forward"
    assert obj["tokens"][:2] == ["0", "3"] and obj["forced"] == [True, True, False]
    st = obj["steps"][2]
    assert set(st) >= {"position", "token", "forced", "entropy", "top"} and len(st["top"]) == 2
    assert obj["path"] == obj["tokens"] and obj["correct"] is False
    r = runner.invoke(app, ["probe", str(lm.path), "--graph", GRAPH])
    assert r.exit_code == 0 and "answer" in r.stdout


def test_probe_cli_many_graphs_one_line_each(trained, tmp_path):
    from ntp_probe.task import format_lines

    lm = trained("reverse")
    f = tmp_path / "g.txt"
    f.write_text("\n".join(format_lines(generate(2, 3, 10, 4, seed=2), with_answer=False)) + "\n")
    r = runner.invoke(app, ["probe", str(lm.path), "--graphs", str(f), "--json"])
    assert r.exit_code == 0, r.output
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert len(lines) == 4 and all(x["answer_order"] == "reverse" for x in lines)
    assert all(x["path"] == x["tokens"][::-1] for x in lines)


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--graph", "0→1, 1→x || find(0 → 1)"], "not a node id"),
        (["--graph", GRAPH, "--force", "0,7"], "not in the graph"),
        (["--graph", GRAPH, "--force", "0,1,2,4"], "only 3 positions"),
        ([], "exactly one of"),
    ],
)
def test_probe_cli_errors(trained, extra, fragment):
    r = runner.invoke(app, ["probe", str(trained("next-token").path), *extra])
    assert r.exit_code == 2 and fragment in r.stderr and "Traceback" not in r.output


def test_clever_hans_cli(trained):
    r = runner.invoke(app, ["clever-hans", str(trained("next-token").path), "--count", "50", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert {"follow_rate", "goal_copy_rate", "wrong_leaf_rate", "follow_rate_per_position", "decision_accuracy", "decision_entropy",
            "decision_mass_on_children"} <= set(res)
    r = runner.invoke(app, ["clever-hans", str(trained("reverse").path)])
    assert r.exit_code == 2 and "does not apply" in r.stderr
