"""The probing app: type a graph, step through decoding, force wrong prefixes, compare models, look inside.

Threading: all model work (loading, decoding, re-scoring, attention, mirroring) runs in thread workers.
Actions only enqueue *operations* (``("step",)``, ``("force", pos, tok)``, …); one worker at a time drains
the queue in order, applying each to a copy of the session through the probing API, and posts the final
session in a ``Decoded`` message; the handler renders it. Sessions handed to the UI are never mutated
again, so rendering on the main thread is safe, and no key press is lost or applied out of order.

Torch is imported in the loading worker, so the first screen shows before the model is ready.
"""

from __future__ import annotations

import copy
import os
import re
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from pathlib import Path

from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Label, OptionList, Static, TextArea
from textual.worker import get_current_worker

from ..errors import NtpProbeError
from .screens.modals import Prompt, TextModal, card_markdown, help_screen
from .widgets.panels import TopK, attention_text, compare_text, dist_header, layers_text
from .widgets.render import answer, graph_key, star, story, strip

DEFAULT_MODEL = "g2-5-next-token"
DEFAULT_COMPARE = ("g2-5-reverse", "g2-5-teacherless")


class ModelsLoaded(Message):
    def __init__(self, models: list, errors: list[str], seconds: float) -> None:
        super().__init__()
        self.models = models
        self.errors = errors
        self.seconds = seconds


class Decoded(Message):
    def __init__(self, seq: int, session, mirror=None, mirror_error: str | None = None, attention=None,
                 layers: list[dict] | None = None, errors: list[str] = (), loaded: tuple[str, str] | None = None,
                 seconds: float = 0.0) -> None:
        super().__init__()
        self.seq = seq
        self.session = session
        self.mirror = mirror
        self.mirror_error = mirror_error
        self.attention = attention
        self.layers = layers
        self.errors = list(errors)
        self.loaded = loaded  # (graph text for the editor, what was loaded) after a load
        self.seconds = seconds


def clone(s):
    """A copy of a session that the API may change without touching the original (steps are rebuilt, not mutated)."""
    c = copy.copy(s)
    c.forced = dict(s.forced)
    c.steps = list(s.steps)
    return c


