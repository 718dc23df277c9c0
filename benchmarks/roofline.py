"""Each hot path as a fraction of this machine's own measured matmul peak, in one run: figures that travel.

    python benchmarks/roofline.py [--threads 1] [--data deg_2_path_5_nodes_50_test_20000.txt] [--only train,eval,patch]
                                  [--steps 3] [--profile]

First the peak: the best n×n matmul FLOP/s in fp32, and in bf16 where the CPU computes it natively
(/proc/cpuinfo avx512_bf16 or amx_bf16), on one thread and on all. Then each path's achieved FLOP/s (its FLOP count
from benchmarks/_common.py over its measured time) against the peak of the dtype it runs in:

- the training step, G(2,5) N=50, batch 256: 2L×128, 6L×128, 6L×384 (``--amp auto``: bf16 on a native-bf16 CPU)
- greedy decoding (KV cache) and the full ``eval`` (greedy + teacher-forced) of the 20,000-graph file, model
  g2-5-next-token (2L×128, fp32 as ``eval`` runs it)
- ``patch --count 500`` on g2-5-next-token (fp32); its FLOPs counted by torch's FlopCounterMode on 50 graphs, × 10

``--profile`` adds torch.profiler's top operators for each path (briefly: one step / one chunk).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
from _common import (flops_forward, flops_train_step, gpt_params, load_average, machine, matmul_peak, native_bf16,
                     simd_flags, table)

SEQ = 31  # G(2,5) N=50: a training sequence of 31 tokens (question and answer, shifted by one)


class Clock:
    """Wall seconds and this process's CPU seconds. On a loaded machine, at one thread, the CPU seconds are the time
    the work itself took (the wall adds the time other processes held the core): the fractions use them."""

    def __init__(self):
        self.w, self.c = time.perf_counter(), time.process_time()

    def stop(self, n: int = 1) -> tuple[float, float]:
        return (time.perf_counter() - self.w) / n, (time.process_time() - self.c) / n


def peaks(threads_all: int) -> dict:
    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        if name == "bf16" and not native_bf16():
            continue
        out[name] = {1: matmul_peak(dtype, 1), threads_all: matmul_peak(dtype, threads_all)}
    return out


def bench_train(layers, d_model, heads, batch, steps, profile):
    from ntp_probe.train import DataStream, TrainConfig, autocast_ctx, batch_loss, make_optimizer, model_config, \
        resolve_amp
    from ntp_probe import checkpoint as ckpt

    cfg = TrainConfig(degree=2, path_len=5, nodes=50, layers=layers, d_model=d_model, heads=heads, batch_size=batch)
    dev = torch.device("cpu")
    data = DataStream(cfg, dev)
    torch.manual_seed(0)
    model = ckpt.build_model(model_config(cfg, data.objective))
    opt = make_optimizer(model, cfg, dev)
    amp = autocast_ctx(dev, cfg.amp)

    def step(i):
        x, y = data.batch(i)
        loss = batch_loss(data.objective, model, x, y, amp, padded=False)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    step(0)
    t = Clock()
    for i in range(steps):
        step(1 + i)
    dt = t.stop(steps)
    prof = _profile(lambda: step(99)) if profile else None
    return dt, flops_train_step(layers, d_model, batch, SEQ, model.num_params()), resolve_amp(dev, cfg.amp), prof


def bench_eval(model_name, data, profile, do_greedy=True, do_full=True):
    from ntp_probe import checkpoint as ckpt
    from ntp_probe.decoding import greedy
    from ntp_probe.evaluate import as_batch, evaluate
    from ntp_probe.task import generate, read_lines

    lm = ckpt.load(model_name)
    graphs = as_batch(lm, read_lines(data, 50)) if data else generate(2, 5, 50, 20_000, seed=12345)
    n = len(graphs)
    cfg = lm.model.config
    params = lm.model.num_params()
    q = lm.tokenizer.questions(graphs)
    Q, L = q.shape[1], lm.task.path_len
    res = {"graphs": n}
    # greedy with a KV cache: the question's Q tokens once (each attending to (Q+1)/2 keys on average), then L−1 single
    # tokens attending to Q..Q+L−2 keys; the lm head only where a token is read
    f_greedy = n * (flops_forward(cfg.n_layer, cfg.n_embd, Q, (Q + 1) / 2, params)
                    + flops_forward(cfg.n_layer, cfg.n_embd, L - 1, Q + (L - 2) / 2, params))
    if do_greedy:
        t = Clock()
        for lo in range(0, n, 2000):
            greedy(lm, q[lo:lo + 2000])
        res["greedy"] = (t.stop(), f_greedy)
    if do_full:
        t = Clock()
        evaluate(lm, graphs)
        full_s = t.stop()
        T = Q + L - 1
        f_full = f_greedy + n * flops_forward(cfg.n_layer, cfg.n_embd, T, (T + 1) / 2, params)  # + a teacher-forced pass
        res["full"] = (full_s, f_full)
    res["prof"] = _profile(lambda: greedy(lm, q[:2000])) if profile else None
    return res


def bench_patch(model_name, count, profile):
    from torch.utils.flop_counter import FlopCounterMode

    from ntp_probe import checkpoint as ckpt
    from ntp_probe.probing.patching import patch
    from ntp_probe.task import generate

    lm = ckpt.load(model_name)
    graphs = list(generate(2, 5, 50, count, seed=0).graphs())
    t = Clock()
    patch(lm, graphs, "goal", None, None, edges=False, attribute=False, seed=0)
    secs = t.stop()
    sub = max(1, count // 10)
    with FlopCounterMode(display=False) as fc:
        patch(lm, graphs[:sub], "goal", None, None, edges=False, attribute=False, seed=0)
    flops = fc.get_total_flops() * count / sub
    prof = _profile(lambda: patch(lm, graphs[:sub], "goal", None, None, edges=False, attribute=False, seed=0)) \
        if profile else None
    return secs, flops, prof


def _profile(fn, top=8) -> str:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as p:
        fn()
    return p.key_averages().table(sort_by="self_cpu_time_total", row_limit=top)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--data", default=None, help="the 20,000-graph G(2,5) file (default: 20,000 fresh graphs)")
    ap.add_argument("--model", default="g2-5-next-token")
    ap.add_argument("--patch-count", type=int, default=500)
    ap.add_argument("--only", default="train,greedy,full,patch", help="any of train, greedy, full, patch (a "
                    "loaded machine: one at a time keeps each run short)")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--json", default=None, help="also write the figures here")
    a = ap.parse_args()
    only = set(a.only.split(","))
    all_threads = os.cpu_count() or 1
    print(f"machine: {machine()}; load average {load_average()}; SIMD flags: {simd_flags()}", flush=True)
    pk = peaks(all_threads)
    torch.set_num_threads(a.threads)
    rows = [[d, *(f"{pk[d][t] / 1e9:.1f}" for t in (1, all_threads))] for d in pk]
    print(table("matmul peak (1024², GFLOP/s)", ["dtype", "1 thread", f"{all_threads} threads"], rows))
    ref = {d: pk[d][a.threads] if a.threads in pk[d] else pk[d][1] for d in pk}
    out, profs = [], {}

    def add(name, secs, flops, dtype, extra=""):
        wall, cpu = secs
        used = cpu if a.threads == 1 else wall  # one thread: its CPU seconds (the load's waits left out)
        achieved = flops / used
        frac = achieved / ref[dtype] if dtype in ref else float("nan")
        out.append({"path": name, "wall_s": wall, "cpu_s": cpu, "gflop": flops / 1e9, "gflops": achieved / 1e9,
                    "dtype": dtype, "peak_gflops": ref.get(dtype, float("nan")) / 1e9, "fraction": frac, "note": extra})
        print(f"{name}: {wall:.3f} s wall, {cpu:.3f} s CPU, {flops / 1e9:.2f} GFLOP, {achieved / 1e9:.2f} GFLOP/s = "
              f"{frac:.0%} of the {dtype} peak {extra}", flush=True)

    if "train" in only:
        for L, C, H in ((2, 128, 4), (6, 128, 4), (6, 384, 6)):
            dt, f, dtype, prof = bench_train(L, C, H, 256, a.steps, a.profile)
            add(f"train step {L}L×{C} b256", dt, f, dtype, f"({gpt_params(L, C, heads=H):,} params)")
            profs[f"train {L}L×{C}"] = prof
    if only & {"greedy", "full"}:
        r = bench_eval(a.model, a.data, a.profile, "greedy" in only, "full" in only)
        for kind in ("greedy", "full"):
            if kind in r:
                add(f"{kind} eval {r['graphs']:,} graphs", *r[kind], "fp32")
        profs["greedy eval"] = r["prof"]
    if "patch" in only:
        secs, f, prof = bench_patch(a.model, a.patch_count, a.profile)
        add(f"patch --count {a.patch_count}", secs, f, "fp32", "(FLOPs counted by FlopCounterMode)")
        profs["patch"] = prof
    print()
    print(table(f"hot paths at {a.threads} thread(s), fraction of this machine's measured peak",
                ["path", "wall s", "CPU s", "GFLOP", "GFLOP/s", "dtype", "peak GFLOP/s", "of peak"],
                [[r["path"], f"{r['wall_s']:.3f}", f"{r['cpu_s']:.3f}", f"{r['gflop']:.1f}", f"{r['gflops']:.1f}", r["dtype"],
                  f"{r['peak_gflops']:.1f}", f"{r['fraction']:.0%}"] for r in out]))
    for k, v in profs.items():
        if v:
            print(f"### profile: {k}\n\n```\n{v}```\n")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"machine": machine(), "load": load_average(), "flags": simd_flags(),
                       "peak_gflops": {d: {str(t): v / 1e9 for t, v in pk[d].items()} for d in pk}, "paths": out}, f,
                      indent=2)


if __name__ == "__main__":
    main()
