"""The app's view of a training run: follow it as it trains (``ntp-probe tui RUN --follow``) and replay the
checkpoints it kept (``,`` and ``.``), the same graph, forced tokens and cursor re-probed on each checkpoint.

A mixin of ``ProbeApp`` (its class line, two bindings and the training panel's compose line are all ``app.py``
knows of it). The engine side is ``ntp_probe/follow.py``. How it runs:

* a timer makes the cheap look (``follow.stamps``: a few ``stat`` calls) every ``--interval`` seconds; when
  something changed, a thread worker makes the real one (``follow.look``: loads the new checkpoint, re-reads
  ``metrics.jsonl``, tells running/stopped/finished) and posts ``RunLooked``. No lock is taken.
* a new (or replayed) checkpoint goes through the app's operation queue like any key press: ``SwitchModel``
  re-probes the session on it (``ProbeSession.mirror``), so it is applied in order with the user's changes.
* a checkpoint that cannot be read is skipped with a notice (the app stays on the last good one); a run
  directory that disappears is a notice, and following stops.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from textual.message import Message
from textual.worker import get_current_worker

from ..errors import NtpProbeError
from .ops import Op
from .widgets.training import RunShown, TrainingPanel


@dataclass
class RunLooked(Message):
    look: object  # follow.Look


@dataclass
class CheckpointLoaded(Message):
    model: object | None
    error: str | None
    step: int


@dataclass(frozen=True)
class SwitchModel(Op):
    """Re-probe the session on another checkpoint: the same graph, forced tokens, cursor and decoding."""

    lm: object = None

    def run(self, s):
        if s is None:
            raise NtpProbeError("no graph yet")
        return s.mirror(self.lm)


class RunView:
    """Mixin for ``ProbeApp``: call ``init_run_view`` at the end of ``__init__``."""

    def init_run_view(self, follow: bool = False, interval: float = 1.0) -> None:
        self.follow = follow
        self.follow_interval = interval
        self.run_dir: Path | None = Path(str(self.specs[0])) if follow and self.specs else None
        self.run_records: list[dict] = []
        self.run_state: str | None = None
        self.run_total: int | None = None
        self.run_kept: dict[int, Path] = {}
        self.run_note: str | None = None
        self._newest = None  # the run's newest checkpoint loaded (its model.safetensors)
        self._live = True  # following the newest (a replayed older step stays put while the run goes on)
        self._target: int | None = None  # the step a replay key asked for, until it is on show
        self._stamps: dict | None = None
        self._looking = False
        self._follow_timer = None
        self._run_refs: dict[int, weakref.ref] = {}  # the run's checkpoints the app has loaded
        self._compare_keep = None
        self.run_live: int | None = None  # where the training loop is (progress.json), before the first checkpoint
        self.run_first: int | None = None  # the step its first checkpoint is written at
        self.run_waiting = False  # --follow before the run's first checkpoint: nothing of the run to load yet
        if self.run_dir is not None and not (self.run_dir / "model.safetensors").exists():
            self.specs = self.specs[1:]  # loaded when train writes it (the first look), not an error now
            self.run_waiting = True

    # -- what is on show ---------------------------------------------------------------------------
    def _of_run(self, lm) -> bool:
        ref = self._run_refs.get(id(lm))
        return ref is not None and ref() is lm

    def _adopt(self, lm) -> None:
        self._run_refs = {k: r for k, r in self._run_refs.items() if r() is not None}
        self._run_refs[id(lm)] = weakref.ref(lm)

    @property
    def shown_step(self) -> int | None:
        """The training step of the checkpoint on show (None: no run, or no checkpoint yet)."""
        from ..follow import checkpoint_step  # torch-free

        return checkpoint_step(self.lm)[0] if self.lm is not None and self._of_run(self.lm) else None

    def _refresh_run(self) -> None:
        """The training panel and the header's step N/TOTAL · state."""
        if self.run_dir is None:
            return
        from ..follow import checkpoint_step
        from .widgets.training import waiting_text

        step, total = checkpoint_step(self.lm) if self.lm is not None and self._of_run(self.lm) else (None, None)
        total = total if total is not None else self.run_total
        newest = checkpoint_step(self._newest)[0] if self._newest is not None else None
        s = self.session
        shown = RunShown(self.run_records, step, total, self.run_state, tuple(self.run_kept), newest,
                         None if s is None else s.decision_position, self.run_note, self.run_live, self.run_first)
        try:
            self.screen_stack[0].query_one(TrainingPanel).show_run(shown)
        except Exception:  # noqa: BLE001 - a layout without the panel: the header still tells the step
            pass
        if self.lm is not None and step is not None:
            where = f"step {step}/{total if total is not None else '?'}" + (f" · {self.run_state}" if self.run_state else "")
            self.sub_title = f"{self.lm.display_name} · {self.lm.objective.name} · {self.lm.task.label()} · {where}"
        elif self.follow and newest is None and self.run_note is None:  # before the run's first checkpoint
            live = self.run_live if self.run_live is not None else "?"
            where = (f"step {live}/{total if total is not None else '?'}" + (f" · {self.run_state}" if self.run_state else "")
                     + waiting_text(self.run_first))
            self.sub_title = f"{self.run_dir.name} · {where}" if self.lm is None else (
                f"{self.lm.display_name} · {self.lm.task.label()} · {self.run_dir.name}: {where}")
            if self.lm is None:
                from rich.text import Text

                story = Text(f"Following {self.run_dir}: {where.replace(' · ', ', ')}. ")
                story.append("The app loads it when train writes it.", style="dim")
                try:
                    self.query_one("#story").update(story)  # Text: the path is never read as markup
                except Exception:  # noqa: BLE001
                    pass

    # -- starting ------------------------------------------------------------------------------------
    def on_models_loaded(self, msg) -> None:
        """After the app's own handler: is the main model a run's checkpoint (with --follow, or with kept ones)?"""
        from ..runfiles import kept_files, run_of

        path = getattr(self.lm, "path", None)
        run = run_of(path) if path is not None else None
        if self.run_dir is None and run is not None and kept_files(run):
            self.run_dir = run
        if self.run_dir is None:
            return
        if self.lm is not None and run is not None and _same(run, self.run_dir):
            self._adopt(self.lm)
            if path.name == "model.safetensors":
                self._newest = self.lm
        if self.follow:
            if self.shown_step is None:
                self.notify(f"following {self.run_dir}: waiting for its first checkpoint", title="run", timeout=8)
            self._follow_timer = self.set_interval(self.follow_interval, self._follow_tick, name="follow the run")
        self._start_look()
        self._refresh_run()

    # -- looking at the run ---------------------------------------------------------------------------
    def _follow_tick(self) -> None:
        """The cheap look, on the main thread: a few stat calls."""
        if self._looking or self.run_dir is None:
            return
        from ..follow import stamps

        if stamps(self.run_dir) != self._stamps:
            self._start_look()

    def _start_look(self) -> None:
        from ..follow import stamps

        after = stamps(self.run_dir)
        before, self._stamps = self._stamps, after
        if before is None and not self.follow:  # replaying: the checkpoint on show is loaded, read the rest
            before = {**after, "metrics": None}
        self._looking = True
        self.run_worker(partial(self._look, before, after), thread=True, group="run", name="look at the run")

    def _look(self, before: dict | None, after: dict) -> None:
        from ..follow import Look, look

        try:
            found = look(self.run_dir, before, after)
        except Exception as e:  # noqa: BLE001 - never a crash: the run is someone else's files
            found = Look(error=f"{self.run_dir}: cannot look at the run ({e.__class__.__name__}: {e})")
        self.post_message(RunLooked(found))

    def on_run_looked(self, msg: RunLooked) -> None:
        from ..follow import checkpoint_step

        self._looking = False
        found = msg.look
        for w in found.warnings:
            self.notify(w, title="run", severity="warning", timeout=8)
        if found.gone:
            if self.run_note is None:
                here = self.shown_step
                self.notify(f"{found.gone}; the app stays on step {here if here is not None else '—'}", title="run",
                            severity="error", timeout=15)
            self.run_note = f"{found.gone} (stopped following)"
            if self._follow_timer is not None:
                self._follow_timer.stop()
            self.run_state = None
            self._refresh_run()
            return
        if found.status is not None:
            self.run_state, self.run_total = found.status.get("state"), found.status.get("steps")
            self.run_live = found.status.get("step")
        self.run_first = found.first_checkpoint
        if found.metrics is not None:
            self.run_records = found.metrics
        self.run_kept = found.kept
        if found.error:
            here = self.shown_step
            self.notify(f"skipped a checkpoint that cannot be read ({found.error}); staying on step "
                        f"{here if here is not None else '—'}", title="run", severity="warning", timeout=10)
        if found.model is not None:
            self._adopt(found.model)
            self._newest = found.model
            if self._live and checkpoint_step(found.model)[0] != self.shown_step:
                self._show_checkpoint(found.model)
        self._refresh_run()

    # -- putting a checkpoint on show ----------------------------------------------------------------
    def _show_checkpoint(self, lm) -> None:
        """``lm`` (a checkpoint of the run) becomes the probed model, the session re-probed on it in queue order."""
        from .ops import ModelsLoaded

        if self.lm is None:  # the run's first checkpoint: start as if it had been there from the start
            self._models_loaded(ModelsLoaded([lm, *self.models], [], 0.0))
            return
        if self.session is None and not self.queue.busy:
            self._replace_main(lm, self.compare_lm)
            self.editor.lm = lm
            self._refresh_run()
            return
        self._compare_keep = self.compare_lm
        if self.queue.push(SwitchModel(lm=lm)):  # not submit(): a graph being edited must not hold the step back
            self.run_worker(self._drain, thread=True, exclusive=True, group="decode", name="decode")

    def _replace_main(self, lm, compare) -> None:
        """``lm`` first, the run's other checkpoints dropped, the comparison model kept."""
        self.models = [lm] + [m for m in self.models if m is not lm and not self._of_run(m)]
        idx = next((i for i, m in enumerate(self.models) if i > 0 and m is compare), None)
        self.compare_index = idx
        self.sub_title = f"{lm.display_name} · {lm.objective.name} · {lm.task.label()}"

    def on_decoded(self, msg) -> None:
        """After the app's own handler, which makes a session's new model the main one: drop the old checkpoint."""
        if self.run_dir is None:
            return
        if self.lm is not None and self._of_run(self.lm):
            if any(self._of_run(m) for m in self.models[1:]):
                self._replace_main(self.lm, self._compare_keep)
            if self.shown_step == self._target:
                self._target = None
        self._refresh_run()

    # -- replay: , and . -----------------------------------------------------------------------------
    def action_prev_checkpoint(self) -> None:
        self._step_checkpoint(-1)

    def action_next_checkpoint(self) -> None:
        self._step_checkpoint(1)

    def _step_checkpoint(self, direction: int) -> None:
        from ..follow import checkpoint_step

        if self.lm is None:
            self.notify(self.load_error or "the model is still loading…", severity="warning")
            return
        if self.run_dir is None:
            self.notify("no run to replay: open a run directory that kept checkpoints (train --keep-checkpoints), "
                        "e.g. ntp-probe tui RUN or RUN@STEP, or follow one with --follow", severity="warning")
            return
        here = self._target if self._target is not None else self.shown_step
        points: dict[int, object] = dict(self.run_kept)
        newest = checkpoint_step(self._newest)[0] if self._newest is not None else None
        if newest is not None:
            points[newest] = self._newest  # loaded already
        if here is None:
            here = -1 if direction > 0 else 1 << 62
        later = sorted(s for s in points if (s > here if direction > 0 else s < here))
        if not later:
            if not self.run_kept:
                self.notify(f"{self.run_dir} kept no checkpoints (train it with --keep-checkpoints)", severity="warning")
            else:
                self.notify(f"step {here} is the {'newest' if direction > 0 else 'first'} checkpoint", timeout=3)
            return
        step = later[0] if direction > 0 else later[-1]
        self._target = step
        self._live = step == newest
        target = points[step]
        if isinstance(target, Path):
            self.run_worker(partial(self._load_kept, target, step), thread=True, exclusive=True, group="replay",
                            name="load a kept checkpoint")
        else:
            self._show_checkpoint(target)

    def _load_kept(self, path: Path, step: int) -> None:
        from ..follow import load_checkpoint

        lm = error = None
        try:
            lm = load_checkpoint(path, f"{self.run_dir.name}@{step}")
        except NtpProbeError as e:
            error = str(e)
        except Exception as e:  # noqa: BLE001
            error = f"{path}: cannot load ({e.__class__.__name__}: {e})"
        if not get_current_worker().is_cancelled:
            self.post_message(CheckpointLoaded(lm, error, step))

    def on_checkpoint_loaded(self, msg: CheckpointLoaded) -> None:
        if msg.error:
            self._target = None
            here = self.shown_step
            self.notify(f"skipped step {msg.step}: {msg.error}; staying on step {here if here is not None else '—'}",
                        title="run", severity="warning", timeout=10)
            return
        if msg.step != self._target:
            return  # a later key press asked for another step
        self._adopt(msg.model)
        self._show_checkpoint(msg.model)


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False
