"""Rich renderings shared by CLI commands (tables only; no model work here)."""

from __future__ import annotations

import textwrap

from rich import box
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from .fmt import duration
from .fmt import fmt as _f


def eval_table(lm, res: dict) -> Table:
    t = Table(title=f"{lm.display_name}: {lm.objective.name} on {lm.task.label()}, {res['count']:,} graphs", title_justify="left")
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_column("what it means", style="dim")
    t.add_row("greedy accuracy", _f(res["accuracy"]), "whole answer exactly right, decoding on its own")
    t.add_row("decision accuracy", _f(res["decision_accuracy"]), f"right arm after the start (chance {res['chance']:.2f})")
    t.add_row("teacher-forced accuracy", _f(res["forced_accuracy"]), "per token, true prefix given")
    t.add_row("teacher-forced after decision", _f(res["forced_after_decision"]), "per token, the path from its 3rd node on (after the decision)")
    order = res["answer_order"]
    t.add_row("greedy per position", " ".join(_f(x, 2) for x in res["per_position"]), f"in the model's ({order}) order")
    t.add_row("forced per position", " ".join(_f(x, 2) for x in res["forced_per_position"]), f"in the model's ({order}) order")
    t.add_row("seconds", _f(res["seconds"], 2), "")
    return t


def shape_table(res: dict, title: str) -> Table:
    """One row per shape G(d, l) of ``res["by_topology"]`` (eval or clever-hans figures), chance 1/d beside them."""
    t = _compact(title)
    rows = res["by_topology"]
    first = next(iter(rows.values()))
    cols = [("graphs", "count", 0)]
    if "accuracy" in first:
        cols += [("greedy", "accuracy", 3), ("decision", "decision_accuracy", 3), ("TF", "forced_accuracy", 3),
                 ("TF>dec", "forced_after_decision", 3)]
    else:
        cols += [("follow", "follow_rate", 3), ("copy", "goal_copy_rate", 3), ("decision", "decision_accuracy", 3),
                 ("entropy", "decision_entropy", 3), ("log d", "log_degree", 3)]
    t.add_column("shape", no_wrap=True)
    for name, _, _ in cols:
        t.add_column(name, justify="right", no_wrap=True)
    t.add_column("chance 1/d", justify="right", no_wrap=True)
    for key, r in sorted(rows.items(), key=lambda kv: tuple(map(int, kv[0].split(",")))):
        cells = [f"{r[k]:,}" if digits == 0 else _f(r[k]) for _, k, digits in cols]
        t.add_row(f"G({key})", *cells, _f(r["chance"]))
    return t


def _compact(title: str, caption: str | None = None) -> Table:
    """A table that keeps to 80 columns: no outer edge, one space between columns, the legend as a caption (its
    lines wrapped at 79 here: the console does not wrap, soft_wrap)."""
    if caption is not None:
        caption = "\n".join(textwrap.fill(line, 79) for line in caption.splitlines())
    return Table(title=title, title_justify="left", caption=caption, caption_justify="left", box=box.SIMPLE_HEAD,
                 show_edge=False, pad_edge=False, padding=0)


MODELS_LEGEND = textwrap.fill(  # lines within 80 columns (the console does not wrap: soft_wrap)
    "dec: decision accuracy. follow: forced onto a wrong arm, the model stays on it at every inner step (the "
    "Clever Hans cheat; —: G(d,3) has no inner step, or there is no arm to choose). copy: then it writes the goal "
    "from the query (a second shortcut).", 79)


def models_table(rows: list[dict]) -> Table:
    good = [r for r in rows if "error" not in r]  # the others are listed under the table, whole
    nodes = {r["nodes"] for r in good}
    one_n = len(nodes) == 1  # the same N everywhere: said once in the title, no column (the table keeps to 80)
    where = "(figures on each card's test set: models/NAME/README.md)"
    t = _compact(f"shipped models, N = {next(iter(nodes))} {where}" if one_n else f"shipped models {where}", MODELS_LEGEND)
    cols = [("name", "left"), ("objective", "left"), ("arch", "left"), ("task", "left"), ("N", "right"),
            ("greedy", "right"), ("dec", "right"), ("follow", "right"), ("copy", "right")]
    for col, just in cols:
        if not (one_n and col == "N"):
            t.add_column(col, justify=just, no_wrap=True)
    for r in good:
        cells = [Text(r["name"]), r["objective"], r["arch"], r.get("task") or f"G({r['degree']},{r['path_len']})",
                 str(r["nodes"]), _f(r["accuracy"]), _f(r["decision_accuracy"]), _f(r.get("follow_rate")),
                 _f(r.get("goal_copy_rate"))]
        if one_n:
            del cells[4]
        t.add_row(*cells)
    bad = [f"[red]{escape(r['name'])}: {escape(r['error'])}[/]" for r in rows if "error" in r]
    if bad:
        t.caption = "\n".join([MODELS_LEGEND, "cannot be read:", *bad])
    return t