class ProbeApp(App):
    """``ntp-probe tui [MODEL ...]``."""

    CSS_PATH = "app.tcss"
    TITLE = "ntp-probe"
    SUB_TITLE = "loading model…"

    BINDINGS = [
        Binding("right,n,space", "step", "Step"),
        Binding("left,p", "back", "Back"),
        Binding("g", "run_to_end", "To end", show=False),
        Binding("0", "reset", "Reset", show=False),
        Binding("w", "wrong_arm", "Wrong arm!", key_display="w"),
        Binding("f", "force_typed", "Force id", show=False),
        Binding("u", "unforce", "Undo"),
        Binding("x", "clear_forced", "Clear forced", show=False),
        Binding("r", "random_graph", "Random"),
        Binding("e", "edit_graph", "Edit"),
        Binding("escape", "leave_editor", "Leave editor", show=False),
        Binding("o", "open_line", "Open line", show=False),
        Binding("c", "compare_next", "Compare", show=False),
        Binding("right_square_bracket", "head(1)", "Next head", show=False),
        Binding("left_square_bracket", "head(-1)", "Prev head", show=False),
        Binding("i", "card", "Card", show=False),
        Binding("d", "next_strategy", "Decoding", show=False),
        Binding("l", "toggle_lens", "Logit lens", show=False),
        Binding("question_mark,f1", "help", "Help"),
        Binding("ctrl+s", "save_session", "Save session", show=False),
        Binding("ctrl+o", "open_session", "Open session", show=False),
        Binding("s", "screenshot", "Screenshot", show=False),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    def __init__(self, models: Sequence | None = None, *, seed: int = 0, top_k: int = 10,
                 graph: str | None = None) -> None:
        """``models``: specs (a file, a run directory, a shipped name) or already-loaded models."""
        super().__init__()
        self.specs = list(models) if models else [DEFAULT_MODEL]
        self.optional = set() if models else set(DEFAULT_COMPARE)
        if not models:
            self.specs += list(DEFAULT_COMPARE)
        self.graph_seed = seed
        self.initial_graph = graph
        self.top_k = top_k
        self.models: list = []
        self.compare_index: int | None = None
        self.session = None  # the session on show (never mutated)
        self.mirror = None
        self.mirror_error: str | None = None
        self.attention = None
        self.lens: list[dict] | None = None
        self.side_view = "attention"  # or "lens" (l toggles)
        self._session_path = "session.json"
        self._loaded_note: str | None = None
        self.layer = 0
        self.head = 0
        self.load_error: str | None = None
        self.last_decode_s: float | None = None
        self.first_paint: float | None = None
        self.loaded_at: float | None = None
        # the operation queue, drained by one thread worker at a time
        self._lock = threading.Lock()
        self._queue: deque = deque()
        self._draining = False
        self._work_session = None
        self._applied = 0
        self._shown_seq = -1
        self._intent_key = None
        self._last_line = ""
        self._mirror = None
        self._mirror_key = None

    # -- layout ------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="top"):
            yield TextArea("", id="graph", soft_wrap=True, compact=True, tab_behavior="focus",
                           placeholder="type a graph: 2→1, 0→10, 9→3 … || find(9 → 7)   (e to edit, r for a random one)")
            yield Label("loading model…", id="graph-status")
        with Vertical(id="decode"):
            yield Static("", id="star")
            yield Static("", id="answer")
            yield Static("", id="strip")
            yield Static("", id="story")
        with Horizontal(id="bottom"):
            with Vertical(id="dist"):
                yield Static("", id="dist-head")
                yield TopK(id="topk")
            with Vertical(id="side"):
                yield Static("", id="compare")
                yield Static("", id="attention")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#decode").border_title = "decoding"
        self.query_one("#dist").border_title = "distribution (enter forces)"
        self.query_one("#compare").border_title = "compare (c)"
        self.query_one("#attention").border_title = "attention ([ ])"
        self.query_one("#graph").border_title = "graph"
        for sel in ("#decode", "#dist", "#side"):
            self.query_one(sel).loading = True
        self.query_one("#topk").focus()
        # paint the first screen before the worker starts importing torch (which holds the GIL for a while)
        self.call_after_refresh(self._start_loading)

    def _start_loading(self) -> None:
        self.first_paint = time.perf_counter()
        self.set_timer(0.05, self.load_models)

    def on_resize(self, event) -> None:
        self.screen.set_class(event.size.width >= 140, "-wide")
        self.screen.set_class(event.size.height >= 34, "-tall")

    # -- loading -----------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="load", name="load models")
    def load_models(self) -> None:
        t0 = time.perf_counter()
        models, errors = [], []
        try:
            import torch

            torch.set_num_threads(1)  # tiny models: one thread is fastest and leaves the other cores alone
            from ..checkpoint import load, resolve
        except Exception as e:  # noqa: BLE001 - a broken torch install is a message, not a crash
            self.post_message(ModelsLoaded([], [f"cannot import the engine: {e}"], 0.0))
            return
        for spec in self.specs:
            if get_current_worker().is_cancelled:
                return
            if not isinstance(spec, (str, Path)):
                models.append(spec)  # an already-loaded model (tests, notebooks)
                continue
            try:
                if spec in self.optional:
                    try:
                        resolve(spec)
                    except NtpProbeError:
                        continue
                models.append(load(spec))
            except NtpProbeError as e:
                errors.append(str(e))
            except Exception as e:  # noqa: BLE001
                errors.append(f"{spec}: cannot load ({e.__class__.__name__}: {e})")
        # import what the main thread will need while still in the worker (torch is loaded by now)
        from .. import probing, task  # noqa: F401

        self.post_message(ModelsLoaded(models, errors, time.perf_counter() - t0))

    def on_models_loaded(self, msg: ModelsLoaded) -> None:
        self.loaded_at = time.perf_counter()
        for sel in ("#decode", "#dist", "#side"):
            self.query_one(sel).loading = False
        for e in msg.errors:
            self.notify(e, title="model", severity="error", timeout=10)
        self.models = msg.models
        if not self.models:
            self.load_error = "; ".join(msg.errors) or "no model"
            self.sub_title = "no model loaded"
            hint = "run  ntp-probe tui PATH  with a .safetensors file, a run directory or a shipped model name"
            self.query_one("#graph-status", Label).update(f"[red]✗ {self.load_error}[/]")
            self.query_one("#story", Static).update(f"[red]No model loaded.[/] {hint}")
            return
        self.compare_index = 1 if len(self.models) > 1 else None
        lm = self.lm
        self.sub_title = f"{lm.display_name} · {lm.objective.name} · {lm.task.label()}"
        self.title = "ntp-probe"
        if self.initial_graph:
            self.set_editor_text(self.initial_graph)
            self.validate_editor()
        else:
            self.new_random_graph(advance=False)

    @property
    def lm(self):
        return self.models[0] if self.models else None

    @property
    def compare_lm(self):
        return None if self.compare_index is None else self.models[self.compare_index]

    # -- the operation queue -----------------------------------------------------------------------
    def submit(self, *op) -> bool:
        if self.lm is None:
            self.notify(self.load_error or "the model is still loading…", severity="warning")
            return False
        if op[0] not in ("graph", "open_session") and self._intent_key is None:
            self.notify("no valid graph yet: type one (e) or press r", severity="warning")
            return False
        with self._lock:
            self._queue.append(op)
            if self._draining:
                return True
            self._draining = True
        self.run_worker(self._drain, thread=True, exclusive=True, group="decode", name="decode")
        return True

    def _apply(self, s, op):
        """Apply one operation through the probing API; returns (session, None or (graph text, what was loaded))."""
        from ..probing import ProbeSession
        from ..task import format_human, read_lines

        kind, args = op[0], op[1:]
        if kind == "open_session":
            from ..probing import load_session

            (path,) = args
            new = load_session(path, candidates=self.models)
            return new, (format_human(new.graph), f"session {path}")
        if kind == "graph":
            (g,) = args
            if s is None:
                s = ProbeSession(self.lm, g)
            else:
                s = clone(s)
                s.set_graph(g)
                s.run_to_end()
            return s, None
        if s is None:
            raise NtpProbeError("no graph yet")
        if kind == "load_line":
            path, line = args
            graphs = read_lines(path, self.lm.task.nodes)
            if not 1 <= line <= len(graphs):
                raise NtpProbeError(f"{path}: line {line} is out of range (the file has {len(graphs)} graphs)")
            g = graphs[line - 1]
            s = clone(s)
            s.set_graph(g)
            s.run_to_end()
            return s, (format_human(g), f"{path}:{line}")
        if kind == "save":
            (path,) = args
            s.save(path)
            self.call_from_thread(self.notify, f"session saved to {path}", title="session")
            return s, None
        s = clone(s)
        if kind == "step":
            s.step()
        elif kind == "back":
            s.back()
        elif kind == "end":
            s.run_to_end()
        elif kind == "reset":
            s.reset()
        elif kind == "force":
            s.force(*args)
        elif kind == "wrong":
            if s.force_wrong_arm() is None:
                raise NtpProbeError("this graph has no other arm to force")
        elif kind == "unforce":
            if s.forced:
                s.unforce(max(s.forced))
        elif kind == "clear":
            s.clear_forced()
        elif kind == "next_strategy":  # relative to the queue's session, so fast presses each advance once
            from ..decoding import STRATEGIES, Strategy, default_tries

            name = STRATEGIES[(STRATEGIES.index(s.strategy.kind) + 1) % len(STRATEGIES)]
            s.set_strategy(Strategy(name, tries=default_tries(s.lm.task.degree)))
        elif kind == "refresh":
            pass
        else:
            raise ValueError(f"unknown operation {kind!r}")
        return s, None

    def _drain(self) -> None:
        worker = get_current_worker()
        errors: list[str] = []
        loaded = None
        t0 = time.perf_counter()
        while True:
            with self._lock:
                if not self._queue or worker.is_cancelled:
                    self._draining = False
                    s, seq = self._work_session, self._applied
                    break
                op = self._queue.popleft()
            try:
                new, what = self._apply(self._work_session, op)
                self._work_session = new
                if what is not None:
                    loaded = what
            except NtpProbeError as e:
                errors.append(str(e))
            except Exception as e:  # noqa: BLE001 - a message, never a crash
                errors.append(f"{e.__class__.__name__}: {e}")
            self._applied += 1
        if s is None:
            if errors:
                self.post_message(Decoded(seq, None, errors=errors))
            return
        mirror = mirror_error = None
        other = self.compare_lm
        if other is s.lm:  # a loaded session switched the main model to the one on the side
            other = next((m for m in self.models if m is not s.lm), None)
        key = (graph_key(s.graph), tuple(sorted(s.forced.items())), id(other), repr(s.strategy))
        if other is not None and key == self._mirror_key and self._mirror is not None:
            mirror = clone(self._mirror)  # only the cursor moved: no need to decode again
            mirror.cursor = max(0, min(s.cursor, mirror.length))
        elif other is not None:
            try:
                mirror = self._mirror = s.mirror(other)
                self._mirror_key = key
            except NtpProbeError as e:
                mirror_error = str(e)
            except Exception as e:  # noqa: BLE001
                mirror_error = f"{e.__class__.__name__}: {e}"
        try:
            attention = s.attention()
        except Exception:  # noqa: BLE001
            attention = None
        try:
            layers = s.layers()
        except Exception:  # noqa: BLE001 - the lens panel says "not available"
            layers = None
        self.post_message(Decoded(seq, s, mirror, mirror_error, attention, layers, errors, loaded,
                                  seconds=time.perf_counter() - t0))

    def on_decoded(self, msg: Decoded) -> None:
        for e in msg.errors:
            self.notify(e, severity="error", timeout=8)
            self.query_one("#graph-status", Label).update(f"[red]✗ {escape(e)}[/]")
        if msg.seq < self._shown_seq:
            return
        self._shown_seq = msg.seq
        if msg.session is None:
            return
        self.last_decode_s = msg.seconds
        self.session = msg.session
        self.mirror, self.mirror_error, self.attention, self.lens = msg.mirror, msg.mirror_error, msg.attention, msg.layers
        if msg.session.lm is not self.lm:  # a saved session for another model: it becomes the main one
            self.models = [msg.session.lm] + [m for m in self.models if m is not msg.session.lm]
            self.compare_index = 1 if len(self.models) > 1 else None
            self.sub_title = f"{self.lm.display_name} · {self.lm.objective.name} · {self.lm.task.label()}"
        if msg.loaded is not None:
            text, what = msg.loaded
            self._intent_key = graph_key(msg.session.graph)
            self._loaded_note = what  # shown by the editor's validation, which runs after the text is in
            self.set_editor_text(text)
        self.render_session()

    # -- rendering ----------------------------------------------------------------------------------
    def render_session(self) -> None:
        s = self.session
        if s is None:
            return
        self.query_one("#star", Static).update(star(s))
        self.query_one("#answer", Static).update(answer(s))
        self.query_one("#strip", Static).update(strip(s))
        self.query_one("#story", Static).update(story(s))
        self.query_one("#dist-head", Static).update(dist_header(s))
        self.query_one("#topk", TopK).show(s, self.top_k)
        other = self.compare_lm
        self.query_one("#compare", Static).update(
            compare_text(self.mirror, self.mirror_error, None if other is None else other.display_name))
        lens = self.side_view == "lens"
        self.query_one("#attention", Static).update(
            layers_text(s, self.lens) if lens else attention_text(s, self.attention, self.layer, self.head))
        self.query_one("#attention").border_title = "logit lens (l)" if lens else "attention ([ ], l: lens)"
        how = "" if s.strategy.kind == "greedy" else f" · {s.strategy.label()}" + (
            f": {s.tries} tries" if s.strategy.kind == "verify" else "")
        self.query_one("#decode").border_title = (
            f"decoding · {s.lm.display_name} ({s.objective.name}) · step {min(s.cursor, s.length)}/{s.length}{how}")
        self.query_one("#dist").border_title = f"step {s.current + 1} distribution · enter forces"

    def displayed(self) -> tuple[list[int], list[bool], int] | None:
        """What the answer line shows (tokens, forced flags, cursor), for tests."""
        s = self.session
        return None if s is None else ([st.token for st in s.steps], [st.forced for st in s.steps], s.cursor)

    # -- the graph editor ---------------------------------------------------------------------------
    def set_editor_text(self, text: str) -> None:
        self.query_one("#graph", TextArea).load_text(text)

    @on(TextArea.Changed, "#graph")
    def on_graph_changed(self, event: TextArea.Changed) -> None:
        self.validate_editor()

    def validate_editor(self) -> None:
        if self.lm is None:
            return
        from ..errors import GraphError
        from ..probing import parse_for_model

        text = self.query_one("#graph", TextArea).text
        status = self.query_one("#graph-status", Label)
        try:
            g = parse_for_model(text, self.lm)
        except GraphError as e:
            status.update(f"[red]✗ {escape(str(e))}[/]")
            return
        ood = g.ood_reasons(self.lm.task.degree, self.lm.task.path_len)
        note = f"  [yellow]⚠ {escape('; '.join(ood))}[/]" if ood else ""
        loaded = f"loaded {escape(self._loaded_note)}: " if self._loaded_note and graph_key(g) == self._intent_key else ""
        self._loaded_note = None
        status.update(f"[green]✓[/] {loaded}{len(g.edges)} edges, start {g.start} → goal {g.goal}{note}")
        if graph_key(g) == self._intent_key:
            return
        self._intent_key = graph_key(g)
        self.submit("graph", g)

    def new_random_graph(self, advance: bool = True) -> None:
        from ..task import format_human, generate

        if advance:
            self.graph_seed += 1
        t = self.lm.task
        g = next(generate(t.degree, t.path_len, t.nodes, 1, seed=self.graph_seed).graphs())
        self._intent_key = graph_key(g)
        self.set_editor_text(format_human(g))
        self.query_one("#graph-status", Label).update(
            f"[green]✓[/] random {t.label()} graph #{self.graph_seed}: start {g.start} → goal {g.goal}")
        self.submit("graph", g)

    # -- actions ------------------------------------------------------------------------------------
    def action_step(self) -> None:
        self.submit("step")

    def action_back(self) -> None:
        self.submit("back")

    def action_run_to_end(self) -> None:
        self.submit("end")

    def action_reset(self) -> None:
        self.submit("reset")

    def action_wrong_arm(self) -> None:
        self.submit("wrong")

    def action_unforce(self) -> None:
        self.submit("unforce")

    def action_clear_forced(self) -> None:
        self.submit("clear")

    def action_random_graph(self) -> None:
        if self.lm is None:
            self.notify(self.load_error or "the model is still loading…", severity="warning")
            return
        self.new_random_graph()

    @on(OptionList.OptionSelected, "#topk")
    def on_topk_selected(self, event: OptionList.OptionSelected) -> None:
        if self.session is None or event.option.id is None:
            return
        self.submit("force", self.session.current, int(event.option.id))

    def action_force_typed(self) -> None:
        if self.session is None:
            return
        pos, n = self.session.current, self.lm.task.nodes

        def validate(text: str) -> str | None:
            from ..task import GraphError, parse_node_id  # torch is loaded by now (the model is)

            try:
                parse_node_id(text, "node", n)
            except GraphError as e:
                return str(e)
            return None

        def done(value: str | None) -> None:
            if value is not None:
                self.submit("force", pos, int(value.strip()))

        self.push_screen(Prompt(f"force which node at step {pos + 1}?", f"a node id, 0..{n - 1}", validate=validate), done)

    def action_edit_graph(self) -> None:
        self.query_one("#graph", TextArea).focus()

    def action_leave_editor(self) -> None:
        self.query_one("#topk").focus()

    def action_open_line(self) -> None:
        if self.lm is None:
            return

        def validate(text: str) -> str | None:
            path, _, line = text.rpartition(":") if ":" in text else (text, "", "1")
            if not Path(path).expanduser().is_file():
                return f"{path or '(empty)'}: no such file"
            if not re.fullmatch(r"\s*[0-9]{1,9}\s*", line) or int(line) < 1:
                return f"line {line!r}: give a line number from 1, as path:line"
            return None

        def done(value: str | None) -> None:
            if value is None:
                return
            self._last_line = value
            path, _, line = value.rpartition(":") if ":" in value else (value, "", "1")
            self.submit("load_line", str(Path(path).expanduser()), int(line))

        self.push_screen(Prompt("load a graph from a data file", "path/to/file.txt:LINE",
                                value=self._last_line, validate=validate), done)

    def action_compare_next(self) -> None:
        if len(self.models) < 2:
            self.notify("only one model loaded: pass two, e.g. ntp-probe tui A B", severity="warning")
            return
        order = list(range(1, len(self.models))) + [None]
        self.compare_index = order[(order.index(self.compare_index) + 1) % len(order)]
        self.mirror = None
        self.submit("refresh")

    def action_head(self, delta: int) -> None:
        if self.attention is None:
            return
        L, H = self.attention.weights.shape[:2]
        i = (self.layer * H + self.head + delta) % (L * H)
        self.layer, self.head = divmod(i, H)
        self.render_session()

    def action_next_strategy(self) -> None:
        """d: greedy → sample → beam → verifier → greedy (the decode runs in the worker)."""
        self.submit("next_strategy")

    def action_toggle_lens(self) -> None:
        self.side_view = "attention" if self.side_view == "lens" else "lens"
        self.render_session()

    def action_save_session(self) -> None:
        if self.session is None:
            self.notify("nothing to save yet", severity="warning")
            return

        def validate(text: str) -> str | None:
            parent = Path(text).expanduser().parent
            return None if text and parent.is_dir() else f"{parent}: no such directory"

        def done(value: str | None) -> None:
            if value is not None:
                self._session_path = value
                self.submit("save", str(Path(value).expanduser()))

        self.push_screen(Prompt("save this session (model, graph, forced tokens, decoding) as", "session.json",
                                value=self._session_path, validate=validate), done)

    def action_open_session(self) -> None:
        if self.lm is None:
            self.notify(self.load_error or "the model is still loading…", severity="warning")
            return

        def validate(text: str) -> str | None:
            return None if Path(text).expanduser().is_file() else f"{text or '(empty)'}: no such file"

        def done(value: str | None) -> None:
            if value is not None:
                self._session_path = value
                self.submit("open_session", str(Path(value).expanduser()))

        self.push_screen(Prompt("open a saved session", "session.json", value=self._session_path, validate=validate), done)

    def action_card(self) -> None:
        if self.lm is None:
            self.notify(self.load_error or "the model is still loading…", severity="warning")
            return
        self.push_screen(TextModal("model card", card_markdown(self.lm)))

    def action_help(self) -> None:
        self.push_screen(help_screen())

    def action_screenshot(self) -> None:
        path = self.save_screenshot(path=os.getcwd())
        self.notify(f"screenshot saved to {path}", title="screenshot")

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for title, help_text, cb in (
            ("Step", "Reveal the next answer token", self.action_step),
            ("Back", "Hide the last answer token", self.action_back),
            ("Run to end", "Reveal the whole answer", self.action_run_to_end),
            ("Reset", "Back to the first answer position", self.action_reset),
            ("Force the wrong arm (Clever Hans demo)", "Force the first node of another arm at the decision step",
             self.action_wrong_arm),
            ("Force a node by id", "Type a node id to force at the current step", self.action_force_typed),
            ("Undo force", "Remove the last forced token", self.action_unforce),
            ("Clear forced tokens", "Remove every forced token", self.action_clear_forced),
            ("Random graph", "A fresh random graph of the model's topology", self.action_random_graph),
            ("Edit graph", "Focus the graph editor", self.action_edit_graph),
            ("Load a line from a data file", "path:line", self.action_open_line),
            ("Compare with next model", "Cycle the model shown side by side", self.action_compare_next),
            ("Next attention head", "Cycle layer/head", lambda: self.action_head(1)),
            ("Next decoding strategy", "greedy → sample → beam search → verifier", self.action_next_strategy),
            ("Logit lens / attention", "Toggle the per-layer view of the current step", self.action_toggle_lens),
            ("Save session", "Model, graph, forced tokens and decoding to a JSON file", self.action_save_session),
            ("Open session", "Load a saved session JSON file", self.action_open_session),
            ("Model card", "Objective, topology, training figures", self.action_card),
            ("Help", "Keys and what the screen shows", self.action_help),
            ("Save screenshot", "SVG in the current directory", self.action_screenshot),
        ):
            yield SystemCommand(title, help_text, cb)


def escape(text: str) -> str:
    from rich.markup import escape as _escape

    return _escape(text)


def run(models: Sequence | None = None) -> None:
    ProbeApp(models).run()
