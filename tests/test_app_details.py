"""Details a user of the app meets (issue 29, item 6): forced tokens mapped onto a comparison model by node, the
confidence strip at a forced step, the logit lens naming the correct node, ctrl+a in the editor, `c` with one
other model, the card modal, and a 40×10 terminal. Tiny real models (G(2,3), N=10) and the shipped G(2,5) ones."""


from textual.widgets import Header, TextArea

from ntp_probe.checkpoint import load
from ntp_probe.probing import ProbeSession, parse_for_model
from ntp_probe.tui.app import ProbeApp
from ntp_probe.tui.screens.modals import TextModal
from ntp_probe.tui.widgets.inside import layers_text
from ntp_probe.tui.widgets.render import num, strip
from conftest import sync

# G(2,3), N=10: arms 0→1→2 and 0→3→4, goal 2
GRAPH = "1→2, 0→1, 0→3, 3→4 || find(0 → 2)"
G25 = "34→18, 3→44, 27→2, 44→34, 43→27, 12→35, 12→3, 35→43 || find(12 → 2)"  # arms 12→35→43→27→2, 12→3→44→34→18




def plain(w) -> str:
    r = w.render()
    return str(getattr(r, "plain", r))


def test_mirror_maps_forced_nodes_by_node_not_position():
    fwd, rev, tl = load("g2-5-next-token"), load("g2-5-reverse"), load("g2-5-teacherless")
    g = parse_for_model(G25, fwd)
    s = ProbeSession(fwd, g, {1: 3})  # the first node of the wrong arm at the decision step
    same = s.mirror(tl)  # same answer order: the same prefix, at the same position
    assert same.forced == {1: 3} and not same.notes
    other = s.mirror(rev)  # goal→start: a wrong-arm node has no place there, left out and said so
    assert other.forced == {} and other.path == list(g.path)
    assert other.notes and "forced 3 not applied" in other.notes[0]
    on_path = ProbeSession(fwd, g, {2: 43})  # a node of the true path: where that node stands in the reverse answer
    m = on_path.mirror(rev)
    assert m.forced == {2: 43} and m.tokens[2] == 43  # path 12 35 43 27 2 → reverse 2 27 43 35 12


def test_confidence_strip_shows_the_forced_tokens_probability():
    lm = load("g2-5-next-token")
    g = parse_for_model(G25, lm)
    s = ProbeSession(lm, g, {1: 3, 2: 35})  # after 12 → 3, node 35 (another arm) at answer token 3: p ≈ 0
    st = s.steps[2]
    assert st.forced and float(st.probs[35]) < 0.05 < float(st.probs.max())
    shown = strip(s, label=False).plain
    third = shown.split("  3 ")[1].split("  4")[0]  # the third token's cell: '     .00'
    assert third.strip() == num(float(st.probs[35]), short=True) == ".00"  # not the top probability (1.0)


def test_logit_lens_names_the_correct_node():
    lm = load("g2-5-next-token")
    s = ProbeSession(lm, parse_for_model(G25, lm), cursor=4)
    rows = s.layers()
    text = layers_text(s, rows).plain
    correct = s.token_str(s.steps[s.current].correct)
    for r in rows:
        line = next(li for li in text.splitlines() if li.startswith(f"L{r['layer']} "))
        assert f" {correct} " in line.split("vs")[0], line


@sync
async def test_ctrl_a_selects_the_whole_graph_text(trained):
    app = ProbeApp([trained("next-token")], graph=GRAPH)
    async with app.run_test(size=(100, 32)) as pilot:
        await app.wait_idle()
        await pilot.press("e", "ctrl+a")
        area = app.query_one("#graph", TextArea)
        assert area.selected_text == area.text and area.text


@sync
async def test_c_with_one_other_model_hides_and_shows_it(trained):
    a, b = trained("next-token"), trained("reverse")
    app = ProbeApp([a, b], graph=GRAPH)
    async with app.run_test(size=(100, 32)) as pilot:
        await app.wait_idle()
        assert b.display_name in plain(app.query_one("#compare"))
        await pilot.press("c")
        await app.wait_idle()
        shown = plain(app.query_one("#compare"))
        assert "comparison hidden: c shows" in shown and "no second model" not in shown
        await pilot.press("c")
        await app.wait_idle()
        assert "(reverse)" in plain(app.query_one("#compare"))


@sync
async def test_card_opens_and_i_closes_it(trained):
    app = ProbeApp(["g2-5-next-token"])
    async with app.run_test(size=(100, 32)) as pilot:
        await app.wait_idle()
        await pilot.press("i")
        await pilot.pause()
        assert isinstance(app.screen, TextModal) and "# g2-5-next-token" in app.screen.markdown
        await pilot.press("i")
        await pilot.pause()
        assert not isinstance(app.screen, TextModal)


@sync
async def test_a_40x10_terminal_shows_the_answer_and_the_decision(trained):
    app = ProbeApp(["g2-5-next-token"], graph=G25)
    async with app.run_test(size=(40, 10)) as pilot:
        await app.wait_idle()
        await pilot.pause()
        assert not app.query_one(Header).display and not app.query_one("#star").display
        screen = app.screen.region
        for sel in ("#answer", "#strip"):
            w = app.query_one(sel)
            assert w.region.height and screen.contains_region(w.region), sel
        assert "answer" in plain(app.query_one("#answer"))
        await pilot.resize_terminal(120, 40)
        await pilot.pause()
        assert app.query_one(Header).display and app.query_one("#star").display


@sync
async def test_keys_after_a_modal_over_the_why_panel_drive_the_app_not_the_editor(trained):
    app = ProbeApp([trained("next-token")], graph=GRAPH)
    async with app.run_test(size=(100, 32)) as pilot:
        await app.wait_idle()
        text = app.query_one("#graph", TextArea).text
        await pilot.press("y", "question_mark")
        await pilot.pause()
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.focused, TextArea)
        await pilot.press("y")  # back: the why panel toggles off (a key typed into the graph would not)
        await app.wait_idle()
        assert not app.why and app.query_one("#graph", TextArea).text == text
