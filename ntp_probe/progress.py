"""Rich progress for ``train``: a bar with loss and held-out accuracy, or plain lines when not a TTY."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class TrainProgress:
    def __init__(self, console: Console, quiet: bool = False):
        self.console, self.quiet = console, quiet
        self.progress: Progress | None = None
        self.task = None
        self.acc = "—"

    def __enter__(self):
        if not self.quiet:
            self.progress = Progress(
                TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
                TextColumn("acc {task.fields[acc]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                console=self.console, transient=False,
            )
            self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.__exit__(*exc)

    def __call__(self, e: dict) -> None:
        kind = e["event"]
        if kind == "start":
            self.console.print(f"training on {e['device']} ({e.get('precision', 'fp32')}), {e['params']:,} parameters, from step {e['step']}")
            if self.progress is not None:
                self.task = self.progress.add_task("train", total=e["steps"], completed=e["step"], loss="—", acc="—")
        elif kind == "step" and self.progress is not None and self.task is not None:
            self.progress.update(self.task, completed=e["step"], loss=f"{e['loss']:.4f}")
        elif kind == "eval":
            self.acc = f"{e['accuracy']:.3f}"
            if self.progress is not None and self.task is not None:
                self.progress.update(self.task, acc=self.acc)
            else:
                pp = " ".join(f"{x:.2f}" for x in e["per_position"])
                self.console.print(
                    f"step {e['step']:>6}  loss {e['loss']:.4f}  greedy {e['accuracy']:.3f}  decision "
                    f"{e['decision_accuracy']:.3f}  forced {e['forced_accuracy']:.3f}  per-position [{pp}]  {e['wall_time_s']:.1f}s",
                    highlight=False,
                )
