"""The comparison panel: the same graph and forced tokens decoded by another model."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text

from .base import ProbeText, Probed
from .render import DIM, answer, strip


def compare_text(m, error: str | None, name: str | None, hidden: Sequence[str] = ()) -> Text:
    """``hidden``: the models loaded beside the main one while none is on show (``c`` cycled past the last)."""
    t = Text()
    if name is None:
        if hidden:
            t.append(f"comparison hidden: c shows {hidden[0]}", style=DIM)
        else:
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
    for note in m.notes:
        t.append(f"\n{note}", style=DIM)
    return t


class ComparePanel(ProbeText):
    DEFAULT_CSS = """
    ComparePanel { height: 1fr; border: round $accent; padding: 0 1; overflow-y: auto; }
    """

    def on_mount(self) -> None:
        self.border_title = "compare (c)"

    def probe_text(self, p: Probed) -> Text:
        others = [m.display_name for m in getattr(self.app, "models", [])[1:]]
        return compare_text(p.mirror, p.mirror_error, p.compare_name, others)
