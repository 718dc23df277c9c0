"""The teacherless map: which recipes fit which shapes on this CPU.

    python docs/teacherless/map.py collect runs/tl-g2-3-4L runs/… [--name NAME]   # keep a run's record here
    python docs/teacherless/map.py table [--readme]                              # the markdown table + curves.png

`collect` stores each run's config, command and held-out curve (metrics.jsonl) as `runs/NAME.json` in this
folder, so the table and the figure are rebuilt from this folder alone. A run still training can be collected
again later (its record is replaced).

Verdicts: **fit** = best greedy accuracy ≥ 0.95; **partly** = an inner answer position (not the start, not the
goal: both are in the question) reached ≥ 0.6 at some evaluation — above the plateau, where inner nodes are
guessed (≈ 1/2 at G(2,3), ≈ 1/6 at G(2,5)); **plateau** = neither.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

HERE = Path(__file__).resolve().parent
RECORDS = HERE / "runs"
BEGIN, END = "<!-- map: python map.py table --readme -->", "<!-- /map -->"


def collect(run: Path, name: str | None) -> Path:
    from ntp_probe.checkpoint import read_meta

    meta = read_meta(run / "model.safetensors")
    training = meta.get("training", {})
    curve = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rec = {"name": name or run.name, "task": meta["task"], "objective": meta["objective"], "config": training.get("config", {}),
           "command": training.get("command", ""), "steps": training.get("steps"), "wall_time_s": training.get("wall_time_s"),
           "curve": curve}
    RECORDS.mkdir(exist_ok=True)
    out = RECORDS / f"{rec['name']}.json"
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(rec, indent=None) + "\n")
    os.replace(tmp, out)
    return out


def recipe(rec: dict) -> str:
    c = rec["config"]
    obj = rec["objective"]
    name = obj["name"] + (f" mix {obj['mix']}" if "mix" in obj else "") + (" drop-masked" if obj.get("drop_masked") else "")
    name += " mask-question" if c.get("mask_question") else ""
    parts = [name,
             f"{c.get('layers')}L/{c.get('d_model')}d", f"batch {c.get('batch_size')}"]
    lr = f"lr {c.get('lr'):g}" + (" const" if c.get("min_lr") == c.get("lr") else "")
    parts.append(lr)
    if c.get("weight_decay"):
        parts.append(f"wd {c['weight_decay']:g}")
    parts.append(f"file {Path(c['train_file']).name}" if c.get("train_file") else "fresh graphs")
    parts.append(f"seed {c.get('seed')}")
    if c.get("init_from"):
        parts.append(f"from {Path(c['init_from']).name}")
    return ", ".join(parts)


def verdict(rec: dict) -> str:
    curve = rec["curve"]
    if any(r["accuracy"] >= 0.95 for r in curve):
        return "**fit**"
    if any(max(r["per_position"][1:-1], default=0) >= 0.6 for r in curve):
        return "partly"
    return "plateau"


def table() -> str:
    recs = sorted((json.loads(p.read_text()) for p in RECORDS.glob("*.json")),
                  key=lambda r: (r["task"]["path_len"], r["task"]["degree"], r["name"]))
    lines = ["| run | shape | recipe | steps | wall | greedy (best) | per position at the end | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for r in recs:
        last = r["curve"][-1] if r["curve"] else {"accuracy": 0, "per_position": []}
        best = max((x["accuracy"] for x in r["curve"]), default=0)
        t = r["task"]
        wall = r.get("wall_time_s") or last.get("wall_time_s") or 0
        lines.append(f"| {r['name']} | G({t['degree']},{t['path_len']}) | {recipe(r)} | {r['steps']:,} | {wall / 60:.0f} min | "
                     f"{last['accuracy']:.3f} ({best:.3f}) | {' '.join(f'{x:.2f}' for x in last['per_position'])} | {verdict(r)} |")
    return "\n".join(lines)


def plot() -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = sorted((json.loads(p.read_text()) for p in RECORDS.glob("*.json")),
                  key=lambda r: (r["task"]["path_len"], r["task"]["degree"], r["name"]))
    cols = 3
    rows = max(1, -(-len(recs) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.0 * cols, 2.6 * rows), dpi=100, squeeze=False)
    for ax, r in zip(axes.flat, recs):
        steps = [x["step"] for x in r["curve"]]
        L = len(r["curve"][0]["per_position"]) if r["curve"] else 0
        for i in range(1, L - 1):
            ax.plot(steps, [x["per_position"][i] for x in r["curve"]], lw=1.2, label=f"answer pos {i + 1}")
        ax.plot(steps, [x["accuracy"] for x in r["curve"]], color="black", lw=1.8, label="greedy")
        t = r["task"]
        ax.set_title(f"{r['name']}: G({t['degree']},{t['path_len']})", fontsize=8)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, loc="upper left")
    for ax in list(axes.flat)[len(recs):]:
        ax.axis("off")
    fig.suptitle("teacherless / hybrid / mlm-u on 2 CPU cores: held-out accuracy per inner answer position", fontsize=10)
    fig.tight_layout()
    out = HERE / "curves.png"
    tmp = HERE / "curves.png.tmp"
    fig.savefig(tmp, format="png")
    os.replace(tmp, out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collect")
    c.add_argument("runs", nargs="+", type=Path)
    c.add_argument("--name")
    t = sub.add_parser("table")
    t.add_argument("--readme", action="store_true", help="write the table into README.md between its map markers")
    args = ap.parse_args()
    if args.cmd == "collect":
        for run in args.runs:
            print(collect(run, args.name if len(args.runs) == 1 else None))
    else:
        md = table()
        plot()
        if args.readme:
            readme = HERE / "README.md"
            text = readme.read_text()
            head, rest = text.split(BEGIN, 1)
            tail = rest.split(END, 1)[1]
            tmp = readme.with_suffix(".md.tmp")
            tmp.write_text(f"{head}{BEGIN}\n{md}\n{END}{tail}")
            os.replace(tmp, readme)
        print(md)


if __name__ == "__main__":
    main()
