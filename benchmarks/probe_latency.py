"""p50/p95 latency of the probing API for a shipped model: a decode step and a forced re-score.

    python benchmarks/probe_latency.py [--model g2-5-next-token] [--repeat 200]
"""

from __future__ import annotations

import argparse
import random

from _common import machine, pct, table, timeit

from ntp_probe.checkpoint import load
from ntp_probe.probing import ProbeSession
from ntp_probe.task import generate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="g2-5-next-token")
    ap.add_argument("--repeat", type=int, default=200)
    args = ap.parse_args()
    lm = load(args.model)
    t = lm.task
    graph = next(generate(t.degree, t.path_len, t.nodes, 1, seed=1).graphs())
    s = ProbeSession(lm, graph, cursor=0)
    rng = random.Random(0)
    nodes = sorted(graph.nodes)

    def step():
        s.step() if s.cursor < s.length else s.reset()

    def force():
        s.force(rng.randrange(s.length), rng.choice(nodes))

    def attention():
        s.attention(s.decision_position)

    def lens():
        s.layers(s.decision_position)

    rows = []
    for name, fn in (("step (cursor move)", step), ("forced re-score", force), ("new graph (set_graph)",
                     lambda: s.set_graph(graph)), ("attention view", attention), ("logit lens", lens)):
        xs = timeit(fn, args.repeat, warmup=5)
        rows.append([name, f"{pct(xs, 0.5) * 1e3:.2f}", f"{pct(xs, 0.95) * 1e3:.2f}", f"{max(xs) * 1e3:.2f}"])
    print(f"machine: {machine()}\nmodel {args.model}, {args.repeat} repeats\n")
    print(table("probe_latency", ["operation", "p50 ms", "p95 ms", "max ms"], rows))


if __name__ == "__main__":
    main()
