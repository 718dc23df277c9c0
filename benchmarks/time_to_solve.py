"""Wall time of `ntp-probe train` (process start to checkpoint) for reverse G(2,5) N=50 to reach
≥ 0.99 greedy accuracy on 2,000 fresh held-out graphs, for several recipes side by side (and G(5,5)
with --graphs 2x5,5x5: long on a CPU).

    python benchmarks/time_to_solve.py [--graphs 2x5] [--threads 2] [--recipes 'name=opts;name=opts']
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from _common import machine, run, table


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--graphs", default="2x5")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-steps", type=int, default=1500)
    ap.add_argument("--recipes", default="2L/128d=;2L/64d=--d-model 64",
                    help="name=extra train options, ';'-separated, e.g. 'fast=--d-model 64 --lr 2e-3'")
    args = ap.parse_args()
    rows = []
    recipes = [r.split("=", 1) for r in args.recipes.split(";")]
    for spec, (name, extra) in ((g, r) for g in args.graphs.split(",") for r in recipes):
        d, l = map(int, spec.split("x"))
        out = Path(tempfile.mkdtemp()) / "run"
        cmd = [sys.executable, "-m", "ntp_probe", "train", "--out", str(out), "--degree", str(d), "--path-len", str(l),
               "--nodes", "50", "--objective", "reverse", "--steps", str(args.max_steps), "--eval-every", "50",
               "--eval-count", "2000", "--target-accuracy", "0.99", "--threads", str(args.threads), "-q", *extra.split()]
        wall, p = run(cmd)
        recs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()] if (out / "metrics.jsonl").exists() else []
        last = recs[-1] if recs else {}
        rows.append([f"G({d},{l}) N=50", name, extra or "—", last.get("step", "—"), f"{last.get('accuracy', 0):.3f}", f"{last.get('wall_time_s', 0):.1f}",
                     f"{wall:.1f}", "yes" if last.get("accuracy", 0) >= 0.99 else "no"])
        print(rows[-1], p.returncode, p.stderr[-300:] if p.returncode else "", flush=True)
        shutil.rmtree(out.parent, ignore_errors=True)
    print(f"\nmachine: {machine()}; reverse objective, defaults 2L/128d/4H, batch 256, lr 1e-3 (cosine over "
          f"--max-steps {args.max_steps}), 100 warm-up steps, eval every 50 steps on 2,000 graphs, --threads {args.threads}\n")
    print(table("time_to_solve", ["graphs", "recipe", "train options", "steps", "accuracy", "training s", "process wall s",
                                  "reached 0.99"], rows))


if __name__ == "__main__":
    main()
