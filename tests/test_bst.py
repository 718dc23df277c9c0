"""The Belief State Transformer (Hu et al. 2025): its pairs, targets and loss by hand, the model's two encoders and
head, decoding with the next head and the empty suffix, save/load, a tiny real training, and the tools on it."""

import json
import os
import signal

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from conftest import tiny_config
from ntp_probe import checkpoint as ckpt
from ntp_probe.bst import BST, pairs
from ntp_probe.cli import app
from ntp_probe.errors import ModelFileError, UsageError
from ntp_probe.model import GPT, GPTConfig
from ntp_probe.objectives import get

runner = CliRunner()

# G(2,3) N=10: edges 0→1 1→2 0→3 3→4, start 0, goal 4 (ids: | = 10, '=' = 11, / = 12, $ = 13)
QUESTION = torch.tensor([[0, 1, 10, 1, 2, 10, 0, 3, 10, 3, 4, 12, 0, 4, 11]])
ANSWER = torch.tensor([[0, 3, 4]])


def _model(seed: int = 0) -> BST:
    torch.manual_seed(seed)
    return BST(GPTConfig(vocab_size=14, block_size=17, n_layer=2, n_head=2, n_embd=32, bst=True)).eval()


def test_pairs_and_their_targets_by_hand():
    obj = get("bst")
    i, j = pairs(3)
    # prefix = question + answer[:i], suffix = answer[j:] (j = 3: empty), at least one answer token between them
    assert list(zip(i.tolist(), j.tolist())) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    x, y = obj.train_batch(QUESTION, ANSWER, 13)
    assert torch.equal(x, torch.cat([QUESTION, ANSWER], 1))  # the whole sequence: F reads prefixes, B suffixes
    # (next target answer[i], prev target answer[j-1]) for each pair
    assert y.shape == (1, 6, 2)
    assert y[0].tolist() == [[0, 0],  # ('…=', '3 4'): between them only the start 0
                             [0, 3],  # ('…=', '4'): the start after '=', the 3 before the goal
                             [0, 4],  # ('…=', ∅): the start, and the goal as the last token
                             [3, 3],  # ('…= 0', '4')
                             [3, 4],  # ('…= 0', ∅)
                             [4, 4]]  # ('…= 0 3', ∅)
    assert len(pairs(5)[0]) == 15
    # the answer starts after the question's one '=', in either question layout
    from ntp_probe.objectives.bst import answer_start
    from ntp_probe.task import parse
    from ntp_probe.tokenizer import Tokenizer

    g = parse("0,1|1,2|0,3|3,4/0,4", nodes=10)
    for tok in (Tokenizer(10), Tokenizer(10, query_first=True)):
        assert answer_start(torch.tensor([tok.question(g) + [0, 3, 4]]), tok.eq) == 15
    # decoding and teacher forcing read the plain next-token input
    assert torch.equal(obj.inputs(QUESTION, ANSWER, 13), torch.cat([QUESTION, ANSWER[:, :-1]], 1))
    assert obj.to_meta() == {"name": "bst", "n_future": 1} and obj.model_fields(13) == {"bst": True}


def test_loss_is_the_mean_over_all_pairs_and_both_heads():
    obj = get("bst")
    _, y = obj.train_batch(QUESTION.repeat(2, 1), torch.tensor([[0, 3, 4], [0, 1, 2]]), 13)
    torch.manual_seed(1)
    logits = torch.randn(2, 6, 2, 14)
    each = F.cross_entropy(logits.reshape(-1, 14), y.reshape(-1), reduction="none")
    assert each.numel() == 24  # 2 graphs × 6 pairs × 2 heads, none ignored
    torch.testing.assert_close(obj.loss(logits, y), each.mean())
    # one wrong target among 24 certain ones: the loss is its cross-entropy / 24
    sure = torch.full((2, 6, 2, 14), -30.0).scatter(3, y[..., None], 30.0)
    sure[1, 4, 1] = 0.0  # uniform
    torch.testing.assert_close(obj.loss(sure, y), torch.tensor(14.0).log() / 24, atol=1e-6, rtol=0)


