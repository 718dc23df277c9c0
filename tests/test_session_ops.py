"""The probing API's session operations as the app queues them: ``then`` returns a changed copy and leaves
the original as it was; the mirror on another model is decoded once per state."""

from pathlib import Path

import pytest

from ntp_probe.errors import NtpProbeError
from ntp_probe.probing import ProbeSession, parse_for_model
from ntp_probe.task import read_lines

GRAPH = "1→2, 0→1, 0→3, 3→4 || find(0 → 2)"
DATA = Path(__file__).parent / "fixtures" / "deg_2_path_3_nodes_10_test_head100.txt"


@pytest.fixture
def lm(trained):
    return trained("next-token")


def state(s):
    return (s.graph, dict(s.forced), s.cursor, s.tokens, [st.probs for st in s.steps], s.strategy)


def test_then_changes_a_copy_only(lm):
    s = ProbeSession(lm, parse_for_model(GRAPH, lm))
    before = state(s)
    ops = [(ProbeSession.reset,), (ProbeSession.step,), (ProbeSession.force_wrong_arm,), (ProbeSession.force, 2, 4),
           (ProbeSession.undo_force,), (ProbeSession.next_strategy,), (ProbeSession.clear_forced,),
           (ProbeSession.set_graph_from_file, DATA, 3)]
    t = s
    for op in ops:
        prev, prev_state = t, state(t)
        t = t.then(*op)
        assert t is not prev and state(prev) == prev_state
    assert state(s) == before
    # the same operations in place give the same session
    ref = ProbeSession(lm, parse_for_model(GRAPH, lm))
    for op in ops:
        op[0](ref, *op[1:])
    assert (t.graph, t.forced, t.cursor, t.tokens, t.strategy) == (ref.graph, ref.forced, ref.cursor, ref.tokens, ref.strategy)
    assert t.graph == read_lines(DATA, 10)[2] and t.cursor == t.length


def test_operation_errors_leave_the_session(lm):
    s = ProbeSession(lm, parse_for_model(GRAPH, lm))
    before = state(s)
    with pytest.raises(NtpProbeError, match="out of range"):
        s.then(ProbeSession.set_graph_from_file, DATA, 1000)
    with pytest.raises(NtpProbeError, match="out of range"):
        s.then(ProbeSession.force, 1, 99)
    assert state(s) == before
    star = parse_for_model("0→1, 1→2 || find(0 → 2)", lm)  # one arm: no wrong arm to force
    one = ProbeSession(lm, star)
    assert one.force_wrong_arm() is None
    with pytest.raises(NtpProbeError, match="no other arm"):
        one.then(ProbeSession.force_wrong_arm, required=True)


def test_undo_force_and_next_strategy(lm):
    s = ProbeSession(lm, parse_for_model(GRAPH, lm))
    s.force_wrong_arm()
    assert s.forced == {0: 0, 1: 3}
    s.undo_force()
    assert s.forced == {0: 0}
    kinds = []
    for _ in range(4):
        s.next_strategy()
        kinds.append(s.strategy.kind)
    assert kinds == ["sample", "beam", "verify", "greedy"]


def test_mirror_is_decoded_once_per_state(trained, monkeypatch):
    nt, rev = trained("next-token"), trained("reverse")
    s = ProbeSession(nt, parse_for_model(GRAPH, nt), cursor=0)
    decodes = []
    real = ProbeSession.rescore
    monkeypatch.setattr(ProbeSession, "rescore", lambda self: (decodes.append(self.lm), real(self))[1])
    m0 = s.mirror(rev)
    assert decodes == [rev]
    t = s.then(ProbeSession.step).then(ProbeSession.step)  # cursor moves: no decode of either model
    m1 = t.mirror(rev)
    assert decodes == [rev] and m1.cursor == 2 and m0.cursor == 0 and m1.tokens == m0.tokens
    u = t.then(ProbeSession.force_wrong_arm)  # a new state: the mirror is decoded again, once
    mu = u.mirror(rev)
    assert decodes == [rev, nt, rev] and mu.forced == {2: 0}  # the wrong arm's node: no place in a reverse answer
    assert u.mirror(rev).tokens == mu.tokens and decodes == [rev, nt, rev]
    fresh = ProbeSession(rev, u.graph, {2: 0}, u.cursor)
    assert mu.tokens == fresh.tokens and [st.probs.tolist() for st in mu.steps] == [st.probs.tolist() for st in fresh.steps]
