"""Knock-out Δp(correct) by (role, depth) — depth 1 = the start's edge of the arm — for docs/mechanism.md."""
import sys
import torch
from ntp_probe.checkpoint import load
from ntp_probe.task import read_lines, generate
from ntp_probe.probing.patching import goal_pair, prepare, knockout, default_step, edge_roles

F = "/work/shared/fixtures/next-token-failures/deg_2_path_5_nodes_50_test_20000.txt"
for name in sys.argv[1:]:
    step = None
    if ":" in name:
        name, step = name.split(":"); step = int(step) - 1
    lm = load(name)
    t = lm.task
    gs = read_lines(F, 50)[:500] if t.path_len == 5 else list(generate(t.degree, t.path_len, t.nodes, 500, seed=0).graphs())
    k = default_step(lm, gs[0]) if step is None else step
    prep = prepare(lm, gs, [goal_pair(g) for g in gs], k)
    dp, dl = knockout(lm, prep, gs)
    acc = {}
    for b, g in enumerate(gs):
        depth = {}
        for arm in g.arms():
            prev = g.start
            for d, n in enumerate(arm, 1):
                depth[(prev, n)] = d
                prev = n
        for e, ((u, v), r) in enumerate(zip(g.edges, edge_roles(g))):
            acc.setdefault((r, depth.get((u, v), 0)), []).append((float(dp[b, e]), float(dl[b, e])))
    print(f"{name} answer token {k + 1}")
    for key in sorted(acc):
        xs = acc[key]
        print(f"  {key[0]:9} depth {key[1]}: n={len(xs)} dp={sum(x for x, _ in xs) / len(xs):+.3f} dlogit={sum(y for _, y in xs) / len(xs):+.3f}")
