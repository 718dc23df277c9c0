"""Compute (issue 32): passes over a training file, --compile's refusal, the GPU check's CPU dry run, and the CUDA
changes that must leave CPU runs as they were."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ntp_probe.task import format_lines, generate
from ntp_probe.train import DataStream, TrainConfig, train

from conftest import tiny_config

ROOT = Path(__file__).resolve().parent.parent


def _file(tmp_path, n=40):
    path = tmp_path / "train.txt"
    path.write_text("".join(x + "\n" for x in format_lines(generate(2, 3, 10, n, seed=4))))
    return path


def test_file_order_epochs_takes_every_graph_once_a_pass(tmp_path):
    path = _file(tmp_path, 40)
    cfg = TrainConfig(degree=2, path_len=3, nodes=10, batch_size=8, train_file=str(path), file_order="epochs")
    data = DataStream(cfg, torch.device("cpu"))
    first = torch.cat([data.epoch_indices(k, 8) for k in range(5)])
    second = torch.cat([data.epoch_indices(k, 8) for k in range(5, 10)])
    assert sorted(first.tolist()) == list(range(40)) == sorted(second.tolist())
    assert not torch.equal(first, second)  # a new order each pass
    # a batch across a pass's end: the pass's last graphs, then the next pass's first; the same from a fresh stream
    cross = DataStream(cfg, torch.device("cpu")).epoch_indices(4, 12)  # samples 48..59 of pass 1
    assert torch.equal(cross, second[8:20])
    x1, _ = data.batch(7)
    x2, _ = DataStream(cfg, torch.device("cpu")).batch(7)
    assert torch.equal(x1, x2)


def test_training_on_a_file_in_passes_resumes_exactly(tmp_path):
    path = _file(tmp_path, 40)
    kw = dict(steps=12, batch_size=16, eval_every=4, train_file=str(path), file_order="epochs", beta2=0.95, grad_clip=0.0,
              min_lr=3e-3)  # constant after warm-up (as the paper recipes): the schedule does not depend on --steps
    full, part = tmp_path / "full", tmp_path / "part"
    train(tiny_config(full, **kw), full)
    train(tiny_config(part, **{**kw, "steps": 8}), part)
    train(tiny_config(part, **kw), part, resume=True)
    from safetensors.torch import load_file

    a, b = load_file(str(full / "model.safetensors")), load_file(str(part / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def _cli(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "ntp_probe", *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=120)


@pytest.mark.parametrize("args,message", [
    (["--file-order", "epochs"], "error: --file-order epochs: passes over a --train-file"),
    (["--file-order", "loop"], "error: --file-order loop: choose sample or epochs"),
    (["--beta2", "1.5"], "error: --beta2 1.5: must be a finite number in [0, 1)"),
    (["--grad-clip", "-1"], "error: --grad-clip -1.0: must be a finite number"),
])
def test_bad_optimiser_options_are_one_line(tmp_path, args, message):
    r = _cli("train", "--out", str(tmp_path / "run"), "--steps", "1", *args)
    assert r.returncode == 2 and r.stderr.startswith(message) and r.stderr.count("\n") == 1, r.stderr
    assert not (tmp_path / "run").exists()


def test_compile_without_a_compiler_is_refused_in_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CXX"}
    env["PATH"] = str(tmp_path / "empty")  # no g++, c++ or clang++ to be found
    r = _cli("train", "--out", str(tmp_path / "run"), "--steps", "1", "--compile", "--device", "cpu", env=env)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("error: --compile: no C++ compiler found") and r.stderr.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_gpu_check_refuses_a_bad_argument(tmp_path):
    r = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--device", "tpu", "--no-install", "--out",
                        str(tmp_path / "o")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.strip() == "error: --device tpu: choose cpu or cuda"


@pytest.mark.slow
def test_gpu_check_dry_run_on_the_cpu(tmp_path):
    """The whole script at a tiny size on the CPU: every check runs and the JSON and the table are written."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}", "GPU_CHECK_THREADS": "1"}
    out = tmp_path / "gpu-check"
    r = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--device", "cpu", "--tiny", "--no-install",
                        "--out", str(out)], capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    report = json.loads((out / "gpu-check.json").read_text())
    assert set(report["checks"]) == {"train_reverse_g2_5", "throughput_bf16", "eval_20000", "cpu_vs_device",
                                     "torchrun_1_process", "patch_500"}
    assert report["ok"] and all(c["ok"] for c in report["checks"].values())
    cmp = report["checks"]["cpu_vs_device"]
    assert cmp["same_batch"] and cmp["train_step1_loss_cpu"] == pytest.approx(cmp["train_step1_loss_device"], rel=0.01)
    md = (out / "gpu-check.md").read_text()
    assert md.startswith("# gpu_check: cpu (tiny dry run)") and "| torchrun_1_process | yes |" in md


def test_the_sync_free_paths_give_the_same_numbers(trained):
    """The CUDA-motivated rewrites change no figure: reverse's one-gather flip is the flip (and keeps a padded row's
    padding at the end), and a forward that assumes no padding gives the checked forward's logits bit for bit."""
    from ntp_probe.model import assume_unpadded
    from ntp_probe.objectives.reverse import flip_rows

    x = torch.randint(0, 50, (6, 5))
    assert torch.equal(flip_rows(x), x.flip(-1))
    padded = torch.tensor([[1, 2, 3, -1, -1], [4, 5, 6, 7, 8]])
    assert flip_rows(padded).tolist() == [[3, 2, 1, -1, -1], [8, 7, 6, 5, 4]]
    lm = trained("next-token")
    q = lm.tokenizer.questions(generate(2, 3, 10, 16, seed=2))
    with torch.no_grad():
        plain = lm.model(q).logits
        with assume_unpadded(lm.model):
            fast = lm.model(q).logits
    assert torch.equal(plain, fast) and lm.model.unpadded is False
