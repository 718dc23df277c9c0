"""The any-order objective mlm-u (Kitouni et al. 2024): masking, bidirectional model, decoding, tools, reproduce."""

import json

import pytest
import torch
from typer.testing import CliRunner

from conftest import tiny_config
from ntp_probe import checkpoint as ckpt
from ntp_probe.cli import app
from ntp_probe.decoding import greedy, teacher_forced
from ntp_probe.objectives import IGNORE, OBJECTIVES, make_objective

runner = CliRunner()


def test_masked_batch_masks_answer_only_and_targets_masked_positions():
    obj = make_objective("mlm-u")
    assert "mlm-u" in OBJECTIVES and not obj.causal and obj.extra_context == 1
    q = torch.arange(6).repeat(500, 1)
    a = torch.arange(10, 14).repeat(500, 1)
    g = torch.Generator().manual_seed(0)
    x, y = obj.masked_batch(q, a, 99, g)
    assert x.shape == (500, 10) and y.shape == (500, 10, 1)
    assert torch.equal(x[:, :6], q) and (y[:, :6] == IGNORE).all()
    masked = x[:, 6:] == 99
    assert masked.any(1).all()  # at least one per graph
    assert torch.equal(y[:, 6:, 0], torch.where(masked, a, torch.full_like(a, IGNORE)))
    frac = masked.float().mean(1)
    assert frac.min() <= 0.25 and frac.max() == 1.0  # rates spread over (0, 1]
    x2, _ = obj.masked_batch(q, a, 99, torch.Generator().manual_seed(0))
    assert torch.equal(x, x2)  # seeded


def test_mask_question_masks_edge_node_ids_at_the_graphs_rate(tmp_path):
    from ntp_probe.errors import UsageError
    from ntp_probe.train import DataStream, train

    cfg = tiny_config(tmp_path, "mlm-u", mask_question=True, batch_size=400)
    x, y = DataStream(cfg, torch.device("cpu")).batch(0)
    Q = 3 * 4 - 1 + 4  # G(2,3): 4 edges "u v |" without the last "|", then "/ s g ="
    q, dollar = x[:, :Q], cfg.nodes + 3
    node_pos = [p for p in range(3 * 4 - 1) if p % 3 != 2]
    fixed = [p for p in range(Q) if p not in node_pos]
    assert (q[:, fixed] != dollar).all() and (y[:, fixed, 0] == IGNORE).all()  # separators and query stay
    hidden = q[:, node_pos] == dollar
    assert hidden.any() and torch.equal(hidden, y[:, node_pos, 0] != IGNORE)  # a target wherever a node id is hidden
    ans_rate, q_rate = (x[:, Q:] == dollar).float().mean(1), hidden.float().mean(1)
    assert torch.corrcoef(torch.stack([ans_rate, q_rate]))[0, 1] > 0.5  # one rate per graph for both parts
    with pytest.raises(UsageError, match="mlm-u only"):
        train(tiny_config(tmp_path / "nt", mask_question=True), tmp_path / "nt")


@pytest.fixture(scope="module")
def mlmu(tmp_path_factory):
    from ntp_probe.train import train

    out = tmp_path_factory.mktemp("mlmu")
    train(tiny_config(out, "mlm-u", steps=20), out)
    return ckpt.load(out)


def test_model_is_bidirectional_and_one_token_longer(mlmu):
    cfg = mlmu.model.config
    assert cfg.causal is False and cfg.block_size == mlmu.task.seq_len + 1
    x = torch.randint(0, 10, (1, mlmu.task.question_len + 3))
    y = x.clone()
    y[0, -1] = (y[0, -1] + 1) % 10
    # changing the last token changes earlier logits: attention is not causal
    assert not torch.allclose(mlmu.model(x).logits[0, 0], mlmu.model(y).logits[0, 0])


def test_decoding_fills_every_position_and_keeps_forced(mlmu):
    from ntp_probe.task import generate

    b = generate(2, 3, 10, 16, seed=3)
    q = mlmu.tokenizer.questions(b)
    dec = greedy(mlmu, q)
    assert dec.tokens.shape == (16, 3) and dec.logits.shape == (16, 3, 14)
    assert (dec.tokens != mlmu.tokenizer.dollar).all()
    forced = torch.full((16, 3), -1)
    forced[:, 1] = b.path[:, 1]
    assert torch.equal(greedy(mlmu, q, forced).tokens[:, 1], b.path[:, 1])
    tf = teacher_forced(mlmu, q, b.path)
    assert tf.shape == (16, 3, 14)
    # position 0 of teacher forcing has nothing given: it is the first decoding pass
    first = mlmu.model(mlmu.objective.inputs(q, b.path, mlmu.tokenizer.dollar)).logits[:, q.shape[1]:]
    assert torch.allclose(tf[:, 0], first[:, 0].float(), atol=1e-5)


