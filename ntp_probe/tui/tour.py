"""``ntp-probe tour``: the talk, in the app. Eight steps through the story with the shipped models, each a live
state of the probing app (the usual keys work on it) with a short text panel for a teacher to read out.

The tour is a mode of ``ProbeApp``: it loads every model the steps name at the start, and a step is set up with
the app's own operations — the step's models become the probed one and the ones beside it, its graph goes in the
editor and is decoded (``Op(start=…)``), a forced wrong arm is the ``w`` op, the why panel is ``y``'s. Moving on
(``pgdn`` / ``>``, back ``pgup`` / ``<``) sets up the next step from scratch, whatever the user did on this one.

The figures quoted are the leaderboard's (``docs/results.md``, ``docs/debate/leaderboard.json``: greedy accuracy on
20,000 graphs); a test checks them against that file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

from rich.text import Text
from textual.actions import SkipAction
from textual.binding import Binding
from textual.widgets import Header

from ..errors import NtpProbeError
from .app import ProbeApp, _api
from .keys import KEYS
from .ops import Decoded, ModelsLoaded, Op
from .widgets.distribution import TopK
from .widgets.tour import TourPanel

# The talk's own example: start 9, three arms of three nodes (G(3,4)), the goal 7 at the end of the middle one.
TALK_GRAPH = "2→1, 0→10, 9→3, 5→4, 4→6, 3→0, 1→7, 9→2, 9→5 || find(9 → 7)"
# G(2,5) graphs of the original test file's kind (random_graph(g2-5-next-token, seed 1) and seed 0), written out so
# the tour does not depend on the generator: on the first next-token picks the goal's arm, on the second it does not.
G25_LUCKY = "28→34, 35→39, 34→4, 33→21, 44→35, 4→33, 46→44, 28→46 || find(28 → 39)"
G25_UNLUCKY = "34→18, 3→44, 27→2, 44→34, 43→27, 12→35, 12→3, 35→43 || find(12 → 2)"
G23 = "42→18, 8→42, 22→32, 8→22 || find(8 → 18)"  # G(2,3): next-token takes the wrong arm, teacherless does not

# greedy accuracy on 20,000 graphs: docs/debate/leaderboard.json (model, shape) -> accuracy; tests/test_tour.py checks
FIGURES = {
    ("g2-5-next-token", "G(2,5)"): 0.499,
    ("g5-5-next-token", "G(5,5)"): 0.196,
    ("g2-5-multi-token", "G(2,5)"): 0.498,
    ("g2-5-reverse", "G(2,5)"): 1.000,
    ("g2-5-mlm-u", "G(2,5)"): 0.993,
    ("g2-5-bst", "G(2,5)"): 0.894,
    ("g2-5-answer-dropout", "G(2,5)"): 0.507,
    ("g2-5-teacherless", "G(2,5)"): 0.000,
    ("g2-3-next-token", "G(2,3)"): 0.499,
    ("g2-3-teacherless", "G(2,3)"): 1.000,
    ("g2-3-answer-dropout", "G(2,3)"): 1.000,
    ("g2-4-answer-dropout", "G(2,4)"): 0.943,
    ("g2-3-bst", "G(2,3)"): 0.996,
}


def fig(model: str, shape: str) -> str:
    return f"{FIGURES[(model, shape)]:.3f}"


@dataclass(frozen=True)
class TourStep:
    """One step: what the panel says, and the app state it sets up."""

    title: str
    lead: str  # Rich markup: the step in two or three lines, for a small terminal
    text: str  # Rich markup, the tour's own words (never a file's): the step for a teacher to read out
    models: tuple[str, ...]  # the probed model first, then the ones beside it (c cycles)
    graph: str
    cursor: str = "end"  # "start": nothing revealed; "decision": the arm choice on show; "end": the whole answer
    wrong_arm: bool = False  # force the wrong arm (w) once decoded
    why: bool = False  # the why panel (y) on show

    def body(self, compact: bool = False) -> Text:
        return Text.from_markup(self.lead if compact else self.text)


STEPS: list[TourStep] = [
    TourStep(
        "The task",
        "Find the path from 9 to 7: [b green]9 → 2 → 1 → 7[/]. Every step but one is 'follow the edge'; the "
        "first move, [b]which arm?[/], needs planning. [dim]→ reveals the model's answer.[/]",
        "A [b]path-star graph[/]: one start, several arms, the goal at the end of one of them. The model reads the "
        "edges, shuffled, then the question [b]find(9 → 7)[/], and must write the path: [b green]9 → 2 → 1 → 7[/].\n\n"
        "After the start, every step but one is easy: follow the only edge. The hard one is the first move: "
        "[b]which arm leaves 9 towards 7?[/] Answering it means looking ahead to the goal: [b]planning[/].\n\n"
        "The model is [b]star-next-token[/], trained the usual way (next-token prediction, teacher forcing) on every "
        "star G(2..5, 3..6); this one has 3 arms of 3 nodes.\n\n"
        "[dim]Try: → reveals its answer one token at a time.[/]",
        ("star-next-token",), TALK_GRAPH, cursor="start"),
    TourStep(
        "The decision is a coin flip",
        "The decision (answer token 2) is [b]a guess[/]: the bet is spread over the arms (below). Right 1 time "
        f"in d: G(2,5) {fig('g2-5-next-token', 'G(2,5)')}, G(5,5) {fig('g5-5-next-token', 'G(5,5)')}; every "
        "token after it near-certain.",
        "Answer token 2 is the [b]decision[/]: 3, 5 or 2? The distribution panel is the model's bet: spread over "
        "the three children of 9, [b]a guess[/], and greedy takes whichever is on top.\n\n"
        "Over 20,000 graphs it picks the right arm [b]1 time in d[/]: G(2,5) "
        f"{fig('g2-5-next-token', 'G(2,5)')} (chance 0.5), G(5,5) {fig('g5-5-next-token', 'G(5,5)')} (chance 0.2). "
        "After the decision it is near-certain at every token (the confidence strip): the rest is following edges.\n\n"
        "[dim]Try: d cycles the decoding: sampling, beam search, a perfect verifier. The verifier gets there by "
        "trying arms: search, not planning.[/]",
        ("star-next-token",), TALK_GRAPH, cursor="decision"),
    TourStep(
        "Clever Hans",
        "Forced onto the wrong arm ([b]w[/]), the model [b]walks it[/] at p ≈ 1.00: teacher forcing taught it "
        "'next = a child of the previous node', a [b]Clever Hans cheat[/]. At the end it copies the goal.",
        "A G(2,5) model, and we [b]force the wrong arm[/] at the decision ([b]w[/], magenta *).\n\n"
        "The model [b]walks the wrong arm[/], every step at p ≈ 1.00: the goal it was given does not stop it. "
        "Trained with teacher forcing, it always saw the true previous node, so [b]'the next node is a child of the previous "
        "one'[/] was enough to score: a [b]Clever Hans cheat[/], right answers for the wrong reason.\n\n"
        "At the last token it writes the goal from the question instead: a second shortcut ('the last node is the "
        "goal').\n\n"
        "[dim]Try: x clears the forced tokens; ↑ ↓ enter forces any node of the list.[/]",
        ("g2-5-next-token",), G25_LUCKY, wrong_arm=True),
    TourStep(
        "The indecipherable token",
        "Why ([b]y[/]): move the goal to the other arm and the decision's logits barely change: [b]the goal "
        "does not reach the decision[/]. Nothing made it look: the [b]indecipherable token[/].",
        "[b]Why[/] is the decision never learned? The why panel ([b]y[/]) moves the goal to the other arm's leaf and "
        "patches the clean run back in, layer by layer, token by token.\n\n"
        "At the decision the two runs' logit differences are [b]almost equal[/]: [b]the goal does not reach the "
        "decision[/], so there is nothing to patch.\n\n"
        "The cheat made every later token easy, so the training signal never pushed the model to use the goal. "
        "The one token that needs the plan is left [b]indecipherable[/], and stays a guess.\n\n"
        "[dim]Try: → to answer token 3: the effect sits on the previous answer token (the prefix), not the goal. "
        "y closes the panel.[/]",
        ("g2-5-next-token",), G25_LUCKY, cursor="decision", why=True),
    TourStep(
        "Reversed targets fix it",
        "Written [b]backwards[/] (goal → start), each token is the only parent of the previous one: no arm to "
        f"guess. [b]g2-5-reverse {fig('g2-5-reverse', 'G(2,5)')}[/], next-token "
        f"{fig('g2-5-next-token', 'G(2,5)')} (beside it, on the same graph).",
        "The paper's first fix: the same task, the answer [b]written backwards[/]: goal → start. Each token is now "
        "the [b]only parent[/] of the previous one, a lookup: there is no arm to guess.\n\n"
        f"[b]g2-5-reverse: {fig('g2-5-reverse', 'G(2,5)')}[/] on 20,000 G(2,5) graphs, where next-token is "
        f"{fig('g2-5-next-token', 'G(2,5)')}. Beside it (compare): next-token on the same graph (here it took the "
        "wrong arm).\n\n"
        "The task did not change; the [b]order of supervision[/] did.\n\n"
        "[dim]Try: r for another graph, both models on it.[/]",
        ("g2-5-reverse", "g2-5-next-token"), G25_UNLUCKY),
    TourStep(
        "Teacherless fixes it (G(2,3))",
        "[b]Teacherless[/]: dummy inputs ($) for the answer, so no cheat: it must plan. G(2,3) "
        f"[b]{fig('g2-3-teacherless', 'G(2,3)')}[/], next-token {fig('g2-3-next-token', 'G(2,3)')} (beside it); "
        f"on G(2,5) ours reached {fig('g2-5-teacherless', 'G(2,5)')}.",
        "The paper's second fix, [b]teacherless[/] training: the answer's inputs are dummy tokens ($), not the true "
        "previous nodes. No "
        "prefix to copy from, no Clever Hans: the model must [b]plan the whole path[/] from the question.\n\n"
        f"G(2,3): [b]g2-3-teacherless {fig('g2-3-teacherless', 'G(2,3)')}[/], next-token "
        f"{fig('g2-3-next-token', 'G(2,3)')} (beside it, guessing on this graph).\n\n"
        f"But it is hard to train: on G(2,5) ours reached {fig('g2-5-teacherless', 'G(2,5)')} in our budget.\n\n"
        "[dim]Try: t and r for more graphs; c hides the comparison.[/]",
        ("g2-3-teacherless", "g2-3-next-token"), G23),
    TourStep(
        "The debate",
        f"G(2,5), greedy: reverse [b]{fig('g2-5-reverse', 'G(2,5)')}[/], mlm-u [b]{fig('g2-5-mlm-u', 'G(2,5)')}[/], "
        f"BST [b]{fig('g2-5-bst', 'G(2,5)')}[/], answer-dropout {fig('g2-5-answer-dropout', 'G(2,5)')} (G(2,3) "
        f"{fig('g2-3-answer-dropout', 'G(2,3)')}, G(2,4) {fig('g2-4-answer-dropout', 'G(2,4)')}), next-token "
        f"{fig('g2-5-next-token', 'G(2,5)')}, teacherless {fig('g2-5-teacherless', 'G(2,5)')}. "
        "[dim]c: the model beside.[/]",
        "Is next-token prediction doomed, or was it the [b]supervision[/]? G(2,5), greedy, 20,000 graphs:\n\n"
        f"  reverse          [b]{fig('g2-5-reverse', 'G(2,5)')}[/]\n"
        f"  mlm-u            [b]{fig('g2-5-mlm-u', 'G(2,5)')}[/]\n"
        f"  BST              [b]{fig('g2-5-bst', 'G(2,5)')}[/]\n"
        f"  answer-dropout   {fig('g2-5-answer-dropout', 'G(2,5)')}\n"
        f"  next-token       {fig('g2-5-next-token', 'G(2,5)')}\n"
        f"  multi-token      {fig('g2-5-multi-token', 'G(2,5)')}\n"
        f"  teacherless      {fig('g2-5-teacherless', 'G(2,5)')}\n\n"
        "[b]Answer-dropout[/] (Frydenlund) keeps teacher forcing but drops the answer's inputs: "
        f"G(2,3) {fig('g2-3-answer-dropout', 'G(2,3)')}, G(2,4) {fig('g2-4-answer-dropout', 'G(2,4)')}; on G(2,5) "
        "still on the plateau when our CPU ran out. The [b]belief state transformer[/] (Hu et al.) plans at 4 "
        "layers. Probed here: BST, answer-dropout beside it.\n\n"
        "[dim]Try: c cycles the model beside it (mlm-u, next-token).[/]",
        ("g2-5-bst", "g2-5-answer-dropout", "g2-5-mlm-u", "g2-5-next-token"), G25_UNLUCKY),
    TourStep(
        "Now try it yourself",
        "[b]→ ←[/] step  [b]w[/] wrong arm  [b]y[/] why  [b]r[/] random  [b]t[/] shape  [b]e[/] edit  "
        "[b]c[/] compare  [b]d[/] decoding  [b]l[/] lens  [b]i[/] card  [b]?[/] help  [b]ctrl+q[/] quit",
        "[b]star-next-token[/], [b]star-reverse[/] beside it, any star G(2..5, 3..6).\n\n"
        "  [b]→ ←[/]    step through the answer\n"
        "  [b]w[/]      force the wrong arm\n"
        "  [b]y[/]      why: patching, knock-out\n"
        "  [b]r[/]      a random graph\n"
        "  [b]t[/]      the next shape\n"
        "  [b]e[/]      type a graph, or G(4,6)\n"
        "  [b]c[/]      the model beside it\n"
        "  [b]d[/]      decoding strategy\n"
        "  [b]l[/]      logit lens\n"
        "  [b]i ?[/]    model card, help\n\n"
        "The tour is [b]ntp-probe tui[/] with a script: [b]ntp-probe tui MODEL ...[/] opens any models.",
        ("star-next-token", "star-reverse"), TALK_GRAPH),
]


def tour_models(steps: list[TourStep] = STEPS) -> list[str]:
    """Every model the steps name, each once, in the order first met."""
    return list(dict.fromkeys(m for step in steps for m in step.models))


TOUR_KEYS = [
    Binding("pagedown,greater_than_sign", "tour(1)", "Next step", key_display=">", priority=True,
            tooltip="Tour: the next step (pgdn or >)"),
    Binding("pageup,less_than_sign", "tour(-1)", "Prev step", key_display="<", priority=True,
            tooltip="Tour: the step before (pgup or <)"),
]


def _start(lm, graph, cursor: str):
    """The step's session: ``graph`` decoded by ``lm``, the answer revealed as the step wants."""
    ProbeSession = _api()
    s = ProbeSession(lm, graph)
    s.cursor = {"start": 0, "decision": s.decision_position, "end": s.length}[cursor]
    return s


