"""The probing app: type a graph, step through decoding, force wrong prefixes, compare models, look inside.

How it fits together:

* **Panels** (``widgets/``) are widgets with a ``probed`` reactive: a ``Probed`` snapshot (the session and what
  the worker computed about it). After each decode the app sets it on every panel, and each renders itself.
  Adding a panel is one widget module plus its line in ``compose``.
* **Keys** are ``BINDINGS`` (``keys.py``; description for the footer, tooltip for the help screen and the command palette,
  both built from them).
* **Model work** only in thread workers. An action queues an ``Op`` (``ops.py``): a call of the probing API
  (``session.then(ProbeSession.step)``…); one worker at a time drains the queue in order, each op on the
  session the previous one returned, then decodes the comparison model (``session.mirror``, cached per state),
  the attention and the logit lens, and posts a ``Decoded`` message. Sessions handed to the UI are never
  changed again, so no key press is lost or applied out of order and rendering is safe.
* The **why** panel (``y``) shows the causal probes at the token on show; the worker computes them only while it
  is on show.
* ``wait_idle()`` is the one way for tests and scripts to wait for the app.

Torch is imported in the loading worker, so the first screen shows before the model is ready.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path

from textual.content import Content
from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header
from textual.worker import get_current_worker

from ..errors import NtpProbeError
from . import compat  # noqa: F401 - Textual work-arounds (pagedown in a tiny terminal)
from .paths import expand
from .keys import KEYS
from .ops import (DEFAULT_COMPARE, DEFAULT_MODEL, STAR_COMPARE, STAR_MODEL, Decoded, ModelsLoaded, Op, OpQueue,
                  default_models, probe, shipped)
from .ops import load_models as load_specs
from .runview import RunView
from .screens.modals import TextModal, help_markdown
from .screens.prompts import force_prompt, line_prompt, open_prompt, save_prompt, split_line
from .widgets.base import Probed, ShowsProbe, probe_panels
from .widgets.compare import ComparePanel
from .widgets.decoding import DecodingPanel
from .widgets.distribution import DistributionPanel, TopK
from .widgets.editor import GraphEditor, random_graph
from .widgets.inside import InsidePanel
from .widgets.why import WhyPanel
from .widgets.training import TrainingPanel

__all__ = ["ProbeApp", "run", "shipped", "default_models", "DEFAULT_MODEL", "DEFAULT_COMPARE", "STAR_MODEL",
           "STAR_COMPARE"]

def _api():
    """The probing API's session class, imported when first needed (the app module itself imports no torch)."""
    from ..probing import ProbeSession  # torch: only once the models are loaded

    return ProbeSession


