"""Greedy evaluation of the 20,000-line G(2,5) test file: KV cache vs recomputing the prefix every step.

    python benchmarks/eval_throughput.py [--model g2-5-next-token] [--data FILE]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from _common import machine, table

from ntp_probe.checkpoint import load
from ntp_probe.decoding import greedy
from ntp_probe.evaluate import as_batch, evaluate
from ntp_probe.task import read_lines

DEFAULT = Path(__file__).resolve().parents[2] / "shared/fixtures/next-token-failures/deg_2_path_5_nodes_50_test_20000.txt"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="g2-5-next-token")
    ap.add_argument("--data", type=Path, default=DEFAULT)
    ap.add_argument("--batch-size", type=int, default=2000)
    args = ap.parse_args()
    lm = load(args.model)
    t = time.perf_counter(); graphs = read_lines(args.data, lm.task.nodes); t_read = time.perf_counter() - t
    batch = as_batch(lm, graphs)
    q = lm.tokenizer.questions(batch)
    rows = []
    for cache in (True, False):
        t = time.perf_counter()
        with torch.no_grad():
            for lo in range(0, len(q), args.batch_size):
                greedy(lm, q[lo : lo + args.batch_size], use_cache=cache)
        dt = time.perf_counter() - t
        rows.append([f"greedy, {'KV cache' if cache else 'no cache (recompute prefix)'}", f"{dt:.2f}", f"{len(q) / dt:,.0f}"])
    t = time.perf_counter(); evaluate(lm, batch, batch_size=args.batch_size); dt = time.perf_counter() - t
    rows.append(["full `eval` (greedy + teacher-forced)", f"{dt:.2f}", f"{len(q) / dt:,.0f}"])
    print(f"machine: {machine()}\nmodel {args.model} ({lm.model.config.n_layer}L/{lm.model.config.n_embd}d), "
          f"{len(q):,} graphs from {args.data.name} (read+parse {t_read:.2f}s), batch {args.batch_size}\n")
    print(table("eval_throughput", ["what", "seconds", "graphs/s"], rows))


if __name__ == "__main__":
    main()
