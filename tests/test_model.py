import json

import pytest
import torch
from safetensors.torch import save_file

from ntp_probe import checkpoint as ckpt
from ntp_probe.checkpoint import TaskSpec
from ntp_probe.decoding import greedy
from ntp_probe.errors import ModelFileError
from ntp_probe.model import GPT, GPTConfig
from ntp_probe.objectives import make_objective
from ntp_probe.task import generate


def small_model(**kw):
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=14, block_size=17, n_layer=2, n_head=2, n_embd=32, **kw))


def test_kv_cache_matches_full_forward():
    m = small_model().eval()
    x = torch.randint(0, 14, (3, 17))
    full = m(x).logits
    cache = m.new_cache()
    parts = [m(x[:, :12], cache=cache).logits]
    for t in range(12, 17):
        parts.append(m(x[:, t : t + 1], cache=cache).logits)
    assert torch.allclose(torch.cat(parts, 1), full, atol=1e-5)
    # several tokens at once onto a cache
    cache = m.new_cache()
    m(x[:, :10], cache=cache)
    assert torch.allclose(m(x[:, 10:], cache=cache).logits, full[:, 10:], atol=1e-5)


def test_attention_weights_are_causal_and_match_sdpa():
    m = small_model().eval()
    x = torch.randint(0, 14, (2, 9))
    out = m(x, want_attn=True)
    assert torch.allclose(out.logits, m(x).logits, atol=1e-5)
    a = out.attentions[0]
    assert a.shape == (2, 2, 9, 9)
    assert torch.allclose(a.sum(-1), torch.ones(2, 2, 9))
    assert (a.triu(diagonal=1) == 0).all()


def test_context_overflow_is_an_error():
    m = small_model()
    with pytest.raises(ValueError, match="exceeds the model's context"):
        m(torch.zeros(1, 18, dtype=torch.long))


def test_multi_token_heads_shape():
    m = small_model(n_future=3)
    out = m(torch.randint(0, 14, (2, 5)), all_heads=True)
    assert out.logits.shape == (2, 5, 3, 14)


def save_tiny(path, **cfg_kw):
    m = small_model(**cfg_kw)
    meta = ckpt.make_meta(m, TaskSpec(2, 3, 10), make_objective("next-token"))
    ckpt.save(path, m, meta)
    return m


def test_checkpoint_reload_gives_identical_logits(tmp_path):
    m = save_tiny(tmp_path / "m.safetensors")
    lm = ckpt.load(tmp_path / "m.safetensors")
    x = torch.randint(0, 14, (4, 17))
    assert torch.equal(lm.model(x).logits, m.eval()(x).logits)
    assert lm.model.lm_head.weight.data_ptr() == lm.model.wte.weight.data_ptr()  # still tied
    assert lm.task == TaskSpec(2, 3, 10) and lm.objective.name == "next-token"
    # a directory holding model.safetensors works too
    (tmp_path / "run").mkdir()
    save_tiny(tmp_path / "run" / "model.safetensors")
    assert ckpt.load(tmp_path / "run").name == "run"


def test_bad_model_files(tmp_path):
    good = tmp_path / "good.safetensors"
    save_tiny(good)
    raw = good.read_bytes()
    cases = {}
    (tmp_path / "empty.safetensors").write_bytes(b"")
    cases["empty.safetensors"] = "empty file"
    (tmp_path / "trunc.safetensors").write_bytes(raw[: len(raw) // 2])
    cases["trunc.safetensors"] = "not a readable safetensors"
    (tmp_path / "random.safetensors").write_bytes(bytes(range(256)) * 10)
    cases["random.safetensors"] = "not a readable safetensors"
    save_file({"w": torch.zeros(3)}, tmp_path / "other.safetensors", metadata={"format": "pt"})
    cases["other.safetensors"] = "not an ntp-probe model"
    m = small_model()
    meta = ckpt.make_meta(m, TaskSpec(2, 3, 10), make_objective("next-token"))
    meta["config"]["n_embd"] = 64
    ckpt.save(tmp_path / "shapes.safetensors", m, meta)
    cases["shapes.safetensors"] = "tensors do not match the config"
    meta = ckpt.make_meta(m, TaskSpec(2, 3, 10), make_objective("next-token"))
    del meta["config"]
    ckpt.save(tmp_path / "noconfig.safetensors", m, meta)
    cases["noconfig.safetensors"] = "no 'config' section"
    meta = ckpt.make_meta(m, TaskSpec(2, 3, 20), make_objective("next-token"))
    ckpt.save(tmp_path / "vocab.safetensors", m, meta)
    cases["vocab.safetensors"] = "does not match N=20"
    for name, fragment in cases.items():
        with pytest.raises(ModelFileError) as e:
            ckpt.load(tmp_path / name)
        assert fragment in str(e.value), (name, str(e.value))
        assert "\n" not in str(e.value)
    with pytest.raises(ModelFileError, match="not found"):
        ckpt.load("no-such-model-anywhere")


def test_greedy_decoding_with_and_without_cache_agree(trained):
    lm = trained("next-token")
    b = generate(2, 3, 10, 50, seed=3)
    q = lm.tokenizer.questions(b)
    a, c = greedy(lm, q), greedy(lm, q, use_cache=False)
    assert torch.equal(a.tokens, c.tokens)
    assert torch.allclose(a.logits, c.logits, atol=1e-4)


def test_forced_tokens_are_kept(trained):
    for objective in ("next-token", "teacherless"):
        lm = trained(objective)
        b = generate(2, 3, 10, 8, seed=3)
        q = lm.tokenizer.questions(b)
        forced = torch.full((8, 3), -1)
        forced[:, 1] = 7
        out = greedy(lm, q, forced)
        assert (out.tokens[:, 1] == 7).all()


def test_explicit_causal_attention_matches_sdpa():
    import torch.nn.functional as F

    from ntp_probe.model import causal_attention

    torch.manual_seed(0)
    q, k, v = (torch.randn(3, 2, 7, 8) for _ in range(3))
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert torch.allclose(causal_attention(q, k, v), ref, atol=1e-5)
    got = causal_attention(*(t.bfloat16() for t in (q, k, v)))
    assert got.dtype == torch.bfloat16 and torch.allclose(got.float(), ref, atol=5e-2)
