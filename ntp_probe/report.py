"""The paper's comparison in one command: train (or load) one model per objective, score them on the
same graphs, and write ``report.md`` with a table and learning-curve plots (PNG)."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from . import checkpoint as ckpt
from .atomic import atomic_write, atomic_write_text
from .checkpoint import LoadedModel
from .errors import GraphError, NtpProbeError
from .evaluate import evaluate
from .fmt import fmt as _f
from .metrics import CH_FIGURES, clever_hans, clever_hans_sentence
from .runfiles import METRICS_FILE, STATE_FILE
from .runs import read_metrics
from .train import TrainConfig, train

SPARK = "▁▂▃▄▅▆▇█"


def metrics_for(lm: LoadedModel) -> list[dict]:
    """The learning curve that sits next to a model file (run directories and shipped models have one)."""
    return read_metrics(lm.path.parent / METRICS_FILE) if lm.path else []


def sparkline(values: list[float]) -> str:
    return "".join(SPARK[min(len(SPARK) - 1, max(0, int(v * (len(SPARK) - 1) + 0.5)))] for v in values)


def score(lm: LoadedModel, graphs, seed: int = 0) -> dict:
    row = evaluate(lm, graphs)
    row["follow_rate"] = row["goal_copy_rate"] = row["wrong_leaf_rate"] = None
    if lm.objective.decision_step:
        try:
            ch = clever_hans(lm, graphs, seed=seed)
        except GraphError:  # not one path-star among the graphs: the Clever Hans columns stay empty
            ch = None
        if ch is not None:
            row.update({k: ch[k] for k in (*CH_FIGURES, "decision_entropy", "decision_mass_on_children")})
            row["clever_hans_skipped_ood"] = ch["skipped_ood"]
            for key, r in ch.get("by_topology", {}).items():
                if key in row.get("by_topology", {}):
                    row["by_topology"][key].update({k: r[k] for k in CH_FIGURES})
    row["name"] = lm.display_name
    row["training"] = lm.meta.get("training", {})
    return row


def train_all(base: TrainConfig, objectives: list[str], out: Path, callback_for=None, command: str | None = None) -> list[Path]:
    """Train one model per objective with the same recipe into ``out/<objective>``; resumes unfinished runs."""
    runs = []
    for obj in objectives:
        run = out / obj
        cfg = replace(base, objective=obj)
        resume = (run / STATE_FILE).is_file()
        if resume and ckpt.read_state_meta(run / STATE_FILE).get("step", 0) >= cfg.steps:
            runs.append(run)
            continue
        train(cfg, run, resume=resume, force=not resume, callback=callback_for(obj) if callback_for else None, command=command)
        runs.append(run)
    return runs


def file_slug(name: str) -> str:
    """A file-name-safe short name for a model given by name or by path (a run dir or its model file)."""
    p = Path(name)
    base = p.parent.name if p.suffix == ".safetensors" else p.name
    return re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-") or "model"


def plot_curves(curves: dict[str, list[dict]], out: Path, title: str) -> list[Path]:
    """One PNG per objective: greedy (solid) and teacher-forced (dashed) accuracy per answer position over steps."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover - matplotlib is a dependency
        raise NtpProbeError(f"plots need matplotlib ({e})") from None
    files = []
    for name, recs in curves.items():
        if not recs:
            continue
        steps = [r["step"] for r in recs]
        L = len(recs[0]["per_position"])
        fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=110)
        colors = plt.get_cmap("viridis")([i / max(1, L - 1) for i in range(L)])
        for p in range(L):
            ax.plot(steps, [r["per_position"][p] for r in recs], color=colors[p], lw=2, label=f"pos {p + 1} greedy")
            if all("forced_per_position" in r for r in recs):
                ax.plot(steps, [r["forced_per_position"][p] for r in recs], color=colors[p], lw=1, ls="--")
        ax.plot(steps, [r["accuracy"] for r in recs], color="crimson", lw=2.5, label="whole answer (greedy)")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("step")
        ax.set_ylabel("accuracy (held-out)")
        ax.set_title(f"{name}: {title}\nsolid: greedy per position; dashed: teacher-forced", fontsize=9)
        ax.legend(fontsize=7, loc="lower right", ncol=2)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        slug = file_slug(name)
        while out / f"curve-{slug}.png" in files:
            slug += "-1"
        f = out / f"curve-{slug}.png"
        try:
            atomic_write(f, lambda name: fig.savefig(name, format="png"))
        finally:
            plt.close(fig)
        files.append(f)
    return files


