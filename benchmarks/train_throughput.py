"""Training throughput of ntp-probe's step on G(2,5) N=50: sizes × batch × fp32/bf16 autocast × eager/compile.

    python benchmarks/train_throughput.py [--steps 5] [--compile] [--device cpu]

Prints s/step, tokens/s, sequences/s, model FLOPs per token (6N + 12·L·C·T) and achieved FLOP/s.
Reference on the 2-core CPU for 6L/384d/6H batch 256 (from the issue): the original paper's train.py
3.7–4.1 s/step; plain SDPA fp32 2.44 s/step; SDPA + bf16 autocast 1.06 s/step.
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import machine, table

from ntp_probe.model import GPT, GPTConfig
from ntp_probe.train import DataStream, TrainConfig, autocast_ctx


def bench(layers, d_model, heads, batch, amp, compile_, steps, device):
    cfg = TrainConfig(degree=2, path_len=5, nodes=50, objective="next-token", layers=layers, d_model=d_model, heads=heads,
                      batch_size=batch, device=device)
    dev = torch.device(device)
    data = DataStream(cfg, dev)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=54, block_size=31, n_layer=layers, n_head=heads, n_embd=d_model)).to(dev)
    fwd = torch.compile(model) if compile_ else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ctx = autocast_ctx(dev, amp)

    def step(i):
        x, y = data.batch(i)
        with ctx:
            logits = fwd(x).logits
        loss = data.objective.loss(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()

    t = time.perf_counter()
    step(0)
    first = time.perf_counter() - t
    step(1)
    t = time.perf_counter()
    for i in range(steps):
        step(2 + i)
    dt = (time.perf_counter() - t) / steps
    tokens = batch * 31
    fpt = model.flops_per_token(31)
    return dt, tokens / dt, batch / dt, fpt, fpt * tokens / dt, first


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (slow to compile)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sizes", default="2x128x4,6x384x6")
    ap.add_argument("--batches", default="64,256")
    args = ap.parse_args()
    rows = []
    for size in args.sizes.split(","):
        L, C, H = map(int, size.split("x"))
        for batch in map(int, args.batches.split(",")):
            variants = [("fp32", False), ("bf16", False)] + ([("fp32", True), ("bf16", True)] if args.compile else [])
            base = None
            for amp, comp in variants:
                dt, tps, sps, fpt, flops, first = bench(L, C, H, batch, amp, comp, args.steps, args.device)
                base = base or dt
                rows.append([f"{L}L/{C}d/{H}H", batch, amp, "compile" if comp else "eager", f"{dt:.3f}", f"{tps:,.0f}",
                             f"{sps:,.0f}", f"{fpt / 1e6:.2f}M", f"{flops / 1e9:.1f}", f"{base / dt:.2f}×",
                             f"{first:.1f}" if comp else ""])
                print(rows[-1], flush=True)
    print(f"\nmachine: {machine()}; G(2,5) N=50, 31 tokens a sequence, {args.steps} timed steps after 2 warm-up\n")
    print(table("train_throughput", ["model", "batch", "dtype", "mode", "s/step", "tokens/s", "seq/s", "FLOPs/token",
                                     "GFLOP/s", "vs fp32 eager", "first step s"], rows))


if __name__ == "__main__":
    main()
