"""The app's why panel (y): goal-pair patching and edge knock-out at the answer token on show, from the worker."""

import pytest

from ntp_probe.checkpoint import load
from ntp_probe.probing import parse_for_model
from ntp_probe.probing.patching import patch
from ntp_probe.tui.app import ProbeApp
from ntp_probe.tui.widgets.why import WhyPanel
from test_tui import GRAPH, sync, text_of

SIZE = (120, 40)
G25 = "32,3|16,12|3,19|32,34|34,6|6,16|19,47|47,28/32,12"


@sync
async def test_why_panel_shows_patching_and_knockout_of_the_step_on_show(trained):
    lm = trained("next-token")
    app = ProbeApp([lm], graph=GRAPH)
    async with app.run_test(size=SIZE) as pilot:
        await app.wait_idle()
        assert app.probed.why is None and not app.query_one(WhyPanel).display  # not computed while hidden
        await pilot.press("y")
        await app.wait_idle()
        s = app.session
        assert app.query_one(WhyPanel).display and not app.query_one("#bottom").display
        res = app.probed.why
        ref = patch(lm, [parse_for_model(GRAPH, lm)], step=s.current, edges=True)
        assert res == ref and res["step"] == s.current + 1
        shown = text_of(app, "#why")
        assert f"goal pair at answer token {s.current + 1} of {s.length}" in shown
        assert "block 1" in shown and "edge knock-out" in shown and "◎ goal" in shown
        for e in res["edges"]:
            assert f"{e['delta_p']:+.2f}▶" in shown
        await pilot.press("left", "left")  # back to the decision step: the probes follow the token on show
        await app.wait_idle()
        assert app.session.current == 1 and app.probed.why["step"] == 2
        assert "goal pair at answer token 2 of 3" in text_of(app, "#why")
        await pilot.press("y")
        await app.wait_idle()
        assert not app.query_one(WhyPanel).display and app.query_one("#bottom").display
        await pilot.press("right")
        await app.wait_idle()
        assert app.probed.why is None  # hidden: not computed


@sync
async def test_why_panel_says_why_not(trained):
    lm = trained("next-token")
    app = ProbeApp([lm], graph="0→1, 1→2 || find(0 → 2)")  # one arm: no other leaf to move the goal to
    async with app.run_test(size=SIZE) as pilot:
        await app.wait_idle()
        await pilot.press("y")
        await app.wait_idle()
        assert app.probed.why is None and "two arms" in text_of(app, "#why")
        assert app.session is not None and app.is_running  # a notice in the panel, no crash


@sync
async def test_why_panel_on_mamba_patches_without_knockout():
    app = ProbeApp([load("g2-5-mamba-next-token")], graph=G25)
    async with app.run_test(size=SIZE) as pilot:
        await app.wait_idle()
        await pilot.press("y")
        await app.wait_idle()
        assert app.probed.why is not None and "edges" not in app.probed.why
        assert "not for Mamba" in text_of(app, "#why")


def test_snapshot_why_panel(snap_compare, trained):
    lm = trained("next-token")

    async def run_before(pilot) -> None:
        await pilot.app.wait_idle()
        await pilot.press("left", "left", "y")
        await pilot.app.wait_idle()

    assert snap_compare(ProbeApp([lm], graph=GRAPH), terminal_size=SIZE, run_before=run_before)


@sync
async def test_why_panel_names_a_near_zero_effect():
    """Issue 29 #5: at g2-5-next-token's decision the goal does not change the output: the panel says so in words
    with the raw logit differences, no normalized map; g2-5-reverse's step (an effect) keeps its map."""
    for name, near in (("g2-5-next-token", True), ("g2-5-reverse", False)):
        app = ProbeApp([load(name)], graph=G25)
        async with app.run_test(size=SIZE) as pilot:
            await app.wait_idle()
            await pilot.press("0", "right", "y")
            await app.wait_idle()
            res = app.probed.why
            assert app.session.current == 1 and res["step"] == 2 and res["near_zero"] is near, name
            shown = " ".join(text_of(app, "#why").split())
            assert ("the goal does not change this step's output: nothing to patch here" in shown) is near, shown
            assert ("strongest:" in shown) is not near and ("red: patching" in shown) is not near
            if near:
                assert f"|clean − corrupt| = {res['gap']:.4f} logits" in shown
                assert f"noise threshold {res['noise_threshold']:.3f}" in shown and "largest patched − corrupt" in shown
            assert "edge knock-out" in shown  # the knock-out still shows what the step reads