def test_learns_g23_and_tools_run(tmp_path):
    """A slightly longer run learns the easy ends of G(2,3) N=10; evaluate, probe, clever-hans work on it."""
    from ntp_probe.evaluate import evaluate
    from ntp_probe.metrics import clever_hans
    from ntp_probe.probing import ProbeSession
    from ntp_probe.task import generate, parse
    from ntp_probe.train import train

    train(tiny_config(tmp_path, "mlm-u", steps=150, eval_every=150), tmp_path)
    lm = ckpt.load(tmp_path)
    res = evaluate(lm, generate(2, 3, 10, 200, seed=5))
    assert res["objective"] == "mlm-u" and res["per_position"][0] > 0.9 and res["per_position"][-1] > 0.9
    ch = clever_hans(lm, generate(2, 3, 10, 100, seed=6))
    assert 0 <= ch["goal_copy_rate"] <= 1
    s = ProbeSession(lm, parse("0,1|1,2|0,3|3,4/0,4", nodes=10))
    assert s.attention() is None
    s.reset()
    s.step()
    assert s.cursor == 1
    s.force(1, 1)
    assert s.tokens[1] == 1 and s.steps[1].forced
    lens = s.layers(2)
    assert len(lens) == 1 and 0 <= lens[-1]["correct_prob"] <= 1
    from ntp_probe.decoding import Strategy, decode_with
    from ntp_probe.errors import UsageError

    with pytest.raises(UsageError, match="fill-in"):
        decode_with(lm, s._question(), Strategy("beam"))
    r = runner.invoke(app, ["probe", str(tmp_path), "--graph", "0,1|1,2|0,3|3,4/0,4", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout.splitlines()[0])["objective"] == "mlm-u"


def test_mamba_rejects_mlmu(tmp_path):
    from ntp_probe.errors import UsageError
    from ntp_probe.train import train

    with pytest.raises(UsageError, match="bidirectional"):
        train(tiny_config(tmp_path, "mlm-u", arch="mamba"), tmp_path)


@pytest.mark.slow
def test_reproduce_with_mlmu(tmp_path):
    r = runner.invoke(app, [str(a) for a in (
        "reproduce", "--out", tmp_path, "--degree", 2, "--path-len", 3, "--nodes", 10, "--objectives", "next-token,mlm-u",
        "--steps", 20, "--batch-size", 32, "--layers", 1, "--d-model", 32, "--heads", 2, "--eval-every", 10,
        "--count", 100, "--threads", 1)])
    assert r.exit_code == 0, r.output
    report = (tmp_path / "report.md").read_text()
    assert "mlm-u" in report and (tmp_path / "curve-mlm-u.png").is_file()


# -- --drop-masked: the reference code's masking (masked tokens dropped from the encoder, queries by position) --


def _hidden_model(hidden_token: int = 13):
    from ntp_probe.model import GPT, GPTConfig

    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=14, block_size=12, n_layer=2, n_head=2, n_embd=32, causal=False,
                         hidden_token=hidden_token)).eval()


def test_hidden_tokens_are_invisible_to_the_visible_ones_and_to_each_other():
    model, h = _hidden_model(), 13
    visible = torch.tensor([[3, 5, 10, 7, 2, 12]])
    with torch.no_grad():
        alone = model(visible).logits
        two = model(torch.cat([visible, torch.tensor([[h, h]])], 1)).logits
        three = model(torch.cat([visible, torch.tensor([[h, h, h]])], 1)).logits
        revealed = model(torch.cat([visible, torch.tensor([[h, 4, h]])], 1)).logits
    torch.testing.assert_close(two[:, :6], alone)  # the visible tokens read as if the masked ones were not there
    torch.testing.assert_close(three[:, :8], two)  # a query sees the visible tokens, not the other queries
    assert not torch.allclose(revealed[:, 6], three[:, 6])  # ... and a revealed token is visible to it
    # the plain model (no hidden token) reads the mask as an ordinary token: its outputs change
    plain = _hidden_model(-1)
    with torch.no_grad():
        assert not torch.allclose(plain(torch.cat([visible, torch.tensor([[h, h]])], 1)).logits[:, :6], plain(visible).logits)


def test_a_hidden_query_is_its_position_alone():
    model, h = _hidden_model(), 13
    with torch.no_grad():
        model.wte.weight[h] += 5.0  # the mask's own embedding plays no part
        a = model(torch.tensor([[3, 5, h, h]])).logits
        model.wte.weight[h] -= 5.0
        b = model(torch.tensor([[3, 5, h, h]])).logits
    torch.testing.assert_close(a, b)


def test_drop_masked_trains_saves_and_loads(tmp_path):
    from ntp_probe.errors import ModelFileError, UsageError
    from ntp_probe.train import train

    out = tmp_path / "dm"
    result = runner.invoke(app, ["train", "--out", str(out), "--degree", "2", "--path-len", "3", "--nodes", "10",
                                 "--objective", "mlm-u", "--drop-masked", "--mask-question", "--layers", "1",
                                 "--d-model", "32", "--heads", "2", "--steps", "20", "--batch-size", "32",
                                 "--eval-every", "10", "--eval-count", "32", "--amp", "fp32", "-q"])
    assert result.exit_code == 0, result.output
    lm = ckpt.load(out)
    assert lm.model.config.hidden_token == 13 and lm.objective.drop_masked
    meta = ckpt.read_meta(out / "model.safetensors")
    assert meta["objective"] == {"name": "mlm-u", "n_future": 1, "drop_masked": True}
    probe = runner.invoke(app, ["probe", str(out), "--graph", "0→1, 1→2, 0→3, 3→4 || find(0 → 4)", "--json"])
    assert probe.exit_code == 0, probe.output
    assert len(json.loads(probe.output)["tokens"]) == 3
    export = runner.invoke(app, ["export", str(out), "--to", "transformer-lens", "--out", str(tmp_path / "x.safetensors")])
    assert export.exit_code == 2 and "cannot express" in export.output and not (tmp_path / "x.safetensors").exists()
    # a header that drops masked tokens on a model built without them (or the reverse) is refused
    meta["config"]["hidden_token"] = -1
    from safetensors.torch import load_file, save_file

    bad = tmp_path / "bad.safetensors"
    save_file(load_file(str(out / "model.safetensors")), str(bad), metadata={"ntp_probe": json.dumps(meta)})
    with pytest.raises(ModelFileError, match="hidden_token=-1, but the mlm-u objective needs 13"):
        ckpt.load(bad)
    with pytest.raises(UsageError, match="mlm-u only"):
        train(tiny_config(tmp_path / "nt", drop_masked=True), tmp_path / "nt")