def shapes_of(rows: list[dict]) -> list[tuple[int, int]]:
    """The shapes (d, l) scored per shape in any row, sorted."""
    return sorted({tuple(map(int, k.split(","))) for r in rows for k in r.get("by_topology", {})})


def plot_grid(rows: list[dict], out: Path, title: str) -> Path | None:
    """The grid as a heat map PNG: greedy and decision accuracy per (d, l) for each model, chance 1/d on the rows."""
    shapes = shapes_of(rows)
    rows = [r for r in rows if r.get("by_topology")]
    if not shapes or not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ds = sorted({d for d, _ in shapes})
    ls = sorted({l for _, l in shapes})
    panels = [("accuracy", "greedy accuracy"), ("decision_accuracy", "decision accuracy")]
    fig, axes = plt.subplots(len(rows), len(panels), figsize=(3.2 * len(panels) + 1, 0.5 * len(ds) * len(rows) + 1.6),
                             dpi=110, squeeze=False)
    for i, r in enumerate(rows):
        for j, (key, name) in enumerate(panels):
            ax = axes[i][j]
            grid = [[float("nan")] * len(ls) for _ in ds]
            for k, v in r["by_topology"].items():
                d, l = map(int, k.split(","))
                grid[ds.index(d)][ls.index(l)] = v[key]
            ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
            for a, d in enumerate(ds):
                for b, l in enumerate(ls):
                    v = grid[a][b]
                    if v == v:  # not NaN
                        ax.text(b, a, f"{v:.2f}", ha="center", va="center", fontsize=7,
                                color="black" if v > 0.6 else "white")
            ax.set_xticks(range(len(ls)), [f"l={l}" for l in ls], fontsize=7)
            ax.set_yticks(range(len(ds)), [f"d={d} (1/d={1 / d:.2f})" for d in ds], fontsize=7)
            ax.set_title(f"{r['name']} ({r['objective']}): {name}", fontsize=8)
    fig.suptitle(f"{title}: accuracy per shape G(d, l)", fontsize=9)
    fig.tight_layout()
    f = out / "grid.png"
    try:
        atomic_write(f, lambda name: fig.savefig(name, format="png"))
    finally:
        plt.close(fig)
    return f


