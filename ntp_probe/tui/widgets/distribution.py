"""The distribution panel: the answer token on show, its full distribution as a top-k list; enter forces."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from .base import ProbeText, Probed, ShowsProbe
from .render import CLASS_STYLE, DIM, FORCED, bar, num, token_class


def where(s, st) -> str:
    """What an answer position is, beyond its number: the decision step, or (reverse order) its place on the path."""
    if st.position == s.decision_position:
        return "decision step"
    if st.path_index != st.position:
        return f"path node {st.path_index + 1} from the start"
    return ""


def dist_header(s) -> Text:
    st = s.steps[s.current]
    t = Text()
    t.append(s.token_label(), style="bold")
    if where(s, st):
        t.append(f" ({where(s, st)})", style=DIM)
    if st.forced:
        t.append(f"  forced {s.token_str(st.token)}*", style=FORCED)
    t.append("\n")
    if st.correct is not None:
        t.append("correct ", style=DIM)
        t.append(s.token_str(st.correct), style="bold green")
        t.append(f" (rank #{st.correct_rank}, p {num(st.correct_prob)})  ")
    t.append("entropy ", style=DIM)
    t.append(f"{num(st.entropy)}  ")
    t.append("legal ", style=DIM)
    t.append(num(st.legal_mass))
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
        t.append(f" {num(p)} ")
        t.append({"correct": "✓correct", "legal": "legal", "illegal": "illegal"}[cls], style=style)
        if tok == st.token:
            t.append(" ◀forced" if st.forced else " ◀chosen", style=FORCED if st.forced else DIM)
        out.append(Option(t, id=str(tok)))
    return out


class DistHeader(ProbeText):
    def probe_text(self, p: Probed) -> Text:
        return dist_header(p.session)


class TopK(OptionList, ShowsProbe):
    """Top-k tokens of the answer token on show; enter forces the highlighted one."""

    BINDINGS = [Binding("enter", "select", "Force", show=False,
                        tooltip="Force the highlighted node of the top-k list at the answer token on show (↑ ↓ to pick)")]

    def __init__(self, k: int = 10, **kwargs) -> None:
        super().__init__(**kwargs)
        self.k = k

    def show_probed(self, p: Probed) -> None:
        highlighted = self.highlighted
        self.clear_options()
        self.add_options(topk_options(p.session, self.k))
        if highlighted is not None and highlighted < self.option_count:
            self.highlighted = highlighted
        elif self.option_count:
            self.highlighted = 0


class DistributionPanel(Vertical, ShowsProbe):
    """The header and the top-k list; posts ``Force`` when the user picks a node to force."""

    DEFAULT_CSS = """
    DistributionPanel {
        width: 1fr;
        min-width: 44;
        border: round $secondary;
        padding: 0 1;
        #dist-head { height: auto; }
        #topk { height: 1fr; border: none; padding: 0; background: $surface; }
    }
    """

    @dataclass
    class Force(Message):
        """Force ``token`` at answer ``position`` (0-based)."""

        position: int
        token: int

    def __init__(self, top_k: int = 10, **kwargs) -> None:
        super().__init__(**kwargs)
        self.top_k = top_k

    def compose(self) -> ComposeResult:
        yield DistHeader("", id="dist-head")
        yield TopK(self.top_k, id="topk")

    def on_mount(self) -> None:
        self.border_title = "distribution (enter forces)"

    def show_probed(self, p: Probed) -> None:
        pass  # its children show the token; it keeps the probed snapshot to know the position a pick forces

    @on(OptionList.OptionSelected, "#topk")
    def _picked(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if self.probed is not None and event.option.id is not None:
            self.post_message(self.Force(self.probed.session.current, int(event.option.id)))