def test_pair_logits_are_the_head_on_each_prefix_and_suffix_encoded_alone():
    model, Q = _model(), QUESTION.shape[1]
    seq = torch.cat([QUESTION, ANSWER], 1)
    with torch.no_grad():
        got = model(seq, pairs_from=Q).logits
        assert got.shape == (1, 6, 2, 14)
        for p, (i, j) in enumerate(zip(*pairs(3))):
            f = model.ln_f(model.trunk(seq[:, : Q + i])[0])[:, -1]  # F over the prefix alone
            b = model.back(ANSWER[:, j:].flip(1))[:, -1]  # B over the suffix alone, last token first
            torch.testing.assert_close(got[:, p], model.both_heads(f, b))
        # B never sees the question: another graph with the same answer gives the same suffix states
        other = QUESTION.clone()
        other[0, :11] = torch.tensor([0, 5, 10, 5, 6, 10, 0, 3, 10, 3, 4])
        b1 = model.back(ANSWER[:, 1:].flip(1))
        torch.testing.assert_close(model.back(torch.cat([other, ANSWER], 1)[:, Q + 1 :].flip(1)), b1)
    # F and B are separate networks of the same size; nothing of B is shared with F
    f_params = {id(p) for n, p in model.named_parameters() if not n.startswith(("back.", "head."))}
    assert not f_params & {id(p) for p in model.back.parameters()}
    assert len(model.back.blocks) == len(model.blocks) == 2


