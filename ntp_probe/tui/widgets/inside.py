"""Inside the model at the answer token on show: attention over the input (one layer·head at a time) or the
logit lens (every layer's readout). The panel owns which view, layer and head are on show."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive

from .base import ProbeText, Probed
from .distribution import where
from .render import DIM, bar, heat, num


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
    t.append(f" at {s.token_label(view.position)}", style=DIM)
    t.append("  most-attended edge ", style=DIM)
    t.append(f"{s.token_str(u)}→{s.token_str(v)}", style="bold yellow")
    t.append(f" ({num(score)})\n")
    w = view.weights[layer, head]
    top = float(w.max()) or 1.0
    for i, label in enumerate(view.labels):
        t.append(label, style=heat(float(w[i]) / top))
        t.append(" ")
    return t


def layers_text(s, rows: list[dict] | None) -> Text:
    """The logit lens at the answer token on show: per layer, p(correct) against the best wrong move, and their gap."""
    t = Text()
    if not rows:
        t.append("logit lens: not available for this model", style=DIM)
        return t
    st = s.steps[s.current]
    t.append(f"logit lens at {s.token_label()}", style="bold")
    t.append((f" ({where(s, st)})" if where(s, st) else "") + ": each layer's residual read out\n", style=DIM)
    right = "—" if st.correct is None else s.token_str(st.correct)
    for r in rows:
        cp, gap = r["correct_prob"], r["gap"]
        t.append(f"L{r['layer']} ", style="bold")
        t.append(bar(cp or 0.0, 8), style="green")
        t.append(f" {right:>3} ", style="green")
        t.append("—    " if cp is None else f"{num(cp)} ")
        t.append(f"vs {r['best_wrong']:>3} ", style=DIM)
        t.append(num(r["best_wrong_prob"]), style="yellow")
        if gap is not None:
            t.append(f"  gap {num(gap, signed=True)}", style="green" if gap > 0 else "red")
        t.append(f"  top {r['top']}\n", style=DIM)
    return t


class InsidePanel(ProbeText):
    DEFAULT_CSS = """
    InsidePanel { height: 1fr; border: round $accent; padding: 0 1; overflow-y: auto; }
    """

    lens: reactive[bool] = reactive(False, init=False)
    attn_layer: reactive[int] = reactive(0, init=False)  # not ``layer``: widgets have a CSS layer of that name
    attn_head: reactive[int] = reactive(0, init=False)

    def on_mount(self) -> None:
        self.border_title = "attention ([ ])"

    def cycle_head(self, delta: int) -> None:
        """The next (or previous) layer·head of the attention view."""
        view = None if self.probed is None else self.probed.attention
        if view is None:
            return
        L, H = view.weights.shape[:2]
        self.attn_layer, self.attn_head = divmod((self.attn_layer * H + self.attn_head + delta) % (L * H), H)

    def toggle_lens(self) -> None:
        self.lens = not self.lens

    def _changed(self) -> None:
        if self.probed is not None:
            self.show_probed(self.probed)

    watch_lens = watch_attn_layer = watch_attn_head = _changed

    def probe_text(self, p: Probed) -> Text:
        self.border_title = "logit lens (l)" if self.lens else "attention ([ ], l: lens)"
        if self.lens:
            return layers_text(p.session, p.lens)
        return attention_text(p.session, p.attention, self.attn_layer, self.attn_head)
