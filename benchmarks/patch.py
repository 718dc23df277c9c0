"""``ntp-probe patch`` averaged over 500 graphs of the original G(2,5) test file: process wall time per model
(target ≤ 60 s on 2 cores), and the engine's parts in one process (the grid with and without skipping the
cells that cannot change anything, the knock-out, the attribution).

    python benchmarks/patch.py [--models g2-5-next-token,g2-5-reverse,g2-5-mlm-u] [--count 500] [--threads 1]

Memory (issue 30 #12: ``--count 30000`` held every graph's activations at once, over 2 GB): ``--rss 500,30000``
prints, instead, the peak resident set of ``ntp-probe patch MODEL --count N --json`` (fresh graphs, the first of
--models) for each count side by side, each measured in a process of its own (RUSAGE_CHILDREN of a wrapper).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from _common import machine, run, table

from ntp_probe.checkpoint import load
from ntp_probe.probing.patching import goal_pair, knockout, attribution, patch_grid, prepare, default_step
from ntp_probe.task import read_lines

DEFAULT = Path(__file__).resolve().parents[2] / "shared/fixtures/next-token-failures/deg_2_path_5_nodes_50_test_20000.txt"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="g2-5-next-token,g2-5-reverse,g2-5-mlm-u")
    ap.add_argument("--data", type=Path, default=DEFAULT)
    ap.add_argument("--count", type=int, default=500)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rss", default="", help="counts, e.g. 500,30000: peak RSS of each (and nothing else)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    if args.rss:
        return rss(args.models.split(",")[0], [int(c) for c in args.rss.split(",")], args.threads, env)
    wall, parts = [], []
    for name in args.models.split(","):
        cmd = [sys.executable, "-m", "ntp_probe", "patch", name, "--data", str(args.data), "--count", str(args.count),
               "--json"]
        dt, p = run(cmd, env=env)
        if p.returncode != 0:
            raise SystemExit(f"{name}: {p.stderr.strip()}")
        wall.append([name, f"{dt:.1f}", "yes" if dt <= 60 else "no"])
        lm = load(name)
        graphs = read_lines(args.data, lm.task.nodes)[: args.count]
        step = default_step(lm, graphs[0])
        t = time.perf_counter(); prep = prepare(lm, graphs, [goal_pair(g) for g in graphs], step)
        t_prep = time.perf_counter() - t
        t = time.perf_counter(); patch_grid(lm, prep); t_grid = time.perf_counter() - t
        t = time.perf_counter(); patch_grid(lm, prep, skip=False); t_full = time.perf_counter() - t
        t = time.perf_counter(); knockout(lm, prep, graphs); t_ko = time.perf_counter() - t
        t = time.perf_counter(); attribution(lm, prep, graphs, step); t_attr = time.perf_counter() - t
        parts.append([name, f"{t_prep:.2f}", f"{t_grid:.2f}", f"{t_full:.2f}", f"{t_full / t_grid:.1f}×",
                      f"{t_ko:.2f}", f"{t_attr:.2f}"])
    print(f"machine: {machine()}\n{args.count} graphs of {args.data.name}, goal pair, the decision step\n")
    print(table("patch: process wall time", ["model", "seconds", "≤ 60 s"], wall))
    print(table("patch: the engine's parts (seconds)", ["model", "clean+corrupt", "grid", "grid, every cell",
                                                       "skip speed-up", "knock-out", "attribution"], parts))


PEAK = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
        "r = subprocess.run([sys.executable, '-m', 'ntp_probe', *sys.argv[1:]], stdout=subprocess.DEVNULL, "
        "stderr=subprocess.PIPE, text=True); "
        "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, time.perf_counter() - t); "
        "sys.stderr.write(r.stderr)")


def rss(model: str, counts: list[int], threads: int, env: dict) -> None:
    rows = []
    for n in counts:
        p = subprocess.run([sys.executable, "-c", PEAK, "patch", model, "--count", str(n), "--json", "--threads",
                            str(threads)], capture_output=True, text=True, env=env)
        code, kib, secs = p.stdout.split()
        if code != "0":
            raise SystemExit(f"{model} --count {n}: {p.stderr.strip()}")
        rows.append([f"{n:,}", f"{int(kib) / 1024:.0f}", f"{float(secs):.1f}", "yes" if int(kib) < 2 * 1024**2 else "no"])
    print(f"machine: {machine()}\n{model}, fresh graphs (seed 0), goal pair, the decision step\n")
    print(table("patch: peak resident set", ["--count", "peak MiB", "seconds", "< 2 GB"], rows))


if __name__ == "__main__":
    main()