def test_decoding_is_the_next_head_with_the_empty_suffix():
    from ntp_probe.checkpoint import LoadedModel, TaskSpec
    from ntp_probe.decoding import beam_search, greedy, teacher_forced

    model, Q = _model(), QUESTION.shape[1]
    x = torch.cat([QUESTION, ANSWER[:, :-1]], 1)
    with torch.no_grad():
        plain = model(x).logits
        empty = model.back(torch.zeros(1, 0, dtype=torch.long))[0, 0]  # the start vector alone
        f = model.ln_f(model.trunk(x)[0])
        torch.testing.assert_close(plain, model.both_heads(f, empty.expand_as(f))[..., 0, :])
        # ... which is what training's empty-suffix pairs (j = L) use for the next head
        train = model(torch.cat([QUESTION, ANSWER], 1), pairs_from=Q).logits
        i, j = pairs(3)
        torch.testing.assert_close(train[0, j == 3, 0], plain[0, Q - 1 :])
        assert model.readout(model(x, want_hidden=True).hidden[-1]).allclose(plain)  # the logit lens' last layer
    lm = LoadedModel(model, TaskSpec(2, 3, 10), get("bst"), {})
    with torch.no_grad():
        dec = greedy(lm, QUESTION)
        seq = QUESTION
        for _ in range(3):  # the same decoding by hand, no cache
            seq = torch.cat([seq, model(seq).logits[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(dec.tokens, seq[:, Q:])
    assert torch.equal(greedy(lm, QUESTION, use_cache=False).tokens, dec.tokens)  # the KV cache changes nothing
    assert beam_search(lm, QUESTION, 3)[0].shape == (1, 3, 3)
    torch.testing.assert_close(teacher_forced(lm, QUESTION, ANSWER), plain[:, Q - 1 :])


def test_save_load_round_trip_gives_identical_logits(tmp_path):
    from ntp_probe.checkpoint import TaskSpec, make_meta

    model, obj = _model(3), get("bst")
    path = tmp_path / "model.safetensors"
    ckpt.save(path, model, make_meta(model, TaskSpec(2, 3, 10), obj))
    lm = ckpt.load(path)
    assert isinstance(lm.model, BST) and lm.objective == obj and lm.model.config == model.config
    seq = torch.cat([QUESTION, ANSWER], 1)
    with torch.no_grad():
        assert torch.equal(lm.model(seq[:, :-1]).logits, model(seq[:, :-1]).logits)
        assert torch.equal(lm.model(seq, pairs_from=15).logits, model(seq, pairs_from=15).logits)
    meta = ckpt.read_meta(path)
    assert meta["config"]["bst"] is True and meta["objective"] == {"name": "bst", "n_future": 1}
    from ntp_probe.cards import architecture

    assert architecture(meta["config"]).startswith("belief state transformer: two 2-layer, 32-wide, 2-head GPTs")
    # a header that contradicts the tensors or the objective is one clear error
    from safetensors.torch import load_file, save_file

    for change, message in (({"bst": False}, "bst=False, but the bst objective needs True"),
                            ({"bst": "yes"}, r"bst 'yes': not true or false")):
        bad = tmp_path / f"bad-{change['bst']}.safetensors"
        save_file(load_file(str(path)), str(bad),
                  metadata={"ntp_probe": json.dumps({**meta, "config": {**meta["config"], **change}})})
        with pytest.raises(ModelFileError, match=message):
            ckpt.load(bad)


def test_old_model_files_load_as_plain_gpts():
    lm = ckpt.load("g2-3-next-token")
    assert type(lm.model) is GPT and lm.model.config.bst is False and "bst" not in lm.meta["config"]


def test_a_tiny_training_reduces_the_loss_and_resumes_exactly(tmp_path):
    from ntp_probe.train import DataStream, model_config, train

    cfg = tiny_config(tmp_path / "a", "bst", steps=60, eval_every=20, lr=1e-2)
    train(cfg, tmp_path / "a")
    lm = ckpt.load(tmp_path / "a")
    assert isinstance(lm.model, BST) and lm.objective.name == "bst"
    torch.manual_seed(cfg.seed)  # the run's initial weights
    untrained = ckpt.build_model(model_config(cfg, lm.objective)).eval()
    x, y = DataStream(cfg, torch.device("cpu")).batch(10_000)  # a batch the run never saw
    with torch.no_grad():
        before, after = (lm.objective.loss(lm.objective.train_logits(m, x), y).item() for m in (untrained, lm.model))
    assert before > 2.6 and after < before - 0.25, (before, after)  # from ln 14 (uniform) down
    logged = [json.loads(line)["loss"] for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert len(logged) == 3 and logged[-1] < logged[0], logged
    # interrupted (Ctrl-C) after step 30 and resumed: the same weights as the straight run
    def interrupt_at_30(e):
        if e["event"] == "step" and e["step"] == 30:
            os.kill(os.getpid(), signal.SIGINT)

    assert train(cfg, tmp_path / "b", callback=interrupt_at_30)["step"] == 30
    train(cfg, tmp_path / "b", resume=True)
    a, b = lm.model.state_dict(), ckpt.load(tmp_path / "b").model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_cli_train_eval_probe_clever_hans_models_and_what_does_not_apply(tmp_path, monkeypatch):
    out = tmp_path / "models" / "tiny-bst"
    common = ["--degree", "2", "--path-len", "3", "--nodes", "10", "--layers", "1", "--d-model", "32", "--heads", "2",
              "--batch-size", "32", "--eval-count", "32", "--amp", "fp32", "-q"]
    r = runner.invoke(app, ["train", "--objective", "bst", "--out", str(out), "--steps", "20", "--eval-every", "10",
                            *common])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["eval", str(out), "--count", "40", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["objective"] == "bst"
    graph = "0→1, 1→2, 0→3, 3→4 || find(0 → 4)"
    r = runner.invoke(app, ["probe", str(out), "--graph", graph, "--force", "0,1", "--layers", "--json"])
    assert r.exit_code == 0, r.output
    assert len(json.loads(r.stdout.splitlines()[0])["tokens"]) == 3
    r = runner.invoke(app, ["clever-hans", str(out), "--count", "40", "--json"])
    assert r.exit_code == 0, r.output
    assert 0 <= json.loads(r.stdout)["goal_copy_rate"] <= 1
    monkeypatch.setenv("NTP_PROBE_MODELS", str(tmp_path / "models"))
    r = runner.invoke(app, ["models"])
    assert r.exit_code == 0 and any(ln.split()[:2] == ["tiny-bst", "bst"] for ln in r.output.splitlines()), r.output
    # one clear line where a command cannot apply
    r = runner.invoke(app, ["export", str(out), "--out", str(tmp_path / "x.safetensors")])
    assert r.exit_code == 2 and "belief state transformer" in r.output and not (tmp_path / "x.safetensors").exists()
    for extra, message in ((["--arch", "mamba"], "use --arch gpt"), (["--degree", "2,3"], "one shape only")):
        r = runner.invoke(app, ["train", "--objective", "bst", "--out", str(tmp_path / "no"), "--steps", "2", *common,
                                *extra])
        assert r.exit_code == 2 and message in r.output and len(r.output.strip().splitlines()) == 1, r.output
    assert not (tmp_path / "no").exists()
    with pytest.raises(UsageError, match="use --arch gpt"):
        from ntp_probe.train import validate

        validate(tiny_config(tmp_path, "bst", arch="mamba"))
