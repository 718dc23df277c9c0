"""The training panel: a run's held-out greedy accuracy per answer token and its loss over the steps
(``metrics.jsonl``), as Unicode curves, with the checkpoint on show marked. Shown when the app follows a run
(``--follow``) or replays its kept checkpoints; the app hands it what it read (``show_run``), it only draws."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from rich.text import Text
from textual.widgets import Static

from .render import DIM

SPARK = "▁▂▃▄▅▆▇█"
LABEL = 5  # "   1 ", "loss "


@dataclass(frozen=True)
class RunShown:
    """What the panel draws: the evaluation records and where the app stands in the run."""

    records: list[dict] = field(default_factory=list)
    step: int | None = None  # the checkpoint on show
    total: int | None = None  # the run's --steps
    state: str | None = None  # running / stopped / finished (as watch tells them)
    kept: tuple[int, ...] = ()  # kept checkpoints' steps
    newest: int | None = None  # the run's newest checkpoint (when the one on show is older)
    decision: int | None = None  # answer position of the decision (0-based), marked in its row
    note: str | None = None  # e.g. the run directory is gone
    live: int | None = None  # where the training loop is (progress.json), shown before the first checkpoint
    first: int | None = None  # the step of the first checkpoint, while there is none


def columns(n: int, width: int, mark: int | None) -> list[int]:
    """Which of ``n`` evaluations get a column when only ``width`` fit: evenly spread, the marked one included."""
    if n <= width:
        return list(range(n))
    if width <= 1:
        return [mark if mark is not None else n - 1]
    picked = [round(i * (n - 1) / (width - 1)) for i in range(width)]
    if mark is not None and mark not in picked:
        picked[min(range(width), key=lambda i: abs(picked[i] - mark))] = mark
    return sorted(set(picked))


def _spark(values: list[float], lo: float, hi: float) -> list[str]:
    out = []
    for v in values:
        if not math.isfinite(v):
            out.append("·")
            continue
        x = 0.0 if hi <= lo else (v - lo) / (hi - lo)
        out.append(SPARK[min(len(SPARK) - 1, max(0, int(x * (len(SPARK) - 1) + 0.5)))])
    return out


def _row(t: Text, label: str, chars: list[str], at: int | None, value: str, extra: str = "", wide: int = 1) -> None:
    t.append(f"{label:>{LABEL - 1}} ", style=DIM)
    for i, c in enumerate(chars):
        t.append(c * wide, style="reverse bold" if i == at else "green")
    t.append(f" {value}")
    if extra:
        t.append(f" {extra}", style=DIM)
    t.append("\n")


def marked_index(records: list[dict], step: int | None) -> int | None:
    """The evaluation of the checkpoint on show: the one at its step, else the last one before it."""
    if step is None:
        return None
    before = [i for i, r in enumerate(records) if r["step"] <= step]
    return before[-1] if before else None


def waiting_text(first: int | None) -> str:
    return " · waiting for the first checkpoint" + (f" at step {first}" if first is not None else "")


def training_text(run: RunShown, width: int = 60) -> Text:
    t = Text()
    step = run.step if run.step is not None else run.live  # no checkpoint yet: where the loop is
    where = f"step {step if step is not None else '?'}/{run.total if run.total is not None else '?'}"
    t.append(where, style="bold")
    if run.state:
        t.append(f" · {run.state}", style={"running": "green", "stopped": "yellow"}.get(run.state, "blue"))
    if run.step is None and run.newest is None and run.note is None:
        t.append(waiting_text(run.first), style="bold yellow")
    if run.newest is not None and run.step is not None and run.newest > run.step:
        t.append(f" · newest {run.newest}", style="bold yellow")
    t.append(f" · {len(run.kept)} kept (, .)" if run.kept else " · no kept checkpoints", style=DIM)
    if run.note:
        t.append(f"\n{run.note}", style="red")
    recs = run.records
    if not recs:
        t.append("\nno evaluation in metrics.jsonl yet", style=DIM)
        return t
    mark = marked_index(recs, run.step)
    room = max(1, width - LABEL - 16)
    cols = columns(len(recs), room, mark)
    wide = max(1, min(4, room // len(cols)))  # a few evaluations: each one several columns wide
    shown = [recs[i] for i in cols]
    at = cols.index(mark) if mark is not None else None
    value_of = recs[mark] if mark is not None else recs[-1]
    t.append(f"\nheld-out greedy accuracy per answer token, steps {shown[0]['step']}–{shown[-1]['step']}"
             + (f" ({len(cols)} of {len(recs)} evaluations)" if len(cols) < len(recs) else ""), style=DIM)
    t.append("\n")
    for p in range(len(recs[0]["per_position"])):
        chars = _spark([r["per_position"][p] for r in shown], 0.0, 1.0)
        _row(t, str(p + 1), chars, at, f"{value_of['per_position'][p]:.2f}", "decision" if p == run.decision else "", wide)
    losses = [float(r["loss"]) if isinstance(r.get("loss"), (int, float)) else math.nan for r in shown]
    finite = [x for x in losses if math.isfinite(x)]
    if finite:
        loss = value_of.get("loss")
        _row(t, "loss", _spark(losses, min(finite), max(finite)), at,
             f"{loss:.3f}" if isinstance(loss, (int, float)) and math.isfinite(loss) else "—", wide=wide)
    if at is not None:
        t.append(" " * (LABEL + at * wide + (wide - 1) // 2) + "▲", style="bold")
        t.append(f" step {value_of['step']}", style=DIM)
    return t


class TrainingPanel(Static):
    """Hidden until the app has a run to show (``show_run``)."""

    DEFAULT_CSS = """
    TrainingPanel { height: auto; max-height: 14; border: round $success; padding: 0 1; display: none; }
    TrainingPanel.-shown { display: block; }
    """

    def on_mount(self) -> None:
        self.border_title = "training (, . kept checkpoints)"
        self.shown_run: RunShown | None = None

    def show_run(self, run: RunShown) -> None:
        self.shown_run = run
        self.add_class("-shown")
        self.refresh(layout=True)

    def render(self) -> Text:
        if getattr(self, "shown_run", None) is None:
            return Text("")
        return training_text(self.shown_run, self.content_size.width or 60)
