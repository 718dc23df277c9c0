"""The distribution, attention and comparison panels (renderings of a session; no model calls)."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from .render import CLASS_STYLE, DIM, FORCED, answer, bar, heat, strip, token_class


def dist_header(s) -> Text:
    st = s.steps[s.current]
    t = Text()
    where = "decision step" if st.position == s.decision_position else f"path node #{st.path_index}"
    t.append(f"step {st.position + 1}/{s.length}", style="bold")
    t.append(f" ({where})", style=DIM)
    if st.forced:
        t.append(f"  forced {s.token_str(st.token)}*", style=FORCED)
    t.append("\n")
    if st.correct is not None:
        t.append("correct ", style=DIM)
        t.append(s.token_str(st.correct), style="bold green")
        t.append(f" (rank #{st.correct_rank}, p {st.correct_prob:.2f})  ")
    t.append("entropy ", style=DIM)
    t.append(f"{st.entropy:.2f}  ")
    t.append("legal ", style=DIM)
    t.append(f"{st.legal_mass:.2f}")
    return t


def topk_options(s, k: int, width: int = 10) -> list[Option]:
    st = s.steps[s.current]
    out = []
    for tok, p in st.top(k):
        cls = token_class(st, tok)
        style = CLASS_STYLE[cls]
        t = Text()
        t.append(f"{s.token_str(tok):>3} ", style="bold")
        t.append(bar(p, width), style=style.replace("bold ", ""))
        t.append(f" {p:.2f} ")
        t.append({"correct": "✓correct", "legal": "legal", "illegal": "illegal"}[cls], style=style)
        if tok == st.token:
            t.append(" ◀forced" if st.forced else " ◀chosen", style=FORCED if st.forced else DIM)
        out.append(Option(t, id=str(tok)))
    return out


class TopK(OptionList):
    """Top-k tokens of the current step; enter forces the highlighted one."""

    def show(self, s, k: int) -> None:
        highlighted = self.highlighted
        self.clear_options()
        self.add_options(topk_options(s, k))
        if highlighted is not None and highlighted < self.option_count:
            self.highlighted = highlighted
        elif self.option_count:
            self.highlighted = 0


def attention_text(s, view, layer: int, head: int) -> Text:
    t = Text()
    if view is None:
        if s.lm.arch == "mamba":
            why = " for Mamba (no attention)"
        elif not s.objective.supports_attention:
            why = f" for the {s.objective.name} objective ({s.objective.no_attention})"
        else:
            why = ""
        t.append(f"attention: not available{why}; l shows the logit lens", style=DIM)
        return t
    L, H = view.weights.shape[:2]
    layer, head = layer % L, head % H
    (u, v), score = view.top_edge(layer, head)
    t.append(f"layer {layer + 1}/{L} head {head + 1}/{H}", style="bold")
    t.append(f" at step {view.position + 1}", style=DIM)
    t.append("  most-attended edge ", style=DIM)
    t.append(f"{s.token_str(u)}→{s.token_str(v)}", style="bold yellow")
    t.append(f" ({score:.2f})\n")
    w = view.weights[layer, head]
    top = float(w.max()) or 1.0
    for i, label in enumerate(view.labels):
        t.append(label, style=heat(float(w[i]) / top))
        t.append(" ")
    return t


def layers_text(s, rows: list[dict] | None) -> Text:
    """The logit lens at the current step: per layer, p(correct) against the best wrong move, and their gap."""
    t = Text()
    if not rows:
        t.append("logit lens: not available for this model", style=DIM)
        return t
    st = s.steps[s.current]
    where = "decision step" if st.position == s.decision_position else f"path node #{st.path_index}"
    t.append(f"logit lens at step {st.position + 1}", style="bold")
    t.append(f" ({where}): each layer's residual read out\n", style=DIM)
    for r in rows:
        cp, gap = r["correct_prob"], r["gap"]
        t.append(f"L{r['layer']} ", style="bold")
        t.append(bar(cp or 0.0, 8), style="green")
        t.append(" —    " if cp is None else f" {cp:.2f} ")
        t.append(f"vs {r['best_wrong']:>3} ", style=DIM)
        t.append(f"{r['best_wrong_prob']:.2f}", style="yellow")
        if gap is not None:
            t.append(f"  gap {gap:+.2f}", style="green" if gap > 0 else "red")
        t.append(f"  top {r['top']}\n", style=DIM)
    return t


def compare_text(m, error: str | None, name: str | None) -> Text:
    t = Text()
    if name is None:
        t.append("no second model (pass two MODELs, e.g. ntp-probe tui A B)", style=DIM)
        return t
    if error:
        t.append(f"{name}: ", style="bold")
        t.append(error, style="red")
        return t
    if m is None:
        t.append(f"{name}: …", style=DIM)
        return t
    t.append(f"{m.lm.display_name}", style="bold")
    t.append(f" ({m.objective.name})\n", style=DIM)
    t.append_text(answer(m))
    t.append("\n")
    t.append_text(strip(m))
    return t


class Panel(Static):
    """A bordered text panel."""
