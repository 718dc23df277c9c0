"""``ntp-probe tour``: the talk in the app, walked under Pilot with the shipped models (models/), one snapshot per step."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from textual.widgets import TextArea

from ntp_probe.probing import parse_for_model
from ptyrun import CTRL_Q, NTP_PROBE, run_in_pty
from ntp_probe.tui.screens.modals import TextModal, help_markdown
from ntp_probe.tui.tour import FIGURES, STEPS, TALK_GRAPH, TourApp, TourStep, tour_models
from ntp_probe.tui.widgets.tour import TourPanel
from conftest import sync

ROOT = Path(__file__).resolve().parents[1]
TEACHER = (120, 40)  # the size a class reads; 80x24 and 40x10 must work too

pytestmark = pytest.mark.skipif(not all((ROOT / "models" / m / "model.safetensors").is_file() for m in tour_models()),
                                reason="the shipped models are not in this checkout")




def panel_text(app) -> str:
    return str(app.query_one(TourPanel).render())


def check_step(app, i: int) -> None:
    """The live state is step ``i``'s: its models, its graph decoded, its forced arm, its why panel, its text."""
    step = STEPS[i]
    assert app.tour.index == i
    assert [m.display_name for m in app.models] == list(step.models)
    s = app.session
    assert s.lm is app.lm and app.lm.display_name == step.models[0]
    assert s.graph == parse_for_model(step.graph, app.lm)
    assert app.editor.lm is app.lm and "✓" in str(app.query_one("#graph-status").render())
    compare = app.compare_lm
    assert (compare.display_name if compare else None) == (step.models[1] if len(step.models) > 1 else None)
    dp = s.decision_position
    if step.wrong_arm:  # w: the start and another arm's first node forced, and the model walks that arm
        assert s.forced == {0: s.graph.start, dp: s.tokens[dp]} and s.tokens[dp] != s.true_path[dp]
        arm = next(a for a in s.graph.arms() if a[0] == s.tokens[dp])
        assert s.tokens[dp:-1] == arm[:-1]  # the Clever Hans walk, every inner step
    else:
        assert not s.forced
    assert s.cursor == {"start": 0, "decision": dp, "end": s.length}[step.cursor]
    assert app.why is step.why and app.query_one("#why").display is step.why
    if step.why:
        assert app.probed.why is not None and app.probed.session.current == dp  # the causal probes at the decision
    text = panel_text(app)
    assert app.query_one(TourPanel).border_title.startswith(f"tour {i + 1}/{len(STEPS)}")
    if app.tour.mode == "tiny":  # 40x10: one line, the step's name
        assert f"tour {i + 1}/{len(STEPS)} · {step.title}" in text
    else:
        assert step.body(compact=app.tour.mode == "compact").plain[:40] in text
    assert "not found" not in text


@sync
async def test_walks_every_step_forward_and_back_and_quits():
    app = TourApp()
    async with app.run_test(size=TEACHER) as pilot:
        await app.wait_idle()
        check_step(app, 0)
        assert app.session.graph == parse_for_model(TALK_GRAPH, app.lm) and app.session.graph.topology() == (3, 4)
        for i in range(1, len(STEPS)):
            await pilot.press("pagedown")
            await app.wait_idle()
            check_step(app, i)
        await pilot.press("pagedown")  # past the last: a message, the step stays
        await app.wait_idle()
        assert app.tour.index == len(STEPS) - 1
        for i in reversed(range(len(STEPS) - 1)):
            await pilot.press("pageup")
            await app.wait_idle()
            check_step(app, i)
        await pilot.press("ctrl+q")
        await pilot.pause()
    assert app.return_code == 0


@sync
async def test_fast_keys_end_on_the_step_asked_for():
    """Keys faster than the model: each step's decode is queued after the last; a late decode of a step left
    behind never takes the app's models over."""
    app = TourApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await app.wait_idle()
        await pilot.press(*[">"] * 7, "<", "<", ">")
        await app.wait_idle()
        check_step(app, 6)
        await pilot.press("<", "<", "<", "<", "<", ">")  # through the why step and out of it
        await app.wait_idle()
        check_step(app, 2)


@sync
async def test_the_usual_keys_work_on_a_step_and_moving_on_resets_it():
    app = TourApp(start=2)  # Clever Hans: the wrong arm forced
    async with app.run_test(size=TEACHER) as pilot:
        await app.wait_idle()
        check_step(app, 2)
        await pilot.press("x", "0")  # clear the forced tokens, back to the start of the answer
        await app.wait_idle()
        assert not app.session.forced and app.session.cursor == 0
        await pilot.press("y")  # the why panel on a step that does not show it
        await app.wait_idle()
        assert app.why and app.probed.why is not None
        await pilot.press(">", "<")  # the step again, as the tour sets it up
        await app.wait_idle()
        check_step(app, 2)
        # in the editor > is a character, not a step; with the help open pgdn is the help's
        await pilot.press("e")
        await pilot.press(">")
        await app.wait_idle()
        assert app.tour.index == 2 and ">" in app.query_one("#graph", TextArea).text
        await pilot.press("escape", "question_mark")
        await pilot.pause()
        assert isinstance(app.screen, TextModal)
        helped = help_markdown(app.key_bindings())
        assert "Tour: the next step" in helped and "Force the wrong arm" in helped and "Undo force" in helped
        await pilot.press("pagedown")
        await pilot.pause()
        assert app.tour.index == 2 and isinstance(app.screen, TextModal)
        # the why step hides the top-k list; closing the help then handed the focus to the graph editor (the first
        # focusable widget) and the next keys were typed into the graph: the tour's panel holds it instead
        await pilot.press("escape", "pagedown")
        await app.wait_idle()
        check_step(app, 3)
        text = app.editor.text
        for keys in (("question_mark", "escape"), ("e", "escape"), ("y", "y")):
            await pilot.press(*keys)
            await app.wait_idle()
            await pilot.pause()
            assert not isinstance(app.focused, TextArea) and app.focused.display
        await pilot.press("z", "<")
        await app.wait_idle()
        assert app.editor.text == text and app.tour.index == 2


