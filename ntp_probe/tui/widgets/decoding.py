"""The decoding panel: the star with the decoded path, the answer line, the confidence strip and the story."""

from __future__ import annotations

from textual.content import Content
from textual.app import ComposeResult
from textual.containers import Vertical

from .base import ProbeText, Probed, ShowsProbe
from .render import answer, star, story, strip


class StarView(ProbeText):
    def probe_text(self, p: Probed):
        return star(p.session)


class AnswerLine(ProbeText):
    def probe_text(self, p: Probed):
        return answer(p.session)


class ConfidenceStrip(ProbeText):
    def probe_text(self, p: Probed):
        return strip(p.session)


class StoryLine(ProbeText):
    def probe_text(self, p: Probed):
        return story(p.session)


class DecodingPanel(Vertical, ShowsProbe):
    """The main model's decode; its title names the model, the answer token on show and the strategy."""

    DEFAULT_CSS = """
    DecodingPanel {
        height: auto;
        min-height: 7;
        border: round $primary;
        padding: 0 1;
        #star { height: auto; }
        #story { height: auto; max-height: 3; }
    }
    """

    def compose(self) -> ComposeResult:
        yield StarView("", id="star")
        yield AnswerLine("", id="answer")
        yield ConfidenceStrip("", id="strip")
        yield StoryLine("", id="story")

    def on_mount(self) -> None:
        self.border_title = "decoding"

    def show_probed(self, p: Probed) -> None:
        s = p.session
        how = "" if s.strategy.kind == "greedy" else f" · {s.strategy.label()}" + (
            f": {s.tries} tries" if s.strategy.kind == "verify" else "")
        # Content, not a str: a model's name (a path) in a border title is never read as markup
        self.border_title = Content(f"decoding · {s.lm.display_name} ({s.objective.name}) · {s.token_label()}{how}")