def grid_markdown(rows: list[dict]) -> list[str]:
    """Figures per shape, one line per (model, shape)."""
    lines = ["| model | shape | graphs | greedy accuracy | decision accuracy | chance 1/d | teacher-forced after decision "
             "| wrong arm: follows | then copies the goal |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for k, v in sorted(r.get("by_topology", {}).items(), key=lambda kv: tuple(map(int, kv[0].split(",")))):
            lines.append(f"| {r['name']} | G({k}) | {v['count']:,} | {_f(v['accuracy'])} | {_f(v['decision_accuracy'])} "
                         f"| {_f(v['chance'])} | {_f(v['forced_after_decision'])} | {_f(v.get('follow_rate'))} "
                         f"| {_f(v.get('goal_copy_rate'))} |")
    return lines


def inference_markdown(rows: list[dict]) -> list[str]:
    """The inference-fixes comparison (see ``evaluate.inference_fixes``) as Markdown table lines."""
    lines = ["| model | objective | strategy | accuracy | decision accuracy | tries (mean) | tokens per graph |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['objective']} | {r['strategy']} | {r['accuracy']:.3f} "
                     f"| {r['decision_accuracy']:.3f} | {r['tries_mean']:.2f} | {r['tokens_per_graph']:.1f} |")
    return lines


INFERENCE_NOTE = (
    "Every strategy decodes the same graphs. *verifier* enumerates candidate answers best first (by the model's "
    "own probabilities) and keeps the first that a perfect verifier accepts (a valid start→goal path in the graph): "
    "the optimists' best case. It reaches the goal only by trying arms — search, not planning — and its cost "
    "(tries, tokens) grows with d."
)


def write_report(rows: list[dict], curves: dict[str, list[dict]], out: Path, title: str, data_desc: str,
                 command: str, report_name: str = "report.md", fixes: list[dict] | None = None) -> Path:
    pngs = plot_curves(curves, out, title)
    lines = [
        f"# Path-star {title}: objectives compared",
        "",
        f"Produced by `{command}`; scored on {data_desc}.",
        "",
        "| model | objective | greedy accuracy | decision accuracy | teacher-forced accuracy | forced after decision "
        "| wrong arm: follows | then copies the goal | steps |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['objective']} | {_f(r['accuracy'])} | {_f(r['decision_accuracy'])} | {_f(r['forced_accuracy'])} "
            f"| {_f(r['forced_after_decision'])} | {_f(r['follow_rate'])} | {_f(r['goal_copy_rate'])} "
            f"| {r['training'].get('steps', '—')} |"
        )
    lines += [
        "",
        f"Chance at the decision is 1/d = {rows[0]['chance']:.3f}. *Teacher-forced* accuracy gives the model the true prefix; "
        "*greedy* lets it decode on its own. *Wrong arm: follows* (`follow_rate`): forced onto a wrong arm at the decision, "
        "the fraction of graphs where the model stays on that arm at every inner step after it: the Clever Hans cheat "
        "('the next node is a child of the previous one'); — on G(d,3), whose arm has no inner node after the decision. "
        "*Then copies the goal* (`goal_copy_rate`): its last token is the goal it read in the query anyway, a second "
        "shortcut ('the last token is the goal'). Reverse models have no arm to choose, so neither applies.",
        *[line for r in rows if r.get("goal_copy_rate") is not None
          for line in ("", f"*{r['name']}*: {clever_hans_sentence(r)}")],
        "",
        "## Per-position accuracy (greedy, in each model's answer order)",
        "",
        "| model | order | " + " | ".join(f"pos {i + 1}" for i in range(len(rows[0]["per_position"]))) + " |",
        "|---|---|" + "---|" * len(rows[0]["per_position"]),
    ]
    for r in rows:
        lines.append(f"| {r['name']} | {r['answer_order']} | " + " | ".join(f"{x:.3f}" for x in r["per_position"]) + " |")
    grid = plot_grid(rows, out, title)
    if grid is not None:
        lines += ["", "## Per shape G(d, l)", "",
                  "Greedy and decision accuracy of each model on each shape, beside chance 1/d: a next-token model "
                  "that has not learned to plan chooses the arm at chance on every shape.", "",
                  f"![accuracy per shape]({grid.name})", "", *grid_markdown(rows)]
    if fixes:
        lines += ["", "## Inference-time fixes: does search recover the plan?", "", *inference_markdown(fixes), "",
                  INFERENCE_NOTE]
    lines += ["", "## Learning curves", ""]
    for png in pngs:
        lines += [f"![{png.stem}]({png.name})", ""]
    for name, recs in curves.items():
        if recs:
            L = len(recs[0]["per_position"])
            lines.append(f"`{name}` greedy per position over {recs[-1]['step']} steps:")
            lines.append("```")
            for p in range(L):
                lines.append(f"pos {p + 1} {sparkline([r['per_position'][p] for r in recs])}")
            lines.append(f"all   {sparkline([r['accuracy'] for r in recs])}")
            lines += ["```", ""]
    from .limits import check_file_name

    path = out / check_file_name(report_name, "--report", "--out")
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path
