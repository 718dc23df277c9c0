import math

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


def test_hybrid_inputs_targets_and_loss_mix():
    """Hybrid = teacherless rows on top of teacher-forced rows, loss = mix·L_teacherless + (1−mix)·L_next-token."""
    obj = make_objective("hybrid", mix=0.25)
    a = obj.answer(PATH)
    assert a.tolist() == PATH.tolist() and obj.answer_order == "forward"
    x, y = obj.train_batch(Q, a, DOLLAR)
    assert x.tolist() == [Q.tolist()[0] + [DOLLAR, DOLLAR], Q.tolist()[0] + [0, 1]]
    assert y[0, :, 0].tolist() == y[1, :, 0].tolist() == [IGNORE] * 14 + [0, 1, 2]
    # by hand: teacherless row has probability 1/2 on every target (loss ln 2), the forced row 1/4 (loss ln 4)
    logits = torch.full((2, 17, 14), -1e4)
    logits[0, 14:, :2] = 0.0
    logits[0, 16, 2], logits[0, 16, 1] = 0.0, -1e4  # row 0, last position: {0, 2} equally likely
    logits[1, 14:, :4] = 0.0
    want = 0.25 * math.log(2) + 0.75 * math.log(4)
    assert abs(obj.loss(logits, y).item() - want) < 1e-5
    assert obj.to_meta() == {"name": "hybrid", "n_future": 1, "mix": 0.25}
    assert make_objective("next-token").to_meta() == {"name": "next-token", "n_future": 1}  # old headers unchanged


def test_hybrid_mix_out_of_range():
    import pytest

    from ntp_probe.errors import UsageError

    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(UsageError, match="--mix"):
            make_objective("hybrid", mix=bad)


def test_hybrid_trains_saves_and_decodes_like_teacherless(trained):
    lm = trained("hybrid")
    assert lm.objective.name == "hybrid" and lm.objective.mix == 0.5 and lm.objective.teacherless
