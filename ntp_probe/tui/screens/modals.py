"""Help, model card and a one-line prompt, as modal screens."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Markdown, Static

HELP = """\
# ntp-probe: the probing app

A **path-star graph**: a start node with several arms; the goal is the leaf of one arm. The model reads
the edges and the query (start, goal) and must output the path. The only hard step is the **decision
step**, the node after the start: which arm? Everything after it is "follow the child".

A model trained with **teacher forcing** (next-token) learns the *Clever Hans cheat*: "the next node
is a child of the previous one". It never learns the decision, so it guesses it (≈ 1/d right).
**Try it:** press **w** to force the first node of a wrong arm. The model happily walks down the
wrong arm to the wrong leaf. A **reverse** model (goal→start) has no decision to guess.

* `→ / n / space`: step forward one token
* `← / p`: step back
* `g`: run to the end
* `0`: reset (nothing decoded yet)
* **`w`**: **force the first node of another arm (Clever Hans demo)**
* `↑ ↓ enter`: pick a node from the top-k list and force it here
* `f`: force a node by typing its id
* `u / x`: undo the last forced token / clear all
* `r`: a fresh random graph of the model's topology
* `e`: edit the graph text (escape to leave); errors show under it as you type
* `o`: load a graph from a data file (`path:line`)
* `c`: compare with the next model (side by side)
* `[ ]`: previous / next attention layer·head
* `l`: logit lens: the current step read out of every layer (p of the correct node vs the best wrong one)
* `d`: decoding strategy: greedy → sampling → beam search → verifier (a perfect checker that samples until
  the answer is a valid path: search, not planning)
* `ctrl+s / ctrl+o`: save / open a session (model, graph, forced tokens, decoding) as JSON
* `i`: the model's card
* `s`: save a screenshot (SVG)
* `ctrl+p`: command palette
* `? / f1`: this help
* `ctrl+q`: quit

**Colours**: green = correct token, yellow = legal (a child of the previous node) but wrong,
red = illegal, **magenta\\*** = forced by you. The confidence strip shows each step's top probability;
◆ marks the decision step.

Graph text: `2→1, 0→10, 9→3 … || find(9 → 7)` or the original line format `u,v|u,v|…/s,g`.
"""


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
            yield Markdown(self.markdown)

    def action_dismiss_modal(self) -> None:
        self.dismiss(None)


def help_screen() -> TextModal:
    return TextModal("help", HELP)


def _fmt(x, digits: int = 3) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    if isinstance(x, list):
        return " ".join(_fmt(v, 2) for v in x)
    return str(x)


def card_markdown(lm) -> str:
    meta = lm.meta
    cfg = meta.get("config", {})
    tr = meta.get("training") or {}
    m = meta.get("metrics") or {}
    card = meta.get("card") or {}
    lines = [
        f"# {lm.display_name}",
        "",
        f"* **objective**: {lm.objective.name} ({lm.objective.answer_order} answer order)",
        f"* **topology**: {lm.task.label()}: {lm.task.degree} arms, paths of {lm.task.path_len} nodes, "
        f"ids 0..{lm.task.nodes - 1}",
        f"* **network**: {cfg.get('arch', 'gpt')}, {cfg.get('n_layer')} layers, {cfg.get('n_head')} heads, "
        f"width {cfg.get('n_embd')}, context {cfg.get('block_size')}",
        f"* **file**: `{lm.path}`",
        "",
        "## Training",
        "",
        "| | |",
        "|---|---|",
    ]
    for k in ("steps", "target_steps", "wall_time_s", "device", "tokens_seen", "command"):
        if k in tr:
            lines.append(f"| {k} | {_fmt(tr[k])} |")
    lines += ["", "## Figures", "", "| metric | value |", "|---|---|"]
    for k, v in {**m, **card}.items():
        if isinstance(v, (int, float, list, str)) or v is None:
            lines.append(f"| {k} | {_fmt(v)} |")
    if lm.path is not None:
        readme = Path(lm.path).parent / "README.md"
        if readme.is_file():
            try:
                lines += ["", "---", "", readme.read_text()]
            except OSError:
                pass
    return "\n".join(lines)


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
            self.query_one("#prompt-error", Label).update(error)
            return
        self.dismiss(value)

    def on_input_changed(self, event: Input.Changed) -> None:
        self.query_one("#prompt-error", Label).update("")

    def action_cancel(self) -> None:
        self.dismiss(None)


__all__ = ["TextModal", "help_screen", "card_markdown", "Prompt", "Static"]
