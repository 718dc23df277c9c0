"""`train --compile` against eager: the same run through the engine's own loop (``ntp_probe.train.train``), timed per
step from the loop's step events, after a warm-up (the compile itself happens in the first steps).

    python benchmarks/compile_cpu.py [--layers 2] [--d-model 128] [--batch 256] [--warmup 5] [--steps 30] [--threads 1]

Prints s/step eager and compiled, the speed-up and the compile's first-step cost. Both runs: next-token G(2,5) N=50,
the default --amp (bf16 on a CPU with native bf16, fp32 elsewhere), the same seed.
"""

from __future__ import annotations

import argparse
import json

import torch
from _common import machine, table, time_train_steps

from ntp_probe.train import TrainConfig


def timed(compile_: bool, args) -> dict:
    total = args.warmup + args.steps
    cfg = TrainConfig(degree=2, path_len=5, nodes=50, layers=args.layers, d_model=args.d_model, heads=args.heads,
                      batch_size=args.batch, steps=total, eval_every=total, eval_count=100, device=args.device,
                      compile=compile_)
    per, first = time_train_steps(cfg, args.warmup)
    return {"compile": compile_, "s_per_step": per, "first_step_s": first}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    eager, comp = timed(False, args), timed(True, args)
    if args.json:
        print(json.dumps({"eager": eager, "compile": comp}))
        return
    rows = [[name, f"{r['s_per_step']:.4f}", f"{r['first_step_s']:.1f}"] for name, r in (("eager", eager), ("compile", comp))]
    print(f"machine: {machine()}; {args.layers}L×{args.d_model} batch {args.batch}, {args.steps} steps after {args.warmup}")
    print(table("train --compile", ["mode", "s/step", "first step s"], rows))
    print(f"speed-up: {eager['s_per_step'] / comp['s_per_step']:.2f}×")


if __name__ == "__main__":
    main()
