"""The leaderboard: every shipped model scored on the debate's shapes, one row per (fix, shape).

A model of one shape is scored on its shape; a topology set's model on each leaderboard shape inside its set and
on the whole set. Each row is scored on the original test file of that shape when one is given (``data_dir``
holds the original repository's ``deg_D_path_L_nodes_N_test_*.txt`` files, read unchanged), else on ``count``
fresh seeded graphs. The row keeps what each model cost: parameters, steps and wall time of its own training
(a curriculum's earlier stages are named, not added).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from .checkpoint import LoadedModel

SHAPES = ((2, 3), (2, 4), (2, 5), (5, 5))  # the debate's shapes; the star set is added for a set's model
BASELINES = ("next-token", "multi-token")  # teacher forcing and its cousin: the pitfall's side


def fix_label(lm: LoadedModel) -> str:
    """What was changed, in a few words: the objective and its options, the data options, the architecture."""
    obj = lm.objective.to_meta()
    parts = [obj["name"]]
    if obj.get("n_future", 1) > 1:
        parts.append(f"k={obj['n_future']}")
    for key, value in sorted(obj.items()):
        if key in ("name", "n_future"):
            continue
        if value is True:
            parts.append(key.replace("_", "-"))
        elif key == "drop_mode":
            parts.append(str(value))
        elif value not in (False, None):
            parts.append(f"{key.replace('_', '-')} {value:g}" if isinstance(value, float) else f"{key} {value}")
    cfg = (lm.meta.get("training") or {}).get("config") or {}
    if cfg.get("mask_question"):
        parts.append("mask-question")
    if isinstance(cfg.get("targets_per_graph"), int) and cfg["targets_per_graph"] > 1:
        parts.append(f"{cfg['targets_per_graph']} targets/graph")
    if lm.task.query_first:
        parts.append("query-first")
    if lm.arch != "gpt":
        parts.append(lm.arch)
    return " ".join(parts)


def side(lm: LoadedModel) -> str:
    return "pitfall" if lm.objective.name in BASELINES else "fix"


def test_file(data_dir: Path | None, shape: tuple[int, int], nodes: int) -> Path | None:
    if data_dir is None:
        return None
    found = sorted(Path(data_dir).glob(f"deg_{shape[0]}_path_{shape[1]}_nodes_{nodes}_test_*.txt"))
    return found[0] if found else None


def rows_for(lm: LoadedModel, data_dir: Path | None, count: int, seed: int,
             note: Callable[[str], None] = lambda s: None) -> list[dict]:
    """The model's rows: one per leaderboard shape it knows (and its whole set, for a set's model)."""
    from .evaluate import evaluate
    from .task import Topologies, generate_set, read_lines

    t = lm.task
    shapes = [s for s in SHAPES if s in t.topologies] if t.mixed else [(t.degree, t.path_len)]
    targets: list[tuple[str, Topologies | None, tuple[int, int] | None]] = [(f"G({a},{b})", None, (a, b)) for a, b in shapes]
    if t.mixed:
        targets.append((t.topologies.label(), t.topologies, None))
    training = lm.meta.get("training") or {}
    cfg = training.get("config") or {}
    params = sum(p.numel() for p in lm.model.parameters())
    out = []
    for label, topologies, shape in targets:
        path = test_file(data_dir, shape, t.nodes) if shape else None
        if path is not None:
            graphs, scored_on = read_lines(path, t.nodes), f"{path.name}"
        else:
            shapes_ = topologies or Topologies((shape[0],), (shape[1],))
            graphs, scored_on = generate_set(shapes_, t.nodes, count, seed=seed), f"{count:,} fresh graphs (seed {seed})"
        note(f"{lm.display_name} on {label} ({scored_on}) …")
        r = evaluate(lm, graphs)
        d = shape[0] if shape else None
        out.append({
            "fix": fix_label(lm), "side": side(lm), "model": lm.display_name, "shape": label, "nodes": t.nodes,
            "scored_on": scored_on, "count": r["count"], "accuracy": r["accuracy"],
            "decision_accuracy": r.get("decision_accuracy"), "chance": (1 / d) if d else r.get("chance"),
            "params": params, "layers": lm.model.config.n_layer, "d_model": lm.model.config.n_embd,
            "steps": training.get("steps"), "wall_time_s": training.get("wall_time_s"),
            "init_from": Path(str(cfg["init_from"])).name if cfg.get("init_from") else None,
        })
    return out


def _num(x, fmt: str) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def markdown(rows: list[dict]) -> str:
    """Sorted by shape, then pitfall before fix, then greedy accuracy."""
    order = {f"G({a},{b})": i for i, (a, b) in enumerate(SHAPES)}
    rows = sorted(rows, key=lambda r: (order.get(r["shape"], len(order)), r["shape"], r["side"] != "pitfall",
                                       -(r["accuracy"] or 0), r["model"]))
    lines = ["| shape | side | fix | model | greedy | decision (chance) | size | params | steps | wall, 2 CPU cores | scored on |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        wall = r["wall_time_s"]
        wall_s = "–" if not isinstance(wall, (int, float)) else (f"{wall / 60:.0f} min" if wall >= 60 else f"{wall:.0f} s")
        if r["init_from"]:
            wall_s += f" (+ {r['init_from']})"
        best = "**" if r["accuracy"] >= 0.95 else ""
        lines.append(
            f"| {r['shape']} | {r['side']} | {r['fix']} | `{r['model']}` | {best}{r['accuracy']:.3f}{best} | "
            f"{_num(r['decision_accuracy'], '.3f')} ({_num(r['chance'], '.2f')}) | {r['layers']}L×{r['d_model']} | "
            f"{r['params'] / 1e6:.2f} M | {_num(r['steps'], ',')} | {wall_s} | {r['scored_on']} |")
    return "\n".join(lines)


__all__ = ["SHAPES", "fix_label", "rows_for", "markdown"]