@pytest.mark.parametrize("size", [(80, 24), (40, 10)])
@sync
async def test_small_terminals(size):
    """80x24: the step's lead above the app, the panels below it still shown; 40x10: every step, no crash."""
    app = TourApp()
    async with app.run_test(size=size) as pilot:
        await app.wait_idle()
        assert app.screen.has_class("-tour-compact") and not app.screen.has_class("-tour-side")
        if size == (80, 24):
            assert STEPS[0].body(compact=True).plain[:20] in panel_text(app) and app.tour.mode == "compact"
        else:
            assert panel_text(app).startswith("tour 1/8 · The task") and app.query_one(TourPanel).region.height == 1
        await pilot.press(*["pagedown"] * (len(STEPS) - 2))  # to the debate, every step set up in turn
        await app.wait_idle()
        check_step(app, len(STEPS) - 2)
        if size == (80, 24):  # the lead in 3 lines; the distribution and the model beside it still readable
            assert app.query_one(TourPanel).region.height <= 5 and app.query_one("#dist").region.height >= 7
            assert app.query_one("#compare").region.height >= 7 and not app.query_one("#attention").display
        await pilot.resize_terminal(*TEACHER)
        await pilot.pause()
        assert app.screen.has_class("-tour-side") and STEPS[-2].title in panel_text(app)
        assert "ctrl+q" in panel_text(app) and app.query_one(TourPanel).region.x >= 70


@sync
async def test_a_missing_model_is_said_not_a_crash():
    steps = [TourStep("made up", "lead", "text", ("no-such-model", "g2-3-next-token"),
                      "42→18, 8→42, 22→32, 8→22 || find(8 → 18)")]
    app = TourApp(steps=steps)
    async with app.run_test(size=TEACHER):
        await app.wait_idle()
        assert "no-such-model, not found" in panel_text(app)
        assert app.lm.display_name == "g2-3-next-token" and app.session.graph.goal == 18
    app = TourApp(steps=[TourStep("none", "lead", "text", ("no-such-model",), TALK_GRAPH)])
    async with app.run_test(size=(80, 24)) as pilot:
        await app.wait_idle()
        await pilot.pause()
        assert app.lm is None and "no-such-model, not found" in panel_text(app)
        await pilot.press(">", "w", "<")  # nothing to walk or force: messages, no crash
        await app.wait_idle()


def test_tour_module_does_not_import_torch():
    code = "import sys, ntp_probe.tui.tour; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_figures_are_the_leaderboards():
    """Every figure the tour quotes is the leaderboard's greedy accuracy (docs/debate/leaderboard.json)."""
    rows = json.loads((ROOT / "docs" / "debate" / "leaderboard.json").read_text())
    board = {(r["model"], r["shape"]): r["accuracy"] for r in rows}
    for key, value in FIGURES.items():
        assert key in board, key
        assert f"{board[key]:.3f}" == f"{value:.3f}", key


def test_leads_fit_a_small_terminal():
    """The lead is what an 80x24 terminal shows: three lines of 76 columns."""
    for step in STEPS:
        assert len(step.body(compact=True).plain) <= 3 * 70, step.title


@pytest.mark.parametrize("index", range(len(STEPS)))
def test_snapshot_step(snap_compare, index):
    async def run_before(pilot) -> None:
        await pilot.app.wait_idle()

    assert snap_compare(TourApp(start=index), terminal_size=TEACHER, run_before=run_before)


def test_cli_tour_opens_in_a_terminal_and_quits():
    """``ntp-probe tour`` on a real (pseudo) terminal: step 3 decoded (its graph in the editor), > sets up step 4,
    ctrl+q quits with 0."""
    r = run_in_pty([NTP_PROBE, "tour", "--step", "3"], timeout=120, keys=[("✓ tour step 3", b">"), ("✓ tour step 4", CTRL_Q)])
    assert r.rc == 0 and not r.timed_out, r.explain()
    assert "Clever Hans" in r.text and "The indecipherable token" in r.text and "Traceback" not in r.text


def test_cli_tour_needs_a_terminal_and_checks_its_step():
    from typer.testing import CliRunner

    from ntp_probe.cli import app as cli_app

    for args, said in ((["tour"], "the app needs a terminal"), (["tour", "--step", "0"], "--step: 0 is not a step"),
                       (["tour", "--step", "9"], "(1..8)"), (["tour", "--step", "x"], "--step")):
        res = CliRunner().invoke(cli_app, args)  # stdin is not a terminal here
        assert res.exit_code == 2 and res.output.startswith("error: ") and said in res.output, res.output
        assert len(res.output.strip().splitlines()) == 1
