"""Graphs/s of generation: vectorised (ntp_probe.task.generate) vs a straightforward per-graph loop.

    python benchmarks/generate.py [--count 200000]
"""

from __future__ import annotations

import argparse
import random
import time

from _common import machine, table

from ntp_probe.task import format_lines, generate


def loop_generate(d: int, l: int, n: int, count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for _ in range(count):
        ids = rng.sample(range(n), d * (l - 1) + 1)
        s, rest = ids[0], ids[1:]
        arms = [rest[i * (l - 1) : (i + 1) * (l - 1)] for i in range(d)]
        edges = [(s if j == 0 else arm[j - 1], arm[j]) for arm in arms for j in range(l - 1)]
        rng.shuffle(edges)
        goal_arm = arms[rng.randrange(d)]
        lines.append("|".join(f"{u},{v}" for u, v in edges) + f"/{s},{goal_arm[-1]}=" + ",".join(map(str, [s, *goal_arm])))
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=200_000)
    args = ap.parse_args()
    rows = []
    for d, l, n in ((2, 5, 50), (20, 5, 200)):
        c = args.count if d == 2 else args.count // 10
        t = time.perf_counter(); b = generate(d, l, n, c, seed=0); t_gen = time.perf_counter() - t
        t = time.perf_counter(); format_lines(b); t_fmt = time.perf_counter() - t
        t = time.perf_counter(); loop_generate(d, l, n, c, 0); t_loop = time.perf_counter() - t
        rows.append([f"G({d},{l}) N={n}", f"{c:,}", f"{t_gen:.3f}", f"{c / t_gen:,.0f}", f"{t_gen + t_fmt:.3f}",
                     f"{t_loop:.3f}", f"{c / t_loop:,.0f}", f"{t_loop / (t_gen + t_fmt):.1f}×"])
    print(f"machine: {machine()}\n")
    print(table("generate", ["graphs", "count", "vectorised s", "graphs/s", "+ text s", "loop s (text)", "loop graphs/s",
                             "speed-up (text)"], rows))


if __name__ == "__main__":
    main()
