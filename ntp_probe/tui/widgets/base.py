"""What every panel shares: the ``Probed`` snapshot the worker hands over, and the ``probed`` reactive.

A panel is a widget with the ``ShowsProbe`` mixin (a ``probed`` reactive); after each decode the app sets it
on every such widget of its screen (``probe_panels``), nested ones included, and each renders itself in
``show_probed``. A snapshot is never changed after it is handed over, so rendering on the main thread is
safe while the model works.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.dom import DOMNode
from textual.reactive import reactive
from textual.widgets import Static


@dataclass(frozen=True)
class Probed:
    """A decoded session and what the worker computed about it, all for the same moment."""

    session: object  # ProbeSession (typed loosely: this module must not import torch)
    mirror: object | None = None  # the same graph and forced tokens on the comparison model
    mirror_error: str | None = None
    compare_name: str | None = None  # the comparison model's name, None when there is none
    attention: object | None = None  # AttentionView at the token on show, None where not available
    lens: list[dict] | None = None  # logit lens rows at the token on show
    seconds: float = 0.0  # how long the worker took
    why: dict | None = None  # the causal probes at the token on show (``patching.patch``'s result), when asked
    why_error: str | None = None  # why they could not run (a graph with one arm…)


class ShowsProbe:
    """Mixin for a widget that renders a ``Probed`` snapshot (put it after the widget class:
    ``class Panel(Static, ShowsProbe)``). Subclasses implement ``show_probed``."""

    probed: reactive[Probed | None] = reactive(None, always_update=True, init=False)

    def watch_probed(self, probed: Probed | None) -> None:
        if probed is not None:
            self.show_probed(probed)

    def show_probed(self, probed: Probed) -> None:
        raise NotImplementedError


def probe_panels(root: DOMNode) -> list[ShowsProbe]:
    """The widgets under ``root`` that show the session."""
    return [w for w in root.walk_children() if isinstance(w, ShowsProbe)]


class ProbeText(Static, ShowsProbe):
    """A text panel: ``probe_text(probed)`` is what it shows."""

    def show_probed(self, probed: Probed) -> None:
        self.update(self.probe_text(probed))

    def probe_text(self, probed: Probed) -> Text:
        raise NotImplementedError
