"""The graph editor: a text area validated as you type against the model, and its status line.

It posts ``Chosen`` when the text names a valid graph other than the one already asked for; graphs the
app puts in (a random one, a loaded line) go through ``show_graph`` and are not posted back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from textual.content import Content
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Label, TextArea

from .render import graph_key

SHAPE_TEXT = re.compile(r"\s*G\s*\(\s*(\d{1,3})\s*,\s*(\d{1,3})\s*\)\s*", re.IGNORECASE)  # 'G(3,4)' in the editor


def ood_for(lm, g) -> list[str]:
    """Why a graph is out of the model's distribution (its shape, or outside its topology set)."""
    t = lm.task
    return g.ood_reasons(shapes=t.topologies) if t.mixed else g.ood_reasons(t.degree, t.path_len)

def random_graph(lm, seed: int, shape: tuple[int, int] | None = None):
    """A random graph of the model's shapes (a topology set: a shape drawn from it), or of ``shape``, checked to fit
    the model (``NtpProbeError`` if not)."""
    from ...probing import check_fits  # torch: loaded by now (the model is)
    from ...task import Topologies, generate_set

    t = lm.task
    shapes = t.topologies if shape is None else Topologies.parse(shape[0], shape[1], t.nodes)
    g = next(generate_set(shapes, t.nodes, 1, seed=seed).graphs())
    check_fits(g, lm)
    return g


class GraphText(TextArea):
    """The editor's text area, with ctrl+a selecting all (as a user expects of a text box; Textual's TextArea binds
    it to "start of line", which home does too)."""

    BINDINGS = [Binding("ctrl+a", "select_all", "Select all", show=False)]


PLACEHOLDER = "type a graph: 2→1, 0→10, 9→3 … || find(9 → 7)   (e to edit, r for a random one)"


class GraphEditor(Vertical):
    DEFAULT_CSS = """
    GraphEditor {
        height: auto;
        padding: 0 1;
        #graph { height: 2; background: $boost; }
        #graph:focus { background: $surface-lighten-1; }
        #graph-status { height: 1; width: 100%; color: $text-muted; }
    }
    """

    @dataclass
    class ShapeAsked(Message):
        """The user typed 'G(3,4)': a random graph of that shape."""

        shape: tuple

    @dataclass
    class Chosen(Message):
        """The user typed a valid graph that is not the one on show."""

        graph: object

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.lm = None  # the model graphs are checked against (set once loaded)
        self._intent = None  # the graph last asked for (typed or put in)
        self._note: str | None = None  # said once beside the next valid graph that is the one put in

    @property
    def has_graph(self) -> bool:
        """Whether a valid graph has been asked for yet."""
        return self._intent is not None

    def compose(self) -> ComposeResult:
        yield GraphText("", id="graph", soft_wrap=True, compact=True, tab_behavior="focus", placeholder=PLACEHOLDER)
        yield Label("loading model…", id="graph-status")

    def on_mount(self) -> None:
        self.query_one("#graph").border_title = "graph"

    @property
    def text(self) -> str:
        return self.query_one("#graph", TextArea).text

    def set_text(self, text: str) -> None:
        self.query_one("#graph", TextArea).load_text(text)

    def say(self, text: Content) -> None:
        """Replace the status line (a ``Content``: what it holds is never read as markup)."""
        self.query_one("#graph-status", Label).update(text)

    def error(self, message: str) -> None:
        self.say(Content.assemble(("✗ " + message, "red")))

    def show_graph(self, graph, note: str | None = None) -> None:
        """Put a graph the app chose in the editor; ``note`` says where it came from."""
        from ...task import format_human

        self._intent = graph_key(graph)
        self._note = note
        self.set_text(format_human(graph))

    @on(TextArea.Changed, "#graph")
    def _changed(self, event: TextArea.Changed) -> None:
        self.validate()

    def validate(self) -> None:
        if self.lm is None:
            return
        from ...errors import GraphError
        from ...probing import parse_for_model

        if m := SHAPE_TEXT.fullmatch(self.text):  # 'G(3,4)': a random graph of that shape
            self.post_message(self.ShapeAsked((int(m.group(1)), int(m.group(2)))))
            return
        try:
            g = parse_for_model(self.text, self.lm)
        except GraphError as e:
            self.error(str(e))
            return
        ood = ood_for(self.lm, g)
        mine = graph_key(g) == self._intent
        note = f"{self._note}: " if self._note and mine else ""
        self._note = None
        shape = "G({},{}) ".format(*g.topology()) if self.lm.task.mixed else ""  # a set's model: which of its shapes
        self.say(Content.assemble(("✓", "green"), f" {note}{shape}{len(g.edges)} edges, start {g.start} → goal {g.goal}",
                               ("  ⚠ " + "; ".join(ood), "yellow") if ood else ""))
        if not mine:
            self._intent = graph_key(g)
            self.post_message(self.Chosen(g))
