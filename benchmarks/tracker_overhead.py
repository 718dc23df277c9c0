"""What ``train --tracker`` costs per evaluation: one ``Tracker.log`` of a real metrics record, against the held-out
evaluation it rides on (2,000 graphs, the shipped model's size). Also the one-off cost of opening and closing it.

    WANDB_MODE=offline python benchmarks/tracker_overhead.py [--model g2-5-next-token] [--repeat 100]

Trackers that are not installed are left out. wandb runs offline (its files in a temporary directory).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import tempfile
import time
from pathlib import Path

from _common import machine, median, pct, table, timeit

from ntp_probe import tracking
from ntp_probe.checkpoint import load
from ntp_probe.evaluate import evaluate
from ntp_probe.task import generate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="g2-5-next-token")
    ap.add_argument("--repeat", type=int, default=100)
    ap.add_argument("--eval-count", type=int, default=2000)
    args = ap.parse_args()
    os.environ.setdefault("WANDB_MODE", "offline")
    lm = load(args.model)
    t = lm.task
    graphs = generate(t.degree, t.path_len, t.nodes, args.eval_count, seed=1)
    evals = timeit(lambda: evaluate(lm, graphs), repeat=3)
    m = evaluate(lm, graphs)
    rec = {"step": 0, "loss": 1.2345, "lr": 1e-3, **{k: m[k] for k in ("accuracy", "per_position", "forced_accuracy",
           "forced_per_position", "forced_after_decision", "decision_accuracy") if k in m},
           "eval_count": args.eval_count, "wall_time_s": 0.0}
    rows = [["held-out evaluation (the work it rides on)", f"{median(evals) * 1e3:.1f}", "", "", ""]]
    for name, (module, _) in tracking.TRACKERS.items():
        if importlib.util.find_spec(module) is None:
            rows.append([f"{name} (not installed)", "", "", "", ""])
            continue
        with tempfile.TemporaryDirectory() as tmp:
            os.environ.setdefault("WANDB_DIR", tmp)
            t0 = time.perf_counter()
            tr = tracking.start(name, Path(tmp), {"model": args.model}, resume=False)
            opened = time.perf_counter() - t0
            step = [0]

            def log():
                step[0] += 250
                tr.log({**rec, "step": step[0], "wall_time_s": step[0] * 0.1})

            xs = timeit(log, repeat=args.repeat)
            t0 = time.perf_counter()
            tr.close()
            closed = time.perf_counter() - t0
        rows.append([f"{name}: log one evaluation", f"{median(xs) * 1e3:.2f}", f"{pct(xs, 0.95) * 1e3:.2f}",
                     f"{opened:.2f}", f"{closed:.2f}"])
    print(f"{machine()}; {args.model}, {len(tracking.scalars(rec))} scalars per evaluation\n")
    print(table("tracker overhead", ["what", "median ms", "p95 ms", "open s", "close s"], rows))


if __name__ == "__main__":
    main()
