"""Scaling out: ``ntp-probe train`` under torchrun with DistributedDataParallel (gloo, 2 CPU processes)."""

import json
import os
import subprocess
import sys

import pytest
import torch

from ntp_probe import checkpoint as ckpt
from ntp_probe.runfiles import MODEL_FILE

ARGS = ["--degree", "2", "--path-len", "3", "--nodes", "10", "--objective", "next-token", "--batch-size", "16",
        "--layers", "1", "--d-model", "16", "--heads", "2", "--eval-every", "3", "--eval-count", "32",
        "--lr", "3e-3", "--min-lr", "3e-3", "--warmup", "0",  # constant lr: a shorter run is a prefix of a longer one
        "--threads", "1", "-q"]


def torchrun(out, *extra):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "ntp_probe", "train", "--out", str(out), "--device", "cpu", *ARGS, *extra]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return r


def test_ranks_draw_different_seeded_data():
    from ntp_probe.train import DataStream, TrainConfig

    cfg = TrainConfig(degree=2, path_len=3, nodes=10, batch_size=8, device="cpu")
    a0, a1 = DataStream(cfg, torch.device("cpu"), 0).batch(5)[0], DataStream(cfg, torch.device("cpu"), 1).batch(5)[0]
    assert not torch.equal(a0, a1)
    assert torch.equal(a0, DataStream(cfg, torch.device("cpu"), 0).batch(5)[0])


@pytest.mark.slow
def test_torchrun_two_processes_and_resume(tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    torchrun(full, "--steps", "6")
    meta = ckpt.read_meta(full / MODEL_FILE)
    assert meta["training"]["world_size"] == 2 and meta["training"]["steps"] == 6
    assert meta["training"]["tokens_seen"] == 6 * 16 * 2 * ckpt.TaskSpec(2, 3, 10).seq_len
    lines = [json.loads(x) for x in (full / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [3, 6]  # one writer: no duplicated lines
    assert sorted(p.name for p in full.iterdir()) == ["metrics.jsonl", "model.safetensors", "train_state.safetensors"]

    torchrun(part, "--steps", "3")
    torchrun(part, "--steps", "6", "--resume")
    assert [json.loads(x)["step"] for x in (part / "metrics.jsonl").read_text().splitlines()] == [3, 6]
    a, b = ckpt.load(full).model.state_dict(), ckpt.load(part).model.state_dict()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k
