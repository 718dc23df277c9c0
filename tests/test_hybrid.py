"""The hybrid objective: teacherless loss + next-token loss on the same graphs, decoded like teacherless."""

import math

import pytest
import torch
import torch.nn.functional as F

from ntp_probe import checkpoint as ckpt
from ntp_probe.decoding import greedy, teacher_forced
from ntp_probe.errors import UsageError
from ntp_probe.objectives import IGNORE, get
from ntp_probe.task import parse_line
from ntp_probe.tokenizer import Tokenizer

# G(2,3), N=10: question "1 2 | 0 1 | 0 3 | 3 4 / 0 2 =" (15 tokens), path 0 1 2
G = parse_line("1,2|0,1|0,3|3,4/0,2=0,1,2")
TOK = Tokenizer(10)
DOLLAR = TOK.dollar
Q = torch.tensor([TOK.question(G)])
PATH = torch.tensor([G.path])


def test_inputs_and_targets_by_hand():
    obj = get("hybrid", mix=0.25)
    a = obj.answer(PATH)
    assert a.tolist() == PATH.tolist() and obj.answer_order == "forward"
    x, y = obj.train_batch(Q, a, DOLLAR)
    q = Q.tolist()[0]
    assert x.tolist() == [q + [DOLLAR, DOLLAR],  # teacherless: $ after the question
                          q + [0, 1]]  # next-token: the true answer (all but its last node)
    assert y[0, :, 0].tolist() == y[1, :, 0].tolist() == [IGNORE] * 14 + [0, 1, 2]


def test_loss_mixes_the_two_losses_from_hand_made_logits():
    obj = get("hybrid", mix=0.25)
    x, y = obj.train_batch(Q, PATH, DOLLAR)
    # teacherless row: probability 1/2 on every target (loss ln 2); teacher-forced row: 1/4 (loss ln 4)
    logits = torch.full((2, 17, 14), -1e4)
    logits[0, 14:, :2] = 0.0
    logits[0, 16, 2], logits[0, 16, 1] = 0.0, -1e4  # row 0, last position: {0, 2} equally likely
    logits[1, 14:, :4] = 0.0
    assert obj.loss(logits, y).item() == pytest.approx(0.25 * math.log(2) + 0.75 * math.log(4), abs=1e-5)


def test_loss_is_the_mix_of_the_models_two_losses(trained):
    """On a real model's logits: mix·L_teacherless + (1−mix)·L_next-token, each computed by hand."""
    lm = trained("next-token")
    obj = get("hybrid", mix=0.3)
    x, y = obj.train_batch(Q, PATH, DOLLAR)
    with torch.no_grad():
        logits = obj.train_logits(lm.model, x).float()  # [2, 17, V]
        tl_in = torch.tensor([Q.tolist()[0] + [DOLLAR, DOLLAR]])
        nt_in = torch.tensor([Q.tolist()[0] + [0, 1]])
        lp_tl = lm.model(tl_in).logits[0, 14:].float().log_softmax(-1)  # positions '=', $, $ predict 0, 1, 2
        lp_nt = lm.model(nt_in).logits[0, 14:].float().log_softmax(-1)  # positions '=', 0, 1 predict 0, 1, 2
    l_tl = -(lp_tl[0, 0] + lp_tl[1, 1] + lp_tl[2, 2]) / 3
    l_nt = -(lp_nt[0, 0] + lp_nt[1, 1] + lp_nt[2, 2]) / 3
    assert obj.loss(logits, y).item() == pytest.approx(float(0.3 * l_tl + 0.7 * l_nt), abs=1e-5)
    assert float(F.cross_entropy(logits[0, 14:], torch.tensor([0, 1, 2]))) == pytest.approx(float(l_tl), abs=1e-5)


def test_mix_is_checked_and_kept_in_the_header():
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(UsageError, match="--mix"):
            get("hybrid", mix=bad)
    assert get("hybrid", mix=0.25).to_meta() == {"name": "hybrid", "n_future": 1, "mix": 0.25}
    assert get("hybrid").to_meta() == {"name": "hybrid", "n_future": 1, "mix": 0.5}


def test_trains_saves_loads_and_decodes_like_teacherless(trained, tmp_path):
    lm = trained("hybrid")
    assert lm.objective.name == "hybrid" and lm.objective.mix == 0.5
    assert lm.meta["objective"] == {"name": "hybrid", "n_future": 1, "mix": 0.5}
    b = torch.tensor([TOK.question(G)] * 2)
    dec = greedy(lm, b)
    # one pass with $ inputs: the same logits as a plain forward pass of question + $ $
    x = torch.tensor([Q.tolist()[0] + [DOLLAR, DOLLAR]] * 2)
    with torch.no_grad():
        want = lm.model(x).logits[:, 14:].float()
    assert torch.allclose(dec.logits, want, atol=1e-5) and torch.equal(dec.tokens, want.argmax(-1))
    assert torch.allclose(teacher_forced(lm, b, PATH.expand(2, -1)), want, atol=1e-5)  # scored like teacherless
    ckpt.save(tmp_path / "m.safetensors", lm.model, lm.meta)
    again = ckpt.load(tmp_path / "m.safetensors")
    assert again.objective == lm.objective and torch.equal(greedy(again, b).tokens, dec.tokens)
