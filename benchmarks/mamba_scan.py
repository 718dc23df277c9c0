"""Mamba's selective scan: the decay/input terms built one step at a time (ntp_probe.mamba, now) vs
materialised for the whole sequence first ([B, T, d_inner, d_state], the earlier version), for a
training step of the shipped recipe and for an evaluation forward of 2,000 graphs.

    python benchmarks/mamba_scan.py [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
from _common import machine, table

from ntp_probe import mamba
from ntp_probe.model import GPTConfig


def materialised_scan(x, dt, A, Bm, Cm, D, h):
    dA = torch.exp(dt.unsqueeze(-1) * A)
    dBx = (dt * x).unsqueeze(-1) * Bm.unsqueeze(2)
    ys = []
    for a_t, b_t, c_t in zip(dA.unbind(1), dBx.unbind(1), Cm.unbind(1)):
        h = a_t * h + b_t
        ys.append(torch.bmm(h, c_t.unsqueeze(-1)).squeeze(-1))
    return torch.stack(ys, dim=1) + x * D, h


VARIANTS = {"per step (now)": "per-step", "materialised (before)": "materialised"}


def run_variant(variant: str, repeat: int) -> dict:
    """Time one scan variant; run in its own process so that its peak memory is its own."""
    torch.manual_seed(0)
    if variant == "materialised":
        mamba.selective_scan = materialised_scan
    # the shipped g2-5-mamba-* recipe: 2 layers, 128 wide, d_state 32, expand 1; G(2,5) sequences are 31 tokens
    cfg = GPTConfig(vocab_size=54, block_size=31, n_layer=2, n_embd=128, arch="mamba", d_state=32, expand=1)
    model = mamba.Mamba(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    train_x = torch.randint(0, 54, (64, 31))
    eval_x = torch.randint(0, 54, (2000, 26))

    def step():
        loss = model(train_x).logits.float().logsumexp(-1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()
    t = time.perf_counter()
    for _ in range(repeat):
        step()
    train_s = (time.perf_counter() - t) / repeat
    with torch.no_grad():
        model(eval_x)
        t = time.perf_counter()
        for _ in range(3):
            model(eval_x)
        eval_s = (time.perf_counter() - t) / 3
    return {"train_ms": train_s * 1000, "eval_s": eval_s,
            "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--variant", choices=list(VARIANTS.values()), help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.repeat)))
        return
    rows = []
    for name, variant in VARIANTS.items():
        out = subprocess.run([sys.executable, __file__, "--variant", variant, "--threads", str(args.threads),
                              "--repeat", str(args.repeat)], capture_output=True, text=True, check=True).stdout
        r = json.loads(out)
        rows.append([name, f"{r['train_ms']:.0f}", f"{r['eval_s']:.2f}", f"{r['peak_mib']:.0f}"])
    print(f"# Mamba selective scan\n\n{machine()}\n")
    print(table("scan variants (each in its own process)",
                ["scan", "train step, batch 64 (ms)", "eval forward, 2,000 graphs (s)", "peak RSS (MiB)"], rows))


if __name__ == "__main__":
    main()