def probe_panel(session, top_k: int = 5, layers: bool = False):
    """A probe session as Rich renderables: the answer with forced tokens marked, then top-k per step."""
    from rich.console import Group

    s = session
    head = Text()
    head.append(f"{s.lm.display_name}", style="bold")
    head.append(f"  {s.objective.name}, {s.answer_order} order, {s.lm.task.label()}\n", style="dim")
    head.append("graph  ", style="dim")
    from .task import format_human

    head.append(format_human(s.graph) + "\n")
    head.append("answer ", style="dim")
    for st in s.steps:
        style = "bold magenta underline" if st.forced else ("green" if st.token == st.correct else "red")
        head.append(s.token_str(st.token) + ("*" if st.forced else ""), style=style)
        head.append(" ")
    verdict = "[correct]" if s.correct else "[wrong]"
    head.append(f"  path {' → '.join(map(s.token_str, s.path))}  ", style="dim")
    head.append(verdict, style="bold green" if s.correct else "bold red")
    if s.ood:
        head.append("\nout of distribution: " + "; ".join(s.ood), style="yellow")
    t = Table(box=None, pad_edge=False)
    for col in ("pos", "token", "entropy", "legal mass", "correct (rank)", f"top {top_k}"):
        t.add_column(col)
    for st in s.steps:
        tops = "  ".join(f"{s.token_str(tok)}:{p:.2f}" for tok, p in st.top(top_k))
        corr = "—" if st.correct is None else f"{s.token_str(st.correct)} (#{st.correct_rank}, {st.correct_prob:.2f})"
        t.add_row(str(st.position + 1), s.token_str(st.token) + (" [magenta]forced[/]" if st.forced else ""),
                  f"{st.entropy:.3f}", f"{st.legal_mass:.3f}", corr, tops)
    parts = [head, t]
    if s.strategy.kind != "greedy":
        parts.insert(1, Text(f"decoded with {s.strategy.label()}" + (f", {s.tries} tries" if s.strategy.kind == "verify" else ""),
                             style="dim"))
    if layers:
        lens = Table(title="logit lens (per layer readout)", title_justify="left", box=None)
        for col in ("pos", "layer", "top", "correct p", "best wrong", "wrong p", "gap"):
            lens.add_column(col)
        for st in s.steps:
            for r in s.layers(st.position):
                lens.add_row(str(st.position + 1), str(r["layer"]), f"{r['top']} ({r['top_prob']:.2f})", _f(r["correct_prob"]),
                             r["best_wrong"], _f(r["best_wrong_prob"]), _f(r["gap"]))
        parts.append(lens)
    return Group(*parts)


def clever_hans_table(res: dict) -> Table:
    skipped = res.get("skipped_ood") or 0
    note = f" ({skipped:,} skipped: not path-stars G(d,l))" if skipped else ""
    t = Table(title=f"Clever Hans probe: {res['model']} ({res['objective']}), {res['count']:,} graphs{note}",
              title_justify="left")
    t.add_column("measure")
    t.add_column("value", justify="right")
    t.add_column("what it means", style="dim")
    t.add_row("follow_rate", _f(res["follow_rate"]),
              "on the forced wrong arm at every inner step after the decision: the Clever Hans cheat ('next = a child "
              "of the previous token')" if res["follow_rate"] is not None else
              "undefined: the arm has no inner node after the decision (G(d,3)), nothing to walk")
    t.add_row("goal_copy_rate", _f(res["goal_copy_rate"]),
              "the last token is the goal from the query anyway: a second shortcut ('the last token is the goal')")
    t.add_row("wrong_leaf_rate", _f(res["wrong_leaf_rate"]), "the forced arm walked to its own (wrong) leaf")
    fr = _f(res["follow_rate_per_position"], 2)
    t.add_row("follow rate per position", fr, "on the wrong arm at each answer token (1, 2 forced: —)")
    t.add_row("decision_accuracy", _f(res["decision_accuracy"]), f"greedy arm choice right (chance {res['chance']:.2f})")
    t.add_row("decision_entropy", _f(res["decision_entropy"]), f"nats at the decision; uniform over arms is log d = {res['log_degree']:.3f}")
    t.add_row("decision_mass_on_children", _f(res["decision_mass_on_children"]), "probability on the start's children")
    from .metrics import clever_hans_sentence

    t.caption, t.caption_justify = clever_hans_sentence(res), "left"
    return t


