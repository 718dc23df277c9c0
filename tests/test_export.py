"""TransformerLens export (the [interp] extra): a HookedTransformer whose logits equal ours."""

import pytest
import torch
from typer.testing import CliRunner

from ntp_probe.cli import app
from ntp_probe.task import generate

try:
    from transformer_lens import HookedTransformer  # noqa: F401
except ImportError as e:  # not installed, or TransformerLens 4.x (which removed HookedTransformer)
    pytest.skip(f"TransformerLens 3.x not available ({e.__class__.__name__}): pip install 'ntp-probe[interp]'",
                allow_module_level=True)

runner = CliRunner()


def ours_vs_hooked(lm, hooked):
    b = generate(lm.task.degree, lm.task.path_len, lm.task.nodes, 32, seed=7)
    q = lm.tokenizer.questions(b)
    x = lm.objective.inputs(q, lm.objective.answer(b.path), lm.tokenizer.dollar)
    with torch.no_grad():
        return lm.model(x).logits, hooked(x)


@pytest.mark.parametrize("objective", ["next-token", "teacherless"])
def test_hooked_logits_equal_ours(trained, objective):
    from ntp_probe.export import to_hooked_transformer

    lm = trained(objective)
    a, b = ours_vs_hooked(lm, to_hooked_transformer(lm))
    assert a.shape == b.shape and torch.allclose(a, b, atol=1e-5), (a - b).abs().max()


def test_bidirectional_mlmu_exports(tmp_path):
    from conftest import tiny_config

    from ntp_probe.checkpoint import load
    from ntp_probe.export import to_hooked_transformer
    from ntp_probe.train import train

    train(tiny_config(tmp_path, "mlm-u", steps=5), tmp_path)
    lm = load(tmp_path)
    hooked = to_hooked_transformer(lm)
    assert hooked.cfg.attention_dir == "bidirectional"
    a, b = ours_vs_hooked(lm, hooked)
    assert torch.allclose(a, b, atol=1e-5)


def test_cli_export_round_trip_and_errors(trained, tmp_path):
    from ntp_probe.export import load_hooked

    lm = trained("next-token")
    out = tmp_path / "tl.safetensors"
    r = runner.invoke(app, ["export", str(lm.path), "--to", "transformer-lens", "--out", str(out)])
    assert r.exit_code == 0, r.output
    a, b = ours_vs_hooked(lm, load_hooked(out))
    assert torch.allclose(a, b, atol=1e-5)
    _, cache = load_hooked(out).run_with_cache(torch.zeros(1, 5, dtype=torch.long))
    assert "blocks.0.attn.hook_pattern" in cache
    r = runner.invoke(app, ["export", str(lm.path), "--to", "onnx", "--out", str(out)])
    assert r.exit_code == 2 and "transformer-lens" in r.stderr
