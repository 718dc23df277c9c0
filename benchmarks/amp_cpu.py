"""`ntp-probe train` with no --amp (auto: bf16 autocast on a CPU with native bf16) against --amp fp32, on the
shipped 2-layer recipe: wall time and the held-out curve side by side.

    python benchmarks/amp_cpu.py [--steps 700] [--objective reverse] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from _common import machine, run, table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ntp_probe.train import cpu_has_native_bf16  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=700)
    ap.add_argument("--objective", default="reverse")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    rows, curves = [], {}
    for name, extra in (("default (auto)", []), ("--amp fp32", ["--amp", "fp32"])):
        out = Path(tempfile.mkdtemp()) / "run"
        cmd = [sys.executable, "-m", "ntp_probe", "train", "--out", str(out), "--degree", "2", "--path-len", "5",
               "--nodes", "50", "--objective", args.objective, "--steps", str(args.steps), "--eval-every", "50",
               "--eval-count", "2000", "--seed", "1", "--threads", str(args.threads), "-q", *extra]
        wall, p = run(cmd)
        if p.returncode:
            sys.exit(f"{name}: exit {p.returncode}: {p.stderr[-500:]}")
        recs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        meta = recs[-1]
        first99 = next((r["step"] for r in recs if r["accuracy"] >= 0.99), None)
        curves[name] = [round(r["accuracy"], 3) for r in recs]
        precision = p.stderr.split("(", 1)[1].split(")", 1)[0] if "(" in p.stderr else "?"
        rows.append([name, precision, f"{meta['wall_time_s']:.1f}", f"{wall:.1f}", f"{recs[-1]['accuracy']:.3f}",
                     first99 if first99 is not None else "—"])
        shutil.rmtree(out.parent, ignore_errors=True)
    base, auto = float(rows[1][2]), float(rows[0][2])
    print(f"\nmachine: {machine()}; native bf16: {cpu_has_native_bf16()}; {args.objective} G(2,5) N=50, 2L/128d/4H, batch 256, "
          f"{args.steps} steps, eval every 50 on 2,000 graphs, --threads {args.threads}\n")
    print(table("amp_cpu", ["run", "precision", "training s", "process wall s", "final accuracy", "first step ≥ 0.99"], rows))
    print(f"speed-up of the default over fp32: {base / auto:.2f}×")
    for name, c in curves.items():
        print(f"{name:>15}: {' '.join(map(str, c))}")


if __name__ == "__main__":
    main()