def reproduce_table(rows: list[dict], label: str) -> Table:
    t = _compact(f"{label}: objectives compared",
                 "TF: teacher-forced; TF>dec: TF after the decision; forced onto a wrong arm: follow, on it at "
                 "every inner step (the Clever Hans cheat); copy, then the goal from the query (a second shortcut)")
    for col in ("model", "objective", "greedy", "decision", "TF", "TF>dec", "follow", "copy"):
        t.add_column(col, justify="left" if col in ("model", "objective") else "right", no_wrap=col != "model",
                     overflow="fold")
    for r in rows:
        t.add_row(Text(r["name"], overflow="fold"), r["objective"], _f(r["accuracy"]), _f(r["decision_accuracy"]), _f(r["forced_accuracy"]),
                  _f(r["forced_after_decision"]), _f(r.get("follow_rate")), _f(r.get("goal_copy_rate")))
    return t


def grid_table(rows: list[dict]) -> Table:
    """Per shape G(d, l): each model's greedy / decision accuracy, chance 1/d (a compact table for the terminal)."""
    from .report import shapes_of

    t = _compact("per shape: greedy / decision accuracy", "chance: 1/d, the decision of a model that does not plan")
    t.add_column("shape", no_wrap=True)
    t.add_column("chance", justify="right", no_wrap=True)
    named = [r for r in rows if r.get("by_topology")]
    for r in named:
        t.add_column(r["objective"], justify="right", no_wrap=True)
    for d, l in shapes_of(named):
        key = f"{d},{l}"
        cells = []
        for r in named:
            v = r["by_topology"].get(key)
            cells.append("—" if v is None else f"{_f(v['accuracy'], 2)} / {_f(v['decision_accuracy'], 2)}")
        t.add_row(f"G({d},{l})", _f(1 / d, 2), *cells)
    return t


def inference_table(rows: list[dict]) -> Table:
    t = _compact("Inference-time fixes: strategy × accuracy × cost",
                 "tries: candidates the verifier checked; tokens: answer tokens generated per graph")
    for col in ("model", "strategy", "accuracy", "decision", "tries", "tokens", "seconds"):
        t.add_column(col, justify="left" if col in ("model", "strategy") else "right", no_wrap=col != "model",
                     overflow="fold")
    for r in rows:
        t.add_row(Text(r["model"]), r["strategy"], _f(r["accuracy"]), _f(r["decision_accuracy"]),
                  f"{r['tries_mean']:.2f}", f"{r['tokens_per_graph']:.1f}", f"{r['seconds']:.1f}")
    return t


def _shape(task: dict) -> str:
    """A run's shape(s) from its train config: 'G(2,5)', or a topology set's label."""
    from .task import Topologies

    d, l = task.get("degree"), task.get("path_len")
    if isinstance(d, list) or isinstance(l, list):
        return Topologies(tuple(d) if isinstance(d, list) else (d,), tuple(l) if isinstance(l, list) else (l,)).label()
    return f"G({d},{l})"


