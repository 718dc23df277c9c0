import json
import os
import signal

import pytest
import torch
from safetensors.torch import load_file

from conftest import tiny_config
from ntp_probe import checkpoint as ckpt
from ntp_probe.errors import UsageError
from ntp_probe.evaluate import evaluate
from ntp_probe.task import generate
from ntp_probe.train import train


def test_tiny_training_learns_and_reloads(tmp_path):
    out = tmp_path / "run"
    summary = train(tiny_config(out, "reverse", steps=40), out)
    assert summary["step"] == 40 and not summary["interrupted"]
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [10, 20, 30, 40]
    assert lines[-1]["loss"] < lines[0]["loss"]
    lm = ckpt.load(out)
    assert lm.meta["training"]["steps"] == 40
    assert lm.meta["metrics"]["accuracy"] == lines[-1]["accuracy"]
    # the saved model scores the same on the held-out set as during training
    cfg = tiny_config(out)
    res = evaluate(lm, generate(2, 3, 10, cfg.eval_count, seed=cfg.seed + 999_983))
    assert res["accuracy"] == pytest.approx(lines[-1]["accuracy"])


def test_resume_after_interrupt_gives_identical_weights(tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    train(tiny_config(full, steps=25, dropout=0.1), full)

    def interrupt_at_12(e):
        if e["event"] == "step" and e["step"] == 12:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: the loop saves after this step

    first = train(tiny_config(part, steps=25, dropout=0.1), part, callback=interrupt_at_12)
    assert first["interrupted"] and first["step"] == 12
    assert json.loads((part / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 10
    second = train(tiny_config(part, steps=25, dropout=0.1), part, resume=True)
    assert second["step"] == 25
    a, b = load_file(full / "model.safetensors"), load_file(part / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert (full / "metrics.jsonl").read_text().count("\n") == (part / "metrics.jsonl").read_text().count("\n")
    la = [json.loads(x) for x in (full / "metrics.jsonl").read_text().splitlines()]
    lb = [json.loads(x) for x in (part / "metrics.jsonl").read_text().splitlines()]
    for x, y in zip(la, lb):
        assert x["step"] == y["step"] and x["loss"] == pytest.approx(y["loss"]) and x["accuracy"] == y["accuracy"]


def test_existing_run_directory_is_refused(tmp_path):
    out = tmp_path / "run"
    train(tiny_config(out, steps=5), out)
    with pytest.raises(UsageError, match="--resume"):
        train(tiny_config(out, steps=5), out)
    train(tiny_config(out, steps=5), out, force=True)
    with pytest.raises(UsageError, match="no train_state"):
        train(tiny_config(tmp_path / "fresh", steps=5), tmp_path / "fresh", resume=True)
    with pytest.raises(UsageError, match="differs"):
        train(tiny_config(out, steps=10, d_model=64), out, resume=True)


def test_training_from_a_file(tmp_path):
    from ntp_probe.task import format_lines

    data = tmp_path / "train.txt"
    data.write_text("\n".join(format_lines(generate(2, 3, 10, 100, seed=1))) + "\n")
    out = tmp_path / "run"
    assert train(tiny_config(out, steps=5, train_file=str(data)), out)["step"] == 5


def test_multi_token_training(tmp_path):
    out = tmp_path / "mt"
    train(tiny_config(out, "multi-token", steps=5, future=3), out)
    lm = ckpt.load(out)
    assert lm.objective.n_future == 3 and len(lm.model.future) == 2
