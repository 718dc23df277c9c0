"""Rich renderings shared by CLI commands (tables only; no model work here)."""

from __future__ import annotations

from rich.table import Table


def _f(x, digits: int = 3) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def eval_table(lm, res: dict) -> Table:
    t = Table(title=f"{lm.display_name}: {lm.objective.name} on {lm.task.label()}, {res['count']:,} graphs", title_justify="left")
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_column("what it means", style="dim")
    t.add_row("greedy accuracy", _f(res["accuracy"]), "whole answer exactly right, decoding on its own")
    t.add_row("decision accuracy", _f(res["decision_accuracy"]), f"right arm after the start (chance {res['chance']:.2f})")
    t.add_row("teacher-forced accuracy", _f(res["forced_accuracy"]), "per token, true prefix given")
    t.add_row("teacher-forced after decision", _f(res["forced_after_decision"]), "per token, path positions ≥ 2")
    order = res["answer_order"]
    t.add_row("greedy per position", " ".join(_f(x, 2) for x in res["per_position"]), f"in the model's ({order}) order")
    t.add_row("forced per position", " ".join(_f(x, 2) for x in res["forced_per_position"]), f"in the model's ({order}) order")
    t.add_row("seconds", _f(res["seconds"], 2), "")
    return t


def models_table(rows: list[dict]) -> Table:
    t = Table(title="shipped models", title_justify="left")
    for col, just in (("name", "left"), ("objective", "left"), ("arch", "left"), ("G(d,l) N", "left"), ("size", "left"),
                      ("accuracy", "right"), ("decision", "right"), ("clever-hans", "right"), ("steps", "right")):
        t.add_column(col, justify=just)
    for r in rows:
        if "error" in r:
            t.add_row(r["name"], f"[red]{r['error']}[/]", "", "", "", "", "", "", "")
            continue
        t.add_row(
            r["name"], r["objective"], r["arch"], f"G({r['degree']},{r['path_len']}) {r['nodes']}", f"{r['layers']}L/{r['d_model']}d",
            _f(r["accuracy"]), _f(r["decision_accuracy"]), _f(r["clever_hans_rate"]), str(r["steps"] or "—"),
        )
    return t
