import torch

from ntp_probe.objectives import IGNORE, make_objective
from ntp_probe.task import parse_line
from ntp_probe.tokenizer import Tokenizer

# G(2,3), N=10: question "1 2 | 0 1 | 0 3 | 3 4 / 0 2 =" (15 tokens), path 0 1 2
G = parse_line("1,2|0,1|0,3|3,4/0,2=0,1,2")
TOK = Tokenizer(10)
PIPE, EQ, SLASH, DOLLAR = 10, 11, 12, 13
Q = torch.tensor([TOK.question(G)])
PATH = torch.tensor([G.path])


def test_question_tokens():
    assert Q.tolist()[0] == [1, 2, PIPE, 0, 1, PIPE, 0, 3, PIPE, 3, 4, SLASH, 0, 2, EQ]


def test_next_token_inputs_and_targets():
    obj = make_objective("next-token")
    a = obj.answer(PATH)
    x, y = obj.inputs(Q, a, DOLLAR), obj.targets(Q, a)
    assert x.tolist()[0] == Q.tolist()[0] + [0, 1]
    assert y.shape == (1, 17, 1)
    assert y[0, :, 0].tolist() == [IGNORE] * 14 + [0, 1, 2]


def test_reverse_answer_is_goal_first():
    obj = make_objective("reverse")
    a = obj.answer(PATH)
    assert a.tolist() == [[2, 1, 0]] and obj.answer_order == "reverse"
    assert obj.inputs(Q, a, DOLLAR).tolist()[0][-2:] == [2, 1]
    assert obj.targets(Q, a)[0, -3:, 0].tolist() == [2, 1, 0]
    assert obj.to_path(a).tolist() == PATH.tolist()
    assert [obj.path_index(p, 3) for p in range(3)] == [2, 1, 0]


def test_teacherless_inputs_are_dollars():
    obj = make_objective("teacherless")
    a = obj.answer(PATH)
    x = obj.inputs(Q, a, DOLLAR)
    assert x.tolist()[0][-3:] == [EQ, DOLLAR, DOLLAR]
    assert obj.targets(Q, a)[0, -3:, 0].tolist() == [0, 1, 2]


def test_multi_token_targets_per_head():
    obj = make_objective("multi-token", n_future=3)
    y = obj.targets(Q, obj.answer(PATH))[0]  # [17, 3]
    # head 0 at '=' (position 14) predicts 0; head 1 at 'g' (position 13) predicts 0 two ahead; head 2 at 's' (12)
    assert y[14].tolist() == [0, 1, 2]
    assert y[13].tolist() == [IGNORE, 0, 1]
    assert y[12].tolist() == [IGNORE, IGNORE, 0]
    assert y[16].tolist() == [2, IGNORE, IGNORE]
    assert (y[:12] == IGNORE).all()


def test_loss_ignores_question_positions():
    obj = make_objective("next-token")
    a = obj.answer(PATH)
    y = obj.targets(Q, a)
    logits = torch.zeros(1, 17, 14)
    logits[0, 14:, :] = -50.0
    logits[0, 14, 0] = logits[0, 15, 1] = logits[0, 16, 2] = 50.0
    assert obj.loss(logits, y).item() < 1e-6  # question positions carry no loss even with uniform logits


# ------------------------------------------------------------------------------------------------
# The registry


def test_registry_names_and_lookup():
    import ntp_probe.objectives as objectives

    names = objectives.names()
    assert names[:5] == ("next-token", "reverse", "teacherless", "multi-token", "mlm-u") and "hybrid" in names
    for n in names:
        assert objectives.get(n).name == n and objectives.objective_class(n).name == n
    assert objectives.choices().endswith(f" or {names[-1]}")


def test_unknown_objective_names_the_choices():
    import pytest

    from ntp_probe.errors import UsageError
    from ntp_probe.objectives import from_meta, get, names

    for bad in ("sideways", "base", "", "next_token", "../x"):
        with pytest.raises(UsageError, match="unknown objective") as e:
            get(bad)
        assert ", ".join(names()) in str(e.value)
    with pytest.raises(UsageError, match="unknown objective"):
        from_meta({"name": ["not", "a", "name"]})
    with pytest.raises(UsageError, match="--mask-question applies to --objective mlm-u only"):
        get("next-token", mask_question=True)
    assert get("next-token", future=3, mix=0.2).to_meta() == {"name": "next-token", "n_future": 1}  # others' options ignored


def test_from_meta_round_trip_for_every_objective():
    from ntp_probe.objectives import from_meta, get, names

    metas = {n: get(n).to_meta() for n in names()}
    # the headers of existing checkpoints are unchanged
    assert metas["next-token"] == {"name": "next-token", "n_future": 1}
    assert metas["reverse"] == {"name": "reverse", "n_future": 1}
    assert metas["teacherless"] == {"name": "teacherless", "n_future": 1}
    assert metas["multi-token"] == {"name": "multi-token", "n_future": 4}
    assert metas["mlm-u"] == {"name": "mlm-u", "n_future": 1}
    assert metas["hybrid"] == {"name": "hybrid", "n_future": 1, "mix": 0.5}
    for n, meta in metas.items():
        assert from_meta(meta) == get(n) and from_meta(meta).to_meta() == meta
    assert from_meta({"name": "multi-token", "n_future": 3}).heads == 3
    assert from_meta({"name": "hybrid", "n_future": 1, "mix": 0.2}).mix == 0.2


def test_every_objective_trains_a_tiny_model_and_decodes(trained):
    import pytest

    from ntp_probe.decoding import Strategy, decode_with, greedy, teacher_forced
    from ntp_probe.errors import UsageError
    from ntp_probe.objectives import names
    from ntp_probe.probing import ProbeSession
    from ntp_probe.task import generate

    b = generate(2, 3, 10, 8, seed=1)
    for n in names():
        lm = trained(n)
        assert lm.objective.name == n and lm.model.config.causal == lm.objective.causal
        q = lm.tokenizer.questions(b)
        dec = greedy(lm, q)
        assert dec.tokens.shape == (8, 3) and dec.logits.shape == (8, 3, 14)
        assert teacher_forced(lm, q, lm.objective.answer(b.path)).shape == (8, 3, 14)
        for kind in ("greedy", "sample", "beam", "verify"):
            if kind in lm.objective.strategies:
                out, tries = decode_with(lm, q, Strategy(kind), batch=b)
                assert out.shape == (8, 3) and (tries >= 1).all()
            else:
                with pytest.raises(UsageError):
                    decode_with(lm, q, Strategy(kind), batch=b)
        s = ProbeSession(lm, next(iter(b.graphs())))
        s.force(1, s.true_answer[1])
        assert s.steps[1].forced and len(s.layers(1)) == 1
        assert (s.attention() is None) == (not lm.objective.supports_attention)