@dataclass
class TourState:
    index: int = 0
    seq: int = 0  # operations pushed before the step's first one: a decode of an earlier step is not shown
    pushed: int = 0  # operations pushed so far
    by_name: dict = field(default_factory=dict)  # model name -> loaded model
    mode: str = "full"  # the panel's text: "full", "compact" (the step's lead: a small terminal), "tiny" (one line)


class TourApp(ProbeApp):
    """``ntp-probe tour``: ``ProbeApp`` with a script of steps and a text panel."""

    SUB_TITLE = "the tour: loading models…"
    CSS = TourPanel.SCREEN_CSS
    BINDINGS = [*TOUR_KEYS, *KEYS]  # the help screen and the palette list both (ProbeApp builds them from BINDINGS)

    def __init__(self, *, start: int = 0, steps: list[TourStep] | None = None) -> None:
        self.steps = list(steps or STEPS)
        names = tour_models(self.steps)
        super().__init__(names)
        self.optional = set(names)  # a model that is not shipped: its steps say so, the others still run
        self.tour = TourState(index=max(0, min(start, len(self.steps) - 1)))

    def on_mount(self) -> None:  # before ProbeApp's (Textual calls each class's on_mount)
        self.mount(TourPanel("", id="tour"), after=self.query_one(Header))
        self.title = "ntp-probe tour"
        self.call_after_refresh(self.show_step)  # the first step's text while the models load

    def on_resize(self, event) -> None:  # and then ProbeApp's
        """The panel beside the app from 110 columns (the app keeps 70 or more) with the step's whole text; else above
        it: the whole text from 34 rows, the step's lead in three lines below (no header, no story line, the attention
        panel's column to the model beside), one line under 16 rows."""
        w, h = event.size
        side = w >= 110
        mode = "full" if side or h >= 34 else "tiny" if h < 16 else "compact"
        self.screen.set_class(side, "-tour-side")
        self.screen.set_class(mode != "full", "-tour-compact")
        self.screen.set_class(mode == "tiny", "-tour-tiny")
        if mode != self.tour.mode:
            self.tour.mode = mode
            self.show_text()

    # -- steps ---------------------------------------------------------------------------------------
    @property
    def step(self) -> TourStep:
        return self.steps[self.tour.index]

    def on_models_loaded(self, msg: ModelsLoaded) -> None:  # before ProbeApp's handler, which calls first_graph
        self.tour.by_name = {m.display_name: m for m in msg.models}
        self.call_after_refresh(self.show_text)  # none loaded: the panel says which are missing

    def first_graph(self) -> None:
        """Once the models are loaded: the step the tour starts at."""
        self.show_step()

    def action_tour(self, delta: int) -> None:
        if len(self.screen_stack) > 1:  # a prompt, the help or the card is open: the key is theirs
            raise SkipAction()
        i = self.tour.index + delta
        if not 0 <= i < len(self.steps):
            self.notify("that was the last step: ctrl+q quits, < goes back" if delta > 0 else "this is the first step",
                        title="tour", timeout=3)
            return
        self.tour.index = i
        self.show_step()

    def show_step(self) -> None:
        """Set up the step on show: its models, its graph decoded, the wrong arm forced, the why panel."""
        step, main_screen = self.step, self.screen_stack[0]
        have = [self.tour.by_name[n] for n in step.models if n in self.tour.by_name]
        self.show_text()
        for panel in main_screen.query(TourPanel):
            panel.scroll_home(animate=False)
        if not self._loaded or not have:
            return
        if self.why != step.why:  # y's panel in place of the distribution and the side panels, or back
            self.why = step.why
            main_screen.query_one("#why").display = self.why
            main_screen.query_one("#bottom").display = not self.why
        self._keep_focus()
        main = have[0]
        self.models = have
        self._set_main(main)
        self.sub_title = f"step {self.tour.index + 1}/{len(self.steps)}: {step.title} · {self.sub_title}"
        self.editor.lm = main
        from ..probing import parse_for_model

        try:
            g = parse_for_model(step.graph, main)
        except NtpProbeError as e:  # a model that cannot read the step's graph: said, not a crash
            self.editor.error(f"{main.display_name}: {e}")
            return
        self.editor.show_graph(g, note=f"tour step {self.tour.index + 1}")
        self.tour.seq = self.tour.pushed
        self.submit(Op(start=partial(_start, main, g, step.cursor)))
        if step.wrong_arm:
            self.change(_api().force_wrong_arm, required=True)  # w

    def _keep_focus(self) -> None:
        """The top-k list when it is on show, else the tour's panel: never nothing (see ``TourPanel``)."""
        main_screen = self.screen_stack[0]
        focused = main_screen.focused
        if focused is None or focused is main_screen.query_one(TopK) or isinstance(focused, TourPanel):
            main_screen.set_focus(main_screen.query_one(TourPanel) if self.why else main_screen.query_one(TopK))

    def action_toggle_why(self) -> None:
        super().action_toggle_why()
        self._keep_focus()

    def action_leave_editor(self) -> None:
        super().action_leave_editor()  # focuses the top-k list, later (Widget.focus): it may be hidden
        self.call_later(self._keep_focus)

    def show_text(self) -> None:
        panels = self.screen_stack[0].query(TourPanel) if self.screen_stack else []
        if not panels:  # a resize before the panel is mounted: on_mount shows the step
            return
        step = self.step
        missing = [n for n in step.models if n not in self.tour.by_name] if self._loaded else []
        panels.first().show_step(self.tour.index, len(self.steps), step.title, step.body(self.tour.mode != "full"),
                                 missing, self.tour.mode)

    def submit(self, op: Op) -> bool:
        """Counted: every op the tour's app queues goes through here (it follows no run, whose ops do not)."""
        pushed = super().submit(op)
        self.tour.pushed += pushed
        return pushed

    def on_decoded(self, msg: Decoded) -> None:
        """A decode of the step before (queued before this step's ops) is not shown: its model would take over."""
        if msg.seq <= self.tour.seq and msg.probed is not None:
            msg.prevent_default()
            self._shown = max(self._shown, msg.seq)
            for e in msg.errors:
                self.notify(e, severity="error", timeout=8)


def run(start: int = 0) -> None:
    TourApp(start=start).run()
