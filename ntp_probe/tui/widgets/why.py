"""Why the model answers as it does at the token on show, measured: the goal-pair activation patching heat map
over the input (``ntp-probe patch``'s grid: which layer at which token carries the goal's information to this
step; where the goal does not change the step's output, ``near_zero``, that said in words with the raw logit
differences instead) and the star with each edge coloured by its knock-out effect on p(correct). The worker computes it
(``ops.why_probe``) only while the panel is on show (``y``)."""

from __future__ import annotations

from rich.style import Style
from rich.text import Text

from .base import ProbeText, Probed
from .render import DIM, GOAL, num


def effect_style(v: float | None) -> Style:
    """Background for a signed effect in [-1, 1]: red where the clean answer gains, blue where it loses."""
    if v is None:
        return Style(bgcolor="grey23")
    x = max(-1.0, min(1.0, v))
    k = abs(x)
    r, g, b = (int(40 + 215 * k), int(40 + 20 * k), int(40 + 10 * k)) if x >= 0 else (int(40 - 10 * k), int(40 + 60 * k), int(40 + 215 * k))
    return Style(bgcolor=f"rgb({r},{g},{b})", color="black" if k > 0.6 else "white")


def heatmap(res: dict) -> Text:
    """Layers × input tokens, each cell the normalized effect of patching it (the logit change where clean = corrupt)."""
    norm = res["normalized"]
    defined = any(v is not None for row in norm for v in row)
    rows = norm if defined else [[g - res["corrupt"] for g in row] for row in res["grid"]]
    w = max(len(t) for t in res["tokens"]) + 1
    lw = max(len(x) for x in res["layers"]) + 1
    t = Text(" " * lw)
    for tok in res["tokens"]:
        t.append(tok.rjust(w), style="bold")
    for name, row in zip(res["layers"], rows):
        t.append("\n" + name.ljust(lw), style="bold")
        for v in row:
            t.append(" " * w, style=effect_style(v))
    if not defined:
        t.append("\nthe goal's move does not change this step's logit difference: nothing to normalize by", style=DIM)
        return t
    cells = sorted(((v, name, p) for name, row in zip(res["layers"], rows) for p, v in enumerate(row) if v is not None),
                   key=lambda c: -abs(c[0]))[:4]
    t.append("\nstrongest: " + ", ".join(f"{name} @ {res['tokens'][p]} (#{p + 1}) {v:+.2f}" for v, name, p in cells))
    return t


def knockout_star(s, res: dict) -> Text:
    """The star, one arm a row, each edge drawn with its knock-out Δ p(correct) and coloured by it."""
    g = s.graph
    effect = {e["edge"]: e["delta_p"] for e in res.get("edges", [])}
    t = Text()
    for i, arm in enumerate(g.arms()):
        if i:
            t.append("\n")
        prev = g.start
        t.append(s.token_str(prev), style="bold")
        for n in arm:
            dp = effect.get(f"{prev}→{n}")
            label = " ─▶ " if dp is None else f" ─{dp:+.2f}▶ "
            t.append(label, style=effect_style(None if dp is None else dp * 2))
            t.append(s.token_str(n), style=GOAL if n == g.goal else "")
            prev = n
        if g.goal in arm:
            t.append(" ◎ goal", style=GOAL)
    return t


def why_text(s, res: dict | None, error: str | None) -> Text:
    t = Text()
    if error is not None:
        t.append(f"why: {error}", style=DIM)
        return t
    if res is None:
        t.append("why: computing…", style=DIM)
        return t
    t.append(f"goal pair at {s.token_label()}", style="bold")
    t.append(": the same edges, the goal moved to another arm's leaf; teacher-forced, the true prefix\n", style=DIM)
    t.append(f"logit difference (this answer's token − the moved goal's): clean {num(res['clean'], signed=True)}, "
             f"goal moved {num(res['corrupt'], signed=True)}\n")
    if res.get("near_zero"):  # a normalized map would be a ratio of noise: named, not drawn
        from ...probing.patching import NEAR_ZERO, near_zero_detail

        t.append(NEAR_ZERO + "\n", style="bold yellow")
        t.append(near_zero_detail(res) + "\n", style=DIM)
    else:
        t.append_text(heatmap(res))
        t.append("\nred: patching the clean run in there restores the clean answer (1 = fully); blue: the other way\n",
                 style=DIM)
    if "edges" in res:
        t.append("\nedge knock-out (each edge hidden from every attention): Δ p(correct)\n", style="bold")
        t.append_text(knockout_star(s, res))
    else:
        t.append("\nedge knock-out: not for Mamba (no attention keys to hide)", style=DIM)
    return t


class WhyPanel(ProbeText, can_focus=True):
    """Focusable: while it is on show it holds the focus (the top-k list is hidden), so a modal closed over it hands
    the focus back here, not to the graph editor."""

    DEFAULT_CSS = """
    WhyPanel { height: 1fr; border: round $warning; padding: 0 1; overflow-y: auto; display: none; }
    """

    def on_mount(self) -> None:
        self.border_title = "why (y): activation patching and edge knock-out"

    def probe_text(self, p: Probed) -> Text:
        return why_text(p.session, p.why, p.why_error)
