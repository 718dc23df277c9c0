"""Help (built from the bindings), the model card and a one-line prompt, as modal screens."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from textual.content import Content
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.keys import format_key
from textual.screen import ModalScreen
from rich.markdown import Markdown
from textual.widgets import Input, Label, Static

HELP_INTRO = """\
# ntp-probe: the probing app

A **path-star graph**: a start node with several arms; the goal is the leaf of one arm. The model reads
the edges and the query (start, goal) and must output the path. The only hard step is the **decision
step**, the node after the start: which arm? Everything after it is "follow the child".

A model trained with **teacher forcing** (next-token) learns the *Clever Hans cheat*: "the next node
is a child of the previous one". It never learns the decision, so it guesses it (≈ 1/d right).
**Try it:** press **w** to force the first node of a wrong arm. The model happily walks down the
wrong arm at every inner step; at the last token it usually writes the goal it read in the query
instead of the arm's leaf, a second shortcut ("the last token is the goal"). On G(d,3) there is no
inner step to walk. A **reverse** model (goal→start) has no decision to guess.

Positions are named one way everywhere: **answer token k of n** (from 1, in the model's answer order) is
the token whose distribution is on show: the next one to reveal, or the last once all are. The confidence
strip numbers the tokens the same way.
"""

HELP_OUTRO = """
The verifier (`d`) is a perfect checker that samples until the answer is a valid path: search, not planning.

**Colours**: green = correct token, yellow = legal (a child of the previous node) but wrong,
red = illegal, **magenta\\*** = forced by you. The confidence strip shows the probability of each token written
(the model's own probability of a forced one); ◆ marks the decision step. A comparison model gets the forced
nodes where they stand in its own answer (one off the path has no place in a reverse answer: left out, said so).

Graph text: `2→1, 0→10, 9→3 … || find(9 → 7)` or the original line format `u,v|u,v|…/s,g`.
"""


def keys_text(binding: Binding) -> str:
    """A binding's keys as the help shows them: ``→ / n / space``."""
    return " / ".join(format_key(k.strip()) for k in binding.key.split(","))


def help_line(binding: Binding) -> str:
    return f"* `{keys_text(binding)}`: {binding.tooltip or binding.description}"


def help_markdown(bindings: Iterable[Binding]) -> str:
    """The help screen: what the app is for, then one line per binding (from the bindings themselves)."""
    return "\n".join([HELP_INTRO, "## Keys", "", *(help_line(b) for b in bindings), HELP_OUTRO])


class TextModal(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark,f1,i", "dismiss_modal", "Close")]

    def __init__(self, title: str, markdown: str) -> None:
        super().__init__()
        self.title_text = title
        self.markdown = markdown

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="modal-body") as v:
            v.border_title = self.title_text
            v.border_subtitle = "escape to close"
            # Rich's Markdown in a Static: a card with its JSON blocks shows at once (Textual's Markdown widget
            # builds a widget per block and took seconds on a busy 2-core box, so a second `i` closed it unseen)
            yield Static(Markdown(self.markdown))

    def action_dismiss_modal(self) -> None:
        self.dismiss(None)


class Prompt(ModalScreen[str | None]):
    """One line of input, validated on submit; the error shows in place."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, placeholder: str = "", value: str = "",
                 validate: Callable[[str], str | None] | None = None) -> None:
        super().__init__()
        self.title_text = title
        self.placeholder = placeholder
        self.value = value
        self.validate_fn = validate

    def compose(self) -> ComposeResult:
        with Vertical(classes="prompt-body") as v:
            v.border_title = self.title_text
            v.border_subtitle = "enter to confirm · escape to cancel"
            yield Input(value=self.value, placeholder=self.placeholder, id="prompt-input")
            yield Label("", id="prompt-error")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        value = event.value.strip()
        error = self.validate_fn(value) if self.validate_fn else None
        if error:
            self.query_one("#prompt-error", Label).update(Content(error))  # a path in it is not markup
            return
        self.dismiss(value)

    def on_input_changed(self, event: Input.Changed) -> None:
        self.query_one("#prompt-error", Label).update("")

    def action_cancel(self) -> None:
        self.dismiss(None)


__all__ = ["TextModal", "help_markdown", "keys_text", "Prompt"]
