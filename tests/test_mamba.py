"""Mamba (selective state-space model): recurrent cache = full forward, save/load, CLI training, eval/probe/clever-hans."""

import json

import pytest
import torch
from typer.testing import CliRunner

from conftest import FIXTURES
from ntp_probe import checkpoint as ckpt
from ntp_probe.checkpoint import TaskSpec
from ntp_probe.cli import app
from ntp_probe.mamba import Mamba
from ntp_probe.model import GPTConfig
from ntp_probe.objectives import make_objective
from ntp_probe.runfiles import MODEL_FILE

runner = CliRunner()


def small(**kw) -> GPTConfig:
    base = dict(vocab_size=14, block_size=12, n_layer=2, n_embd=32, arch="mamba", d_state=8, d_conv=4, expand=2)
    base.update(kw)
    return GPTConfig(**base)


def test_cached_steps_equal_full_forward():
    torch.manual_seed(0)
    m = Mamba(small()).eval()
    idx = torch.randint(0, 14, (3, 12))
    full = m(idx).logits
    for first in (1, 2, 7):  # a chunk (shorter and longer than the conv window), then single tokens
        cache = m.new_cache()
        parts = [m(idx[:, :first], cache=cache).logits]
        for t in range(first, 12):
            parts.append(m(idx[:, t : t + 1], cache=cache).logits)
        assert cache.length == 12
        assert torch.allclose(torch.cat(parts, 1), full, atol=1e-5)


def test_interface_hidden_no_attention_and_limits():
    m = Mamba(small(n_future=3)).eval()
    idx = torch.randint(0, 14, (2, 9))
    out = m(idx, want_attn=True, want_hidden=True)
    assert out.attentions is None and len(out.hidden) == 3
    assert torch.allclose(m.readout(out.hidden[-1]), out.logits, atol=1e-6)
    assert m(idx, all_heads=True).logits.shape == (2, 9, 3, 14)
    assert m.num_params() > 0 and m.flops_per_token(9) > 6 * m.num_params()
    with pytest.raises(ValueError, match="exceeds"):
        m(torch.zeros(1, 13, dtype=torch.long))
    sel = m.new_cache()
    m(idx, cache=sel)
    assert sel.select(torch.tensor([1, 1, 0])).ssm[0].shape[0] == 3


def test_old_config_without_mamba_fields_loads():
    d = small(arch="gpt").to_dict()
    for k in ("d_state", "d_conv", "expand", "causal"):
        d.pop(k)
    cfg = GPTConfig.from_dict(d)
    assert cfg.d_state == 16 and cfg.causal is True


def test_save_load_round_trip(tmp_path):
    task = TaskSpec(2, 3, 10)
    torch.manual_seed(1)
    m = Mamba(small(vocab_size=14, block_size=task.seq_len))
    obj = make_objective("reverse")
    ckpt.save(tmp_path / "m.safetensors", m, ckpt.make_meta(m, task, obj))
    lm = ckpt.load(tmp_path / "m.safetensors")
    assert lm.arch == "mamba" and isinstance(lm.model, Mamba) and lm.objective.answer_order == "reverse"
    idx = torch.randint(0, 14, (2, task.seq_len))
    assert torch.equal(lm.model(idx).logits, m.eval()(idx).logits)


@pytest.fixture(scope="module")
def mamba_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("mamba") / "run"
    r = runner.invoke(app, [str(a) for a in (
        "train", "--arch", "mamba", "--out", out, "--degree", 2, "--path-len", 3, "--nodes", 10, "--objective", "next-token",
        "--steps", 20, "--batch-size", 32, "--layers", 1, "--d-model", 32, "--d-state", 4, "--eval-every", 10,
        "--eval-count", 50, "--threads", 1, "-q")])
    assert r.exit_code == 0, r.output
    return out


def test_cli_training_and_tools(mamba_run):
    meta = ckpt.read_meta(mamba_run / MODEL_FILE)
    assert meta["config"]["arch"] == "mamba" and meta["config"]["d_state"] == 4
    assert len((mamba_run / "metrics.jsonl").read_text().splitlines()) == 2
    data = FIXTURES / "deg_2_path_3_nodes_10_test_head100.txt"
    args = ["--data", str(data)] if data.exists() else ["--count", "50"]
    r = runner.invoke(app, ["eval", str(mamba_run), *args, "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert 0 <= res["accuracy"] <= 1 and len(res["per_position"]) == 3
    graph = "0,1|1,2|0,3|3,4/0,4"
    r = runner.invoke(app, ["probe", str(mamba_run), "--graph", graph, "--force", "0,1", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout.splitlines()[0])["tokens"][:2] == ["0", "1"]
    r = runner.invoke(app, ["clever-hans", str(mamba_run), "--count", "40", "--json"])
    assert r.exit_code == 0, r.output
    assert 0 <= json.loads(r.stdout)["goal_copy_rate"] <= 1
    r = runner.invoke(app, ["export", str(mamba_run), "--out", str(mamba_run / "tl.safetensors")])
    assert r.exit_code == 2 and "only GPT" in r.stderr


def test_probe_session_on_mamba(mamba_run):
    from ntp_probe.probing import ProbeSession
    from ntp_probe.task import parse

    lm = ckpt.load(mamba_run)
    s = ProbeSession(lm, parse("0,1|1,2|0,3|3,4/0,4", nodes=10))
    assert s.attention() is None
    s.reset()
    s.step()
    assert s.cursor == 1 and len(s.steps) == 3
    s.force_wrong_arm()
    assert s.steps[1].forced


def test_ship_writes_a_loadable_model_with_its_card(mamba_run, tmp_path):
    data = FIXTURES / "deg_2_path_3_nodes_10_test_head100.txt"
    r = runner.invoke(app, ["ship", str(mamba_run), "--name", "tiny-mamba", "--data", str(data),
                            "--models-dir", str(tmp_path), "--threads", "1"])
    assert r.exit_code == 0, r.output
    card = (tmp_path / "tiny-mamba" / "README.md").read_text()
    assert "1-layer, 32-wide Mamba (SSM state 4, expand 2)" in card and "-head" not in card
    shipped = ckpt.load(tmp_path / "tiny-mamba")
    res = json.loads(runner.invoke(app, ["eval", str(tmp_path / "tiny-mamba"), "--data", str(data), "--json"]).stdout)
    assert shipped.meta["card"]["accuracy"] == res["accuracy"] and shipped.meta["card"]["count"] == 100
    assert (tmp_path / "tiny-mamba" / "metrics.jsonl").read_text() == (mamba_run / "metrics.jsonl").read_text()


def test_reproduce_trains_mamba_side_by_side(tmp_path):
    r = runner.invoke(app, [str(a) for a in (
        "reproduce", "--arch", "mamba", "--d-state", 4, "--expand", 1, "--objectives", "next-token,reverse",
        "--degree", 2, "--path-len", 3, "--nodes", 10, "--layers", 1, "--d-model", 16, "--steps", 4, "--batch-size", 8,
        "--eval-every", 2, "--count", 20, "--out", tmp_path, "--threads", 1)])
    assert r.exit_code == 0, r.output
    for obj in ("next-token", "reverse"):
        cfg = ckpt.read_meta(tmp_path / obj / MODEL_FILE)["config"]
        assert (cfg["arch"], cfg["d_state"], cfg["expand"]) == ("mamba", 4, 1)
    report = (tmp_path / "report.md").read_text()
    assert "| next-token | next-token |" in report and "| reverse | reverse |" in report