class ProbeApp(RunView, App):
    """``ntp-probe tui [MODEL ...]``."""

    CSS_PATH = Path(__file__).parent / "app.tcss"  # absolute: subclasses elsewhere find it too
    TITLE = "ntp-probe"
    SUB_TITLE = "loading model…"

    BINDINGS = KEYS  # keys.py: the footer's label, the help screen's and the palette's line

    def __init__(self, models: Sequence | None = None, *, seed: int = 0, top_k: int = 10,
                 graph: str | None = None, follow: bool = False, follow_interval: float = 1.0) -> None:
        """``models``: specs (a file, a run directory, a shipped name) or already-loaded models."""
        super().__init__()
        main, compare = default_models()
        self.specs = list(models) if models else [main, *compare]
        self.optional = set() if models else set(compare)
        self.shape_index = 0  # t: the next shape of a topology set's model
        self.graph_seed = seed
        self.initial_graph = graph
        self.top_k = top_k
        self.models: list = []
        self.compare_index: int | None = None
        self.load_error: str | None = None
        self.probed: Probed | None = None  # what the panels show
        self.queue = OpQueue()
        self._session_path = "session.json"
        self._last_line = ""
        self._loaded = False
        self._shown = 0  # ``applied`` as of the result on show
        self.why = False  # the why panel on show: the worker computes the causal probes
        self.init_run_view(follow, follow_interval)  # --follow, and replaying a run's kept checkpoints (runview.py)

    def notify(self, message: str, *, title: str = "", severity="information", timeout: float | None = None,
               markup: bool = False) -> None:
        """Textual's ``notify``, but the message is plain text unless a caller asks for markup: every notice here
        names a path, a model, a file's line or an error, and ``[/x]`` in one must not crash the app (a toast is
        drawn as markup, and only in a real terminal) nor ``[@click=app.quit]`` become a live action."""
        super().notify(str(message), title=str(title), severity=severity, timeout=timeout, markup=markup)

    # -- layout ------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        yield GraphEditor(id="top")
        yield DecodingPanel(id="decode")
        yield WhyPanel("", id="why")
        with Horizontal(id="bottom"):
            yield DistributionPanel(self.top_k, id="dist")
            with Vertical(id="side"):
                yield ComparePanel("", id="compare")
                yield InsidePanel("", id="attention")
        yield TrainingPanel(id="training")
        yield Footer()

    @property
    def panels(self) -> list[ShowsProbe]:
        """Every widget that shows the session (on the main screen, whatever modal is above it)."""
        return probe_panels(self.screen_stack[0])

    def on_mount(self) -> None:
        for sel in ("#decode", "#dist", "#side"):
            self.query_one(sel).loading = True
        self.query_one(TopK).focus()
        # paint the first screen before the worker starts importing torch (which holds the GIL for a while)
        self.call_after_refresh(self._start_loading)

    def _start_loading(self) -> None:
        self.set_timer(0.05, self.load_models)

    def on_resize(self, event) -> None:
        self.screen.set_class(event.size.width >= 140, "-wide")
        self.screen.set_class(event.size.height >= 34, "-tall")
        self.screen.set_class(event.size.height < 16, "-short")  # 40×10: the answer and the decision first

    @property
    def editor(self) -> GraphEditor:
        return self.screen_stack[0].query_one(GraphEditor)

    # -- what is on show (``probed``: the session, the mirror, attention, lens) ---------------------
    @property
    def session(self):
        return None if self.probed is None else self.probed.session

    @property
    def lm(self):
        return self.models[0] if self.models else None

    @property
    def compare_lm(self):
        return None if self.compare_index is None else self.models[self.compare_index]

    def displayed(self) -> tuple[list[int], list[bool], int] | None:
        """What the answer line shows (tokens, forced flags, cursor), for tests."""
        s = self.session
        return None if s is None else ([st.token for st in s.steps], [st.forced for st in s.steps], s.cursor)

    @property
    def applied(self) -> int:
        """Operations applied (in order) since the start."""
        return self.queue.applied

    @property
    def idle(self) -> bool:
        """Models loaded (or failed), nothing queued or running, no message in flight, the last result on show."""
        nodes = [self, *(n for screen in self.screen_stack for n in screen.walk_children(with_self=True))]
        pending = any(n.message_queue_size for n in nodes)
        return self._loaded and not self.queue.busy and not pending and self._shown == self.applied

    async def wait_idle(self, timeout: float = 60.0) -> None:
        """Wait until the app is ``idle``: the one way for tests and scripts to wait for the model work."""
        deadline = time.monotonic() + timeout
        calm = 0
        while calm < 2:  # idle on two looks in a row: messages in flight (an edit, a result) have landed
            if time.monotonic() > deadline:
                raise TimeoutError("the app did not become idle")
            await self.workers.wait_for_complete()
            await asyncio.sleep(0.01)
            calm = calm + 1 if self.idle else 0

    # -- loading -----------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="load", name="load models")
    def load_models(self) -> None:
        t0, worker = time.perf_counter(), get_current_worker()
        got = load_specs(self.specs, self.optional, lambda: worker.is_cancelled)
        if got is not None:
            self.post_message(ModelsLoaded(*got, time.perf_counter() - t0))

    @on(ModelsLoaded)
    def _models_loaded(self, msg: ModelsLoaded) -> None:
        self._loaded = True
        for sel in ("#decode", "#dist", "#side"):
            self.query_one(sel).loading = False
        for e in msg.errors:
            self.notify(e, title="model", severity="error", timeout=10)
        self.models = msg.models
        if not self.models and self.run_waiting:  # --follow before the run's first checkpoint: runview.py says so
            self.load_error = "waiting for the run's first checkpoint"
            return
        if not self.models:
            self.load_error = "; ".join(msg.errors) or "no model"
            self.sub_title = "no model loaded"
            hint = "run  ntp-probe tui PATH  with a .safetensors file, a run directory or a shipped model name"
            self.editor.error(self.load_error)
            self.query_one("#story").update(Content.assemble(("No model loaded.", "red"), f" {hint}"))
            return
        self._set_main(self.lm)
        self.editor.lm = self.lm
        self.first_graph()

    def first_graph(self) -> None:
        """Once the models are loaded: the graph given (``graph=``), else a random one. (The tour shows its first step.)"""
        if self.initial_graph:
            self.editor.set_text(self.initial_graph)
            self.editor.validate()
        else:
            self.new_random_graph(advance=False)

    def _set_main(self, lm) -> None:
        """``lm`` becomes the probed model; the next one is shown beside it."""
        self.models = [lm] + [m for m in self.models if m is not lm]
        self.compare_index = 1 if len(self.models) > 1 else None
        self.sub_title = f"{lm.display_name} · {lm.objective.name} · {lm.task.label()}"

    # -- the operation queue -----------------------------------------------------------------------
    def _have_model(self) -> bool:
        if self.lm is None:
            self.notify(self.load_error or "the model is still loading…", severity="warning")
        return self.lm is not None

    def submit(self, op: Op) -> bool:
        """Queue an operation; one worker applies the queue in order."""
        if not self._have_model():
            return False
        if op.start is None and not self.editor.has_graph:
            self.notify("no valid graph yet: type one (e) or press r", severity="warning")
            return False
        if self.queue.push(op):
            self.run_worker(self._drain, thread=True, exclusive=True, group="decode", name="decode")
        return True

    def change(self, method: Callable, *args, **kwargs) -> bool:
        """Queue ``session.then(method, *args)``: a ``ProbeSession`` method applied to a copy of the session."""
        return self.submit(Op(method, args, kwargs))

    def _drain(self) -> None:
        worker, t0 = get_current_worker(), time.perf_counter()
        d = self.queue.drain(lambda: worker.is_cancelled, lambda m: self.call_from_thread(self.notify, m, title="session"))
        probed = None if d.session is None else probe(d.session, self.compare_lm, self.models, t0, self.why)
        self.post_message(Decoded(d.applied, probed, d.errors, d.loaded))

    @on(Decoded)
    def _decoded(self, msg: Decoded) -> None:
        for e in msg.errors:
            self.notify(e, severity="error", timeout=8)
            self.editor.error(e)
        if msg.seq < self._shown:
            return
        self._shown = msg.seq
        if msg.probed is None:
            return
        s = msg.probed.session
        if s.lm is not self.lm:  # a saved session for another model: it becomes the main one
            self._set_main(s.lm)
            self.editor.lm = s.lm
        if msg.loaded is not None:
            self.editor.show_graph(s.graph, note=f"loaded {msg.loaded}")
        self.show_probed(msg.probed)

    def show_probed(self, probed: Probed) -> None:
        self.probed = probed
        for panel in self.panels:
            panel.probed = probed

    # -- the graph ----------------------------------------------------------------------------------
    def submit_graph(self, g, loads: str | None = None) -> None:
        """Decode a new graph, the whole answer revealed (the session's strategy kept)."""
        ProbeSession = _api()
        self.submit(Op(ProbeSession.set_graph, (g,), {"cursor": None}, start=partial(ProbeSession, self.lm, g),
                       loads=loads))

    @on(GraphEditor.Chosen)
    def _graph_typed(self, msg: GraphEditor.Chosen) -> None:
        self.submit_graph(msg.graph)

    def new_random_graph(self, advance: bool = True, shape: tuple[int, int] | None = None) -> None:
        """A random graph of the model's shapes (a topology set: a shape drawn from it), or of ``shape``."""
        if advance:
            self.graph_seed += 1
        try:
            g = random_graph(self.lm, self.graph_seed, shape)
        except NtpProbeError as e:
            self.editor.error(f"G{shape}: {e}")
            return
        self.editor.show_graph(g, note="random G({},{}) graph #{}".format(*g.topology(), self.graph_seed))
        self.submit_graph(g)

    @on(GraphEditor.ShapeAsked)
    def _shape_asked(self, msg: GraphEditor.ShapeAsked) -> None:
        self.new_random_graph(shape=msg.shape)

    def action_next_shape(self) -> None:
        """A random graph of the next shape of the model's set (one shape: a new graph of it)."""
        if self.lm is None:
            return
        shapes = self.lm.task.topologies.shapes
        self.shape_index = (self.shape_index + 1) % len(shapes)
        self.new_random_graph(shape=shapes[self.shape_index])

    # -- actions ------------------------------------------------------------------------------------
    def action_step(self) -> None:
        self.change(_api().step)

    def action_back(self) -> None:
        self.change(_api().back)

    def action_run_to_end(self) -> None:
        self.change(_api().run_to_end)

    def action_reset(self) -> None:
        self.change(_api().reset)

    def action_wrong_arm(self) -> None:
        self.change(_api().force_wrong_arm, required=True)

    def action_unforce(self) -> None:
        self.change(_api().undo_force)

    def action_clear_forced(self) -> None:
        self.change(_api().clear_forced)

    def action_next_strategy(self) -> None:
        """d: relative to the queue's session, so fast presses each advance once."""
        self.change(_api().next_strategy)

    def action_random_graph(self) -> None:
        if self._have_model():
            self.new_random_graph()

    @on(DistributionPanel.Force)
    def _force_picked(self, msg: DistributionPanel.Force) -> None:
        self.change(_api().force, msg.position, msg.token)

    def action_force_typed(self) -> None:
        s = self.session
        if s is None:
            return
        pos = s.current

        def done(value: str | None) -> None:
            if value is not None:
                self.change(_api().force, pos, int(value.strip()))

        self.push_screen(force_prompt(s.token_label(pos), self.lm.task.nodes), done)

    def action_edit_graph(self) -> None:
        self.query_one("#graph").focus()

    def action_leave_editor(self) -> None:
        self.query_one(TopK).focus()

    def action_open_line(self) -> None:
        if self.lm is None:
            return

        def done(value: str | None) -> None:
            if value is None:
                return
            self._last_line = value
            path, line = split_line(value)
            path = str(expand(path))
            self.submit(Op(_api().set_graph_from_file, (path, int(line)), loads=f"{path}:{int(line)}"))

        self.push_screen(line_prompt(self._last_line), done)

    def action_compare_next(self) -> None:
        if len(self.models) < 2:
            self.notify("only one model loaded: pass two, e.g. ntp-probe tui A B", severity="warning")
            return
        order = list(range(1, len(self.models))) + [None]
        self.compare_index = order[(order.index(self.compare_index) + 1) % len(order)]
        self.submit(Op())  # no change: the worker decodes the new comparison model

    def action_head(self, delta: int) -> None:
        self.query_one(InsidePanel).cycle_head(delta)

    def action_toggle_lens(self) -> None:
        self.query_one(InsidePanel).toggle_lens()

    def action_toggle_why(self) -> None:
        """y: the why panel in place of the distribution and side panels, computed by the worker (and back)."""
        self.why = not self.why
        self.query_one(WhyPanel).display = self.why
        self.query_one("#bottom").display = not self.why
        # the top-k list (focused) is hidden with the bottom row: keep the focus off the graph editor, or a modal
        # closed over the why panel hands it there and the next keys type into the graph
        if self.why:
            self.query_one(WhyPanel).focus()
        else:
            self.query_one(TopK).focus()
        if self.why and self.session is not None:
            self.submit(Op())  # no change: the worker adds the causal probes

    def action_save_session(self) -> None:
        if self.session is None:
            self.notify("nothing to save yet", severity="warning")
            return

        def done(value: str | None) -> None:
            if value is not None:
                self._session_path = value
                path = str(expand(value))
                self.submit(Op(effect=partial(_api().save, path=path), done=f"session saved to {path}"))

        self.push_screen(save_prompt(self._session_path), done)

    def action_open_session(self) -> None:
        if not self._have_model():
            return

        def done(value: str | None) -> None:
            if value is not None:
                from ..probing import load_session

                self._session_path = value
                path = str(expand(value))
                self.submit(Op(start=partial(load_session, path, candidates=list(self.models)), loads=f"session {path}"))

        self.push_screen(open_prompt(self._session_path), done)

    def action_card(self) -> None:
        if self._have_model():
            from ..cards import model_card

            self.push_screen(TextModal("model card", model_card(self.lm)))

    def key_bindings(self) -> list[Binding]:
        """Every key the app answers, in help order: the app's bindings, then the top-k list's."""
        return [*self.BINDINGS, *TopK.BINDINGS]

    def action_help(self) -> None:
        palette = Binding(self.COMMAND_PALETTE_BINDING, "command_palette", "Palette", tooltip="Command palette")
        self.push_screen(TextModal("help", help_markdown([*self.key_bindings(), palette])))

    def action_screenshot(self) -> None:
        """An SVG in the current directory; a directory that cannot be written is a message, not a crash."""
        where = "the current directory"
        try:
            where = os.getcwd()  # gone if the directory was deleted under us
            path = self.save_screenshot(path=where)
        except OSError as e:
            self.notify(f"cannot save a screenshot in {where}: {e.strerror or e}", title="screenshot",
                        severity="error", timeout=10)
            return
        self.notify(f"screenshot saved to {path}", title="screenshot")

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The palette: the standard commands, then one per binding ("title: help" from its tooltip)."""
        yield from super().get_system_commands(screen)
        for b in self.BINDINGS:
            if b.action in ("quit", "leave_editor"):
                continue
            title, _, help_text = (b.tooltip or b.description).partition(": ")
            yield SystemCommand(title, help_text or f"key {b.key}", partial(self.run_action, b.action))


def run(models: Sequence | None = None) -> None:
    ProbeApp(models).run()
