"""Training loss of the mlm-u runs in this folder against the plateau level: python plot_mlmu.py"""

import json
import math
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

HERE = Path(__file__).parent
RUNS = {
    "metrics-mlmu-2000.jsonl": "2L/128d, batch 256, lr 1e-3, 2,000 steps",
    "metrics-mlmu-4000.jsonl": "2L/128d, batch 256, lr 1e-3, 4,000 steps",
    "metrics-mlmu-b64.jsonl": "2L/128d, batch 64, lr 3e-3 (4,500 of 6,000)",
    "metrics-mlmu-4l.jsonl": "4L/128d, batch 64, lr 1e-3 (1,500 of 3,000)",
    "metrics-mlmu-warm.jsonl": "from g2-5-reverse, batch 256, lr 1e-3 (663 of 2,000)",
}
# Loss of a model that knows the ends and picks inner nodes at 1/6 (the plateau): on average 3/5 of the
# masked answer tokens are inner ones.
PLATEAU = 3 / 5 * math.log(6)

fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=110)
for file, label in RUNS.items():
    recs = [json.loads(line) for line in (HERE / file).read_text().splitlines()]
    ax.plot([r["step"] for r in recs], [r["loss"] for r in recs], lw=1.8, label=label)
ax.axhline(PLATEAU, color="grey", ls="--", lw=1, label=f"plateau: inner nodes at 1/6 ({PLATEAU:.2f})")
ax.set_ylim(0, 2.6)
ax.set_xlabel("step")
ax.set_ylabel("training loss (masked tokens)")
ax.set_title("mlm-u on G(2,5) N=50, CPU: no run learned the lookups", fontsize=9)
ax.legend(fontsize=7)
ax.grid(alpha=0.3)
fig.tight_layout()
tmp = HERE / "loss-mlmu.png.tmp"
fig.savefig(tmp, format="png")
os.replace(tmp, HERE / "loss-mlmu.png")