def watch_view(rows: list[dict]):
    """Training runs side by side: state, progress, speed, ETA, last evaluation, and per-position curves."""
    from rich.console import Group

    from .report import sparkline

    t = Table(title="training runs", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    t.add_column("run", min_width=14, ratio=1, overflow="fold")
    for col in ("state", "step", "s/step", "eta", "greedy", "decision", "tf≥2"):
        t.add_column(col, justify="left" if col == "state" else "right", no_wrap=True)
    colour = {"running": "green", "finished": "blue", "target reached": "blue", "stopped": "yellow"}
    for r in rows:
        last, task = r["last"], r["task"]
        what = (f"{r['objective']} {_shape(task)} N={task['nodes']}" if r["objective"]
                else "no checkpoint yet" if r["step"] else "starting")
        name = f"{r['run']}@{r['step']}" if r.get("checkpoint") else r["run"]  # RUN@STEP: a kept checkpoint
        t.add_row(
            f"{escape(name)}\n[dim]{what}[/]", f"[{colour[r['state']]}]{r['state']}[/]" + (f"\n[dim]pid {r['pid']}[/]" if r["pid"] else ""),
            f"{r['step']}/{r['steps'] or '?'}", _f(r["seconds_per_step"], 2), duration(r["eta_s"]),
            _f(last.get("accuracy")), _f(last.get("decision_accuracy")), _f(last.get("forced_after_decision")),
        )
    parts = [t]
    for r in rows:
        curve = r["curve"][-48:]
        if not curve or not curve[0].get("per_position"):
            continue
        text = Text(f"{r['run']}: greedy accuracy per answer position, evaluations {curve[0]['step']}–{curve[-1]['step']}\n",
                    style="bold")
        for p in range(len(curve[0]["per_position"])):
            text.append(f"  pos {p + 1} {sparkline([c['per_position'][p] for c in curve])} {curve[-1]['per_position'][p]:.2f}\n")
        text.append(f"  all   {sparkline([c['accuracy'] for c in curve])} {curve[-1]['accuracy']:.3f}")
        parts.append(text)
    return Group(*parts)


def _heat_style(v: float | None) -> str:
    """A background colour for a normalized patching effect: blue below 0, red above, white near 0."""
    if v is None:
        return "on grey23"
    x = max(-1.0, min(1.0, v))
    k = int(round(abs(x) * 5))
    reds = ["grey15", "grey30", "indian_red", "red3", "red1", "bright_red"]
    blues = ["grey15", "grey30", "steel_blue", "blue3", "blue1", "bright_blue"]
    return f"on {(reds if x >= 0 else blues)[k]}"


def patch_view(res: dict):
    """``ntp-probe patch``: the heat map (layers × input tokens), the strongest cells, knock-out and attribution."""
    from rich.console import Group

    n = f", mean of {res['count']:,} graphs" if "count" in res else ""
    head = Text.from_markup(
        f"[bold]{escape(res['model'])}[/]: {res['pair']} pair, answer token {res['step']}{n} — logit difference "
        f"clean {_f(res['clean'], 3)}, corrupt {_f(res['corrupt'], 3)}")
    from .probing.patching import NEAR_ZERO, near_zero_detail, position_labels, top_cells

    labels = position_labels(res["tokens"]) if "count" in res else res["tokens"]
    if res.get("near_zero"):  # a ratio of two near-equal numbers is noise: named, not drawn
        parts = [head, Text(NEAR_ZERO, style="bold yellow"), Text(near_zero_detail(res, labels), style="dim")]
        return Group(*parts, *_probe_tables(res))
    norm = res["normalized"]
    defined = any(v is not None for row in norm for v in row)
    t = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 0), title_justify="left",
              title="normalized effect of patching each (layer, token) with the clean run" if defined
              else "patched − corrupt logit difference (clean = corrupt here: nothing to normalize by)")
    t.add_column("layer", no_wrap=True, style="bold", min_width=max(len(x) for x in res["layers"]) + 1)
    for tok in labels:
        t.add_column(escape(tok), justify="center", no_wrap=True, min_width=2)
    for name, row, grow in zip(res["layers"], norm, res["grid"]):
        vals = row if defined else [g - res["corrupt"] for g in grow]
        t.add_row(name, *[Text(" " if v is None or abs(v) < 0.05 else f"{int(round(min(abs(v), 0.9) * 10))}",
                               style=_heat_style(v)) for v in vals])
    parts = [head, t, Text("digits: |effect| in tenths (9 = 0.9 or more); red raises, blue lowers the clean answer's "
                           "lead", style="dim")]
    if defined:
        cells = top_cells(res)
        parts.append(Text("strongest: " + ", ".join(f"{layer} @ {escape(labels[p])} (#{p + 1}) {v:+.2f}"
                                                   for layer, p, _, v in cells)))
    return Group(*parts, *_probe_tables(res))


def _probe_tables(res: dict) -> list:
    """``patch``'s knock-out and attribution tables, where it has them."""
    parts = []
    if "edges" in res:
        e = _compact("edge knock-out: each edge's tokens hidden from every attention")
        one = "edge" in (res["edges"][0] if res["edges"] else {})
        e.add_column("edge" if one else "role")
        if one:
            e.add_column("role")
        else:
            e.add_column("edges", justify="right")
        e.add_column("Δ p(correct)", justify="right")
        e.add_column("Δ logit diff", justify="right")
        for r in res["edges"]:
            first = [r["edge"], r["role"]] if one else [r["role"], f"{r['edges']:,}"]
            e.add_row(*first, f"{r['delta_p']:+.3f}", f"{r['delta_logit']:+.3f}")
        parts.append(e)
    if "attribution" in res:
        a = res["attribution"]
        who = f" ({a['correct']} vs {a['wrong']})" if a["correct"] is not None else " (mean)"
        d = _compact(f"direct logit attribution of correct − best wrong{who}: {a['logit_diff']:+.3f}")
        d.add_column("term")
        d.add_column("logits", justify="right")
        for term in a["terms"]:
            d.add_row(term["name"], f"{term['value']:+.3f}")
        parts.append(d)
    return parts
