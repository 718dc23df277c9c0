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
    assert lm.objective.heads == 3 and len(lm.model.future) == 2


def test_watch_and_the_run_lock(tmp_path):
    import subprocess
    import sys

    from typer.testing import CliRunner

    from ntp_probe.cli import app
    from ntp_probe.runfiles import PID_FILE
    from ntp_probe.runs import status

    runner = CliRunner()
    out = tmp_path / "run"
    seen = []

    def spy(e):  # while the loop runs, the run is held by this process
        if e["event"] == "step" and e["step"] == 5:
            seen.append(((out / PID_FILE).read_text().strip(), status(out)["state"]))

    train(tiny_config(out, steps=20), out, callback=spy)
    assert seen == [(str(os.getpid()), "running")]
    assert not (out / PID_FILE).exists()  # released at the end
    r = runner.invoke(app, ["watch", str(out), "--json"])
    assert r.exit_code == 0, r.output
    (st,) = json.loads(r.stdout)
    assert (st["state"], st["step"], st["steps"], st["objective"]) == ("finished", 20, 20, "next-token")
    assert [c["step"] for c in st["curve"]] == [10, 20] and st["last"]["accuracy"] == st["curve"][-1]["accuracy"]
    r = runner.invoke(app, ["watch", str(tmp_path)])  # a directory of runs is expanded
    assert r.exit_code == 0 and "finished" in r.stdout and "pos 2" in r.stdout

    # another live process holds the run (its lock, as a training does): train refuses (nothing is touched), watch says who
    hold = ("import fcntl, os, sys, time; fd = os.open(sys.argv[1] + '/train.lock', os.O_RDWR | os.O_CREAT); "
            "fcntl.flock(fd, fcntl.LOCK_EX); open(sys.argv[1] + '/train.pid', 'w').write(f'{os.getpid()}\\n'); "
            "print('held', flush=True); time.sleep(60)")
    other = subprocess.Popen([sys.executable, "-c", hold, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "held"
        before = (out / "model.safetensors").read_bytes()
        r = runner.invoke(app, ["train", "--out", str(out), "--force", "--steps", "5"])
        assert r.exit_code == 2 and f"process {other.pid} is training this run" in r.stderr
        assert (out / "model.safetensors").read_bytes() == before
        assert status(out)["state"] == "running" and status(out)["pid"] == other.pid
    finally:
        other.kill()
        other.wait()
    assert status(out)["state"] == "finished"  # a stale pid file (its process is gone, its lock released) is ignored
    r = runner.invoke(app, ["watch", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "no such run directory" in r.stderr


def test_watch_moves_between_checkpoints(tmp_path, monkeypatch):
    from ntp_probe import runfiles, runs

    monkeypatch.setattr(runs, "BEAT_SECONDS", 0.0)
    out = tmp_path / "run"
    seen = {}

    def spy(e):
        if e["event"] == "step" and e["step"] in (5, 15):
            seen[e["step"]] = runs.status(out)

    train(tiny_config(out, steps=20), out, callback=spy)  # checkpoints at steps 10 and 20
    assert seen[5]["step"] == 4 and seen[5]["steps"] == 20 and seen[5]["state"] == "running"  # before any checkpoint
    assert seen[5]["objective"] == "next-token" and seen[5]["task"] == {"degree": 2, "path_len": 3, "nodes": 10}
    assert seen[15]["step"] == 14 and seen[15]["seconds_per_step"] > 0 and seen[15]["last"]["step"] == 10
    assert not (out / runfiles.PROGRESS_FILE).exists()  # gone with the run
    assert runs.status(out)["step"] == 20


def test_init_from_warm_starts_a_larger_graph(tmp_path, trained):
    from typer.testing import CliRunner

    from ntp_probe.cli import app

    small = trained("reverse")  # G(2,3) N=10, 1 layer, 32 wide
    out = tmp_path / "big"
    r = CliRunner().invoke(app, ["train", "--out", str(out), "--degree", "3", "--path-len", "3", "--nodes", "10",
                                 "--objective", "reverse", "--layers", "1", "--d-model", "32", "--heads", "2",
                                 "--steps", "1", "--lr", "1e-9", "--batch-size", "4", "--eval-every", "1",
                                 "--eval-count", "8", "--init-from", str(small.path), "-q"])
    assert r.exit_code == 0, r.output
    big = ckpt.load(out)
    assert big.meta["training"]["config"]["init_from"] == str(small.path)
    a, b = small.model.state_dict(), big.model.state_dict()
    assert torch.allclose(a["blocks.0.attn.c_attn.weight"], b["blocks.0.attn.c_attn.weight"], atol=1e-6)
    n = a["wpe.weight"].shape[0]
    assert b["wpe.weight"].shape[0] > n  # the context grew: the first rows are the small model's
    assert torch.allclose(a["wpe.weight"], b["wpe.weight"][:n], atol=1e-6)
    # a different width or vocabulary is a clear error
    r = CliRunner().invoke(app, ["train", "--out", str(tmp_path / "x"), "--degree", "3", "--path-len", "3", "--nodes", "10",
                                 "--layers", "1", "--d-model", "64", "--heads", "2", "--steps", "1",
                                 "--init-from", str(small.path)])
    assert r.exit_code == 2 and "weights do not match" in r.stderr
    r = CliRunner().invoke(app, ["train", "--out", str(tmp_path / "y"), "--degree", "3", "--path-len", "3", "--nodes", "12",
                                 "--layers", "1", "--d-model", "32", "--heads", "2", "--steps", "1",
                                 "--init-from", str(small.path)])
    assert r.exit_code == 2 and "vocabularies must match" in r.stderr


def test_amp_auto_resolves_per_device(monkeypatch):
    import torch

    from ntp_probe import train as tr
    from ntp_probe.errors import UsageError

    assert isinstance(tr.cpu_has_native_bf16.__wrapped__(), bool)  # reads /proc/cpuinfo (False where absent)
    cpu = torch.device("cpu")
    monkeypatch.setattr(tr, "cpu_has_native_bf16", lambda: True)
    assert tr.resolve_amp(cpu, "auto") == "bf16" and tr.resolve_amp(cpu, "fp32") == "fp32"
    monkeypatch.setattr(tr, "cpu_has_native_bf16", lambda: False)
    assert tr.resolve_amp(cpu, "auto") == "fp32" and tr.resolve_amp(cpu, "bf16") == "bf16"
    assert tr.resolve_amp(torch.device("cuda"), "auto") == "bf16"
    with pytest.raises(UsageError, match="--amp"):
        tr.resolve_amp(cpu, "fp16")
