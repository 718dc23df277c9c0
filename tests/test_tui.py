"""The Textual app, driven by Pilot on tiny real models (G(2,3), N=10, trained in about a second)."""

import asyncio
import random
import subprocess
import sys
from pathlib import Path

import pytest
from textual.widgets import Label, TextArea
from typer.testing import CliRunner

from ntp_probe.cli import app as cli_app
from ntp_probe.probing import ProbeSession, parse_for_model
from ntp_probe.task import format_human, generate, read_lines
from ntp_probe.tui.app import ProbeApp
from ntp_probe.tui.screens.modals import Prompt, TextModal
from conftest import sync

FIXTURES = Path(__file__).parent / "fixtures"
# G(2,3), N=10: arms 0→1→2 and 0→3→4, goal 2
GRAPH = "1→2, 0→1, 0→3, 3→4 || find(0 → 2)"
SIZE = (100, 32)




def text_of(app, selector: str) -> str:
    w = app.query_one(selector)
    r = w.render() if not isinstance(w, Label) else w.render()
    return str(getattr(r, "plain", r))


async def type_text(pilot, text: str) -> None:
    await pilot.press(*list(text))


@pytest.fixture
def lm(trained):
    return trained("next-token")


@sync
async def test_opens_on_a_graph_and_decodes(lm):
    app = ProbeApp([lm], graph=GRAPH)
    async with app.run_test(size=SIZE) as pilot:
        await app.wait_idle()
        s = app.session
        assert s is not None and s.graph.start == 0 and s.graph.goal == 2
        assert s.cursor == s.length == 3 and not s.forced
        ref = ProbeSession(lm, parse_for_model(GRAPH, lm))
        assert s.tokens == ref.tokens
        shown = text_of(app, "#answer")
        assert " → ".join(str(t) for t in s.tokens) in shown
        assert "◎ goal" in text_of(app, "#star")
        assert "confidence" in text_of(app, "#strip")
        assert "decision" in text_of(app, "#dist-head") or "answer token 3 of 3" in text_of(app, "#dist-head")
        assert "✓" in text_of(app, "#graph-status")


@sync
async def test_random_graph_default_and_key(lm):
    app = ProbeApp([lm], seed=5)
    async with app.run_test(size=SIZE) as pilot:
        await app.wait_idle()
        g0 = next(generate(2, 3, 10, 1, seed=5).graphs())
        assert app.session.graph.edges == g0.edges
        assert app.query_one("#graph", TextArea).text == format_human(g0)
        await pilot.press("r")
        await app.wait_idle()
        g1 = next(generate(2, 3, 10, 1, seed=6).graphs())
        assert app.session.graph.edges == g1.edges and app.graph_seed == 6
        assert app.query_one("#graph", TextArea).text == format_human(g1)


@sync
async def test_type_a_graph_validates_in_place(lm):
    app = ProbeApp([lm], graph=GRAPH)
    async with app.run_test(size=SIZE) as pilot:
        await app.wait_idle()
        await pilot.press("e")
        editor = app.query_one("#graph", TextArea)
        assert editor.has_focus
        editor.load_text("")
        await type_text(pilot, "0->3, 3->4, 0->1, 1->2 || find(0 -> 4)")
        await app.wait_idle()
        assert app.session.graph.goal == 4 and app.session.true_path == [0, 3, 4]
        assert "goal 4" in text_of(app, "#graph-status")
        # a bad token: the message names the edge and the token, the session keeps the last good graph
        await pilot.press("backspace", "backspace", "backspace", "backspace", "backspace", "backspace",
                          "backspace", "backspace", "backspace", "backspace", "backspace", "backspace",
                          "backspace", "backspace", "backspace", "backspace", "backspace", "backspace",
                          "backspace", "backspace", "backspace", "backspace")
        editor.load_text("")
        await type_text(pilot, "0->3, 3->x, 0->1, 1->2 || find(0 -> 4)")
        await app.wait_idle()
        status = text_of(app, "#graph-status")
        assert "edge 2" in status and "'x' is not a node id" in status
        assert app.session.graph.goal == 4  # unchanged
        # the line format works too
        editor.load_text("0,1|1,2|0,3|3,4/0,2")
        await app.wait_idle()
        assert app.session.graph.goal == 2 and "✓" in text_of(app, "#graph-status")
        # escape leaves the editor, and then keys drive the app again
        await pilot.press("escape", "0")
        await app.wait_idle()
        assert not editor.has_focus and app.session.cursor == 0


@sync
async def test_graph_model_mismatch_is_a_message(lm):
    app = ProbeApp([lm], graph=GRAPH)
    async with app.run_test(size=SIZE) as pilot:
        await app.wait_idle()
        app.query_one("#graph", TextArea).load_text("1→2, 0→1, 0→12, 12→4 || find(0 → 2)")
        await app.wait_idle()
        assert "node id 12 is out of range" in text_of(app, "#graph-status")
        assert 12 not in app.session.graph.nodes
        app.query_one("#graph", TextArea).load_text("1→2, 0→1 || find(0 → 7)")
        await app.wait_idle()
        assert "goal 7 is not in the graph" in text_of(app, "#graph-status")
        app.query_one("#graph", TextArea).load_text("")
        await app.wait_idle()
        assert "empty" in text_of(app, "#graph-status")


@sync
async def test_step_back_run_to_end_reset(lm):
    app = ProbeApp([lm], graph=GRAPH)
    async with app.run_test(size=SIZE) as pilot:
        await app.wait_idle()
        await pilot.press("0")
        await app.wait_idle()
        assert app.session.cursor == 0 and "▮" in text_of(app, "#answer")
        assert "answer token 1 of 3" in text_of(app, "#dist-head")
        await pilot.press("right")
        await app.wait_idle()
        assert app.session.cursor == 1 and "answer token 2 of 3 (decision step)" in text_of(app, "#dist-head")
        await pilot.press("n", "n", "n")
        await app.wait_idle()
        assert app.session.cursor == 3
        await pilot.press("left")
        await app.wait_idle()
        assert app.session.cursor == 2
        await pilot.press("g")
        await app.wait_idle()
        assert app.session.cursor == 3 and ("✓" in text_of(app, "#answer") or "✗" in text_of(app, "#answer"))


@sync
async def test_clever_hans_key_forces_the_wrong_arm(lm):
    app = ProbeApp([lm], graph=GRAPH)
    async with app.run_test(size=SIZE) as pilot:
        await app.wait_idle()
        before = [st.probs.clone() for st in app.session.steps]
        await pilot.press("w")
        await app.wait_idle()
        s = app.session
        assert s.forced == {0: 0, 1: 3} and s.tokens[:2] == [0, 3]
        assert s.steps[2].legal == [4]  # re-scored after the forced node: its child is the legal move
        assert not s.steps[2].probs.equal(before[2])
        assert "3*" in text_of(app, "#answer") and "3*" in text_of(app, "#star")
        assert "Clever Hans" in text_of(app, "#story")
        assert "forced" in text_of(app, "#dist-head") or s.current == 2
        await pilot.press("u")
        await app.wait_idle()
        assert app.session.forced == {0: 0}
        await pilot.press("x")
        await app.wait_idle()
        assert app.session.forced == {} and "3*" not in text_of(app, "#answer")


@sync
async def test_force_from_topk_and_by_typing(lm):
    app = ProbeApp([lm], graph=GRAPH)
    async with app.run_test(size=SIZE) as pilot:
        await app.wait_idle()
        await pilot.press("0", "right")  # the decision step
        await app.wait_idle()
        topk = app.query_one("#topk")
        assert topk.has_focus and topk.option_count == 10
        second = int(topk.get_option_at_index(1).id)
        await pilot.press("down", "enter")
        await app.wait_idle()
        assert app.session.forced == {1: second} and app.session.tokens[1] == second
        assert app.session.cursor == 2
        # by typing an id, with the error in place first
        await pilot.press("f")
        await pilot.pause()
        assert isinstance(app.screen, Prompt)
        await type_text(pilot, "42")
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, Prompt)
        assert "out of range" in str(app.screen.query_one("#prompt-error", Label).render())
        await pilot.press("backspace", "backspace")
        await type_text(pilot, "²")  # a digit to str.isdigit, not a node id
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, Prompt)
        assert "not a node id" in str(app.screen.query_one("#prompt-error", Label).render())
        await pilot.press("backspace", "4", "enter")
        await app.wait_idle()
        assert not isinstance(app.screen, Prompt)
        assert app.session.forced == {1: second, 2: 4} and app.session.tokens[2] == 4


@sync
async def test_unknown_model_is_a_message_not_a_crash(tmp_path):
    app = ProbeApp([str(tmp_path / "nope")])
    async with app.run_test(size=SIZE) as pilot:
        await app.wait_idle()
        assert app.session is None and "not found" in app.load_error
        assert "not found" in text_of(app, "#graph-status")
        await pilot.press("right", "w", "r", "i", "f")
        await pilot.pause()
        assert app.is_running and app.session is None
        bad = tmp_path / "bad.safetensors"
        bad.write_bytes(b"")
    app = ProbeApp([str(bad)])
    async with app.run_test(size=SIZE) as pilot:
        await app.wait_idle()
        assert "empty file" in app.load_error


@sync
async def test_load_a_line_from_a_data_file(lm, tmp_path):
    data = FIXTURES / "deg_2_path_3_nodes_10_test_head100.txt"
    app = ProbeApp([lm], graph=GRAPH)
    async with app.run_test(size=SIZE) as pilot:
        await app.wait_idle()
        await pilot.press("o")
        await pilot.pause()
        assert isinstance(app.screen, Prompt)
        await type_text(pilot, "nowhere.txt:1")
        await pilot.press("enter")
        await pilot.pause()
        assert "no such file" in str(app.screen.query_one("#prompt-error", Label).render())
        app.screen.query_one("Input").value = f"{data}:3"
        await pilot.press("enter")
        await app.wait_idle()
        g = read_lines(data, 10)[2]
        assert app.session.graph.edges == g.edges and app.session.graph.goal == g.goal
        assert app.query_one("#graph", TextArea).text == format_human(g)
        # a line past the end, and a file of graphs the model cannot read, are messages
        await pilot.press("o")
        await pilot.pause()
        app.screen.query_one("Input").value = f"{data}:1000"
        await pilot.press("enter")
        await app.wait_idle()
        assert "out of range" in text_of(app, "#graph-status")
        big = FIXTURES / "deg_2_path_5_nodes_50_test_head200.txt"
        await pilot.press("o")
        await pilot.pause()
        app.screen.query_one("Input").value = f"{big}:1"
        await pilot.press("enter")
        await app.wait_idle()
        assert "out of range" in text_of(app, "#graph-status")
        assert app.session.graph.edges == g.edges


@sync
async def test_compare_models_side_by_side(trained):
    nt, rev = trained("next-token"), trained("reverse")
    app = ProbeApp([nt, rev], graph=GRAPH)
    async with app.run_test(size=SIZE) as pilot:
        await app.wait_idle()
        assert app.probed.mirror is not None and app.probed.mirror.lm is rev
        await pilot.press("w")
        await app.wait_idle()
        m = app.probed.mirror
        assert m.graph == app.session.graph
        # forced tokens mapped by node: the start (on the path) at the reverse model's last position; the wrong
        # arm's node 3 has no place in a goal→start answer, left out and said so
        assert m.forced == {2: 0} and m.tokens[2] == 0
        shown = text_of(app, "#compare")
        assert "reverse" in shown and "0*" in shown and "forced 3 not applied" in shown
        await pilot.press("c")
        await app.wait_idle()
        assert app.compare_lm is None and "comparison hidden" in text_of(app, "#compare")


@sync
async def test_compare_mismatch_is_shown_in_the_pane(trained, tmp_path):
    from conftest import tiny_config

    from ntp_probe.checkpoint import load
    from ntp_probe.train import train

    train(tiny_config(tmp_path, "next-token", steps=2, nodes=20, eval_every=2), tmp_path)
    wide = load(tmp_path)
    app = ProbeApp([wide, trained("next-token")], graph="1→2, 0→1, 0→13, 13→4 || find(0 → 2)")
    async with app.run_test(size=SIZE) as pilot:
        await app.wait_idle()
        assert app.session is not None and app.probed.mirror is None
        assert "node id 13 is out of range" in app.probed.mirror_error
        assert "out of range" in text_of(app, "#compare")


@sync
async def test_attention_panel(lm):
    app = ProbeApp([lm], graph=GRAPH)
    async with app.run_test(size=SIZE) as pilot:
        await app.wait_idle()
        shown = text_of(app, "#attention")
        assert "layer 1/1 head 1/2" in shown and "most-attended edge" in shown
        (u, v), _ = app.probed.attention.top_edge(0, 0)
        assert f"{u}→{v}" in shown
        await pilot.press("]")
        await pilot.pause()
        assert "head 2/2" in text_of(app, "#attention")


@sync
async def test_help_card_palette_and_screenshot(lm, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = ProbeApp([lm], graph=GRAPH)
    async with app.run_test(size=SIZE) as pilot:
        await app.wait_idle()
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, TextModal) and "Clever Hans" in app.screen.markdown
        await pilot.press("escape", "i")
        await pilot.pause()
        assert isinstance(app.screen, TextModal)
        assert "next-token" in app.screen.markdown and "G(2,3) N=10" in app.screen.markdown
        assert "steps" in app.screen.markdown
        await pilot.press("escape")
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Force the wrong arm (Clever Hans demo)" in titles and "Random graph" in titles
        await pilot.press("s")
        await pilot.pause()
        assert list(tmp_path.glob("*.svg"))


@sync
async def test_stress_random_keys(lm):
    """Hammer the keys in a seeded random order; the screen must end equal to the session, and the session
    equal to the same operations applied one by one to a plain ProbeSession."""
    rng = random.Random(7)
    keys = [rng.choice(["right", "left", "w", "r", "u", "g", "0", "n", "x"]) for _ in range(300)]
    app = ProbeApp([lm], seed=3)
    async with app.run_test(size=SIZE) as pilot:
        await app.wait_idle()
        for i in range(0, len(keys), 25):
            await pilot.press(*keys[i : i + 25])
        await app.wait_idle()
        s = app.session
        # the reference: the same keys, one at a time, through the API
        seed = 3
        ref = ProbeSession(lm, next(generate(2, 3, 10, 1, seed=seed).graphs()))
        for k in keys:
            if k in ("right", "n"):
                ref.step()
            elif k == "left":
                ref.back()
            elif k == "g":
                ref.run_to_end()
            elif k == "0":
                ref.reset()
            elif k == "w":
                ref.force_wrong_arm()
            elif k == "u" and ref.forced:
                ref.unforce(max(ref.forced))
            elif k == "x":
                ref.clear_forced()
            elif k == "r":
                seed += 1
                ref.set_graph(next(generate(2, 3, 10, 1, seed=seed).graphs()))
                ref.run_to_end()
        assert (s.graph.edges, s.tokens, s.forced, s.cursor) == (ref.graph.edges, ref.tokens, ref.forced, ref.cursor)
        assert app.applied == len(keys) + 1  # every key press applied once (plus the first graph)
        # what is on screen is the session
        answer = text_of(app, "#answer")
        for st in s.steps:
            if st.position < s.cursor:
                assert (str(st.token) + ("*" if st.forced else "")) in answer
        assert app.query_one("#graph", TextArea).text == format_human(s.graph)
        assert app.displayed() == (s.tokens, [st.forced for st in s.steps], s.cursor)


@sync
async def test_decoding_strategy_cycles_and_mirrors(trained):
    nt, rev = trained("next-token"), trained("reverse")
    app = ProbeApp([nt, rev], graph=GRAPH)
    async with app.run_test(size=SIZE) as pilot:
        await app.wait_idle()
        seen = []
        for _ in range(4):
            await pilot.press("d")
            await app.wait_idle()
            seen.append(app.session.strategy.kind)
            assert app.probed.mirror.strategy == app.session.strategy  # the side model decodes the same way
        assert seen == ["sample", "beam", "verify", "greedy"]
        await pilot.press("d", "d", "d")  # to the verifier: it keeps sampling until the answer is a valid path
        await app.wait_idle()
        s = app.session
        assert s.strategy.kind == "verify" and s.strategy.tries == 8
        ref = ProbeSession(nt, parse_for_model(GRAPH, nt), strategy=s.strategy)
        assert s.tokens == ref.tokens and s.tries == ref.tries
        assert f"verifier, ≤8 tries: {s.tries} tries" in app.query_one("#decode").border_title


@sync
async def test_logit_lens_panel(lm):
    app = ProbeApp([lm], graph=GRAPH)
    async with app.run_test(size=SIZE) as pilot:
        await app.wait_idle()
        await pilot.press("0", "right")  # the decision step
        await pilot.press("l")
        await app.wait_idle()
        shown = text_of(app, "#attention")
        rows = app.session.layers()
        assert app.probed.lens == rows and len(rows) == lm.model.config.n_layer
        assert "logit lens at answer token 2 of 3 (decision step)" in shown
        r = rows[-1]
        assert f"L{r['layer']} " in shown and f"vs {r['best_wrong']:>3} {r['best_wrong_prob']:.2f}" in shown
        # the last layer's readout is the model's own distribution at that step
        assert abs(r["correct_prob"] - app.session.steps[1].correct_prob) < 1e-5
        await pilot.press("l")
        await pilot.pause()
        assert "most-attended edge" in text_of(app, "#attention")


@sync
async def test_session_save_and_open(trained, tmp_path):
    nt, rev = trained("next-token"), trained("reverse")
    f = tmp_path / "s.json"
    app = ProbeApp([nt, rev], graph=GRAPH)
    async with app.run_test(size=SIZE) as pilot:
        await app.wait_idle()
        await pilot.press("w", "d", "d")  # wrong arm forced, beam search
        await app.wait_idle()
        saved = (app.session.tokens, dict(app.session.forced), app.session.strategy)
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(app.screen, Prompt)
        app.screen.query_one("Input").value = str(tmp_path / "nowhere" / "s.json")
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, Prompt) and "no such directory" in text_of(app.screen, "#prompt-error")
        app.screen.query_one("Input").value = str(f)
        await pilot.press("enter")
        await app.wait_idle()
        assert f.is_file() and "saved" in str([n.message for n in app._notifications])
        await pilot.press("x", "r", "d")  # change everything
        await app.wait_idle()
        assert app.session.graph != parse_for_model(GRAPH, nt)
        await pilot.press("ctrl+o")
        await pilot.pause()
        app.screen.query_one("Input").value = str(f)
        await pilot.press("enter")
        await app.wait_idle()
        s = app.session
        assert (s.tokens, s.forced, s.strategy) == saved and s.lm is nt
        assert app.query_one("#graph", TextArea).text == format_human(s.graph)
        assert "loaded session" in text_of(app, "#graph-status")
        # a session of the side model makes it the main one; a stale file is a message, the session stays
        side = ProbeSession(rev, parse_for_model(GRAPH, rev))
        side.save(tmp_path / "rev.json")
        bad = tmp_path / "bad.json"
        bad.write_text('{"format": "ntp-probe-session/1", "model": "%s", "graph": "1,2|0,1/0,99"}' % nt.path)
        for name in ("rev.json", "bad.json"):
            await pilot.press("ctrl+o")
            await pilot.pause()
            app.screen.query_one("Input").value = str(tmp_path / name)
            await pilot.press("enter")
            await app.wait_idle()
        assert app.lm is rev and app.session.lm is rev and app.session.graph == side.graph
        assert "stale session" in text_of(app, "#graph-status")


def test_snapshot_main_screen(snap_compare, trained):
    lm = trained("next-token")

    async def run_before(pilot) -> None:
        await pilot.app.wait_idle()
        await pilot.press("w")
        await pilot.app.wait_idle()

    assert snap_compare(ProbeApp([lm], graph=GRAPH), terminal_size=SIZE, run_before=run_before)


def test_app_module_does_not_import_torch():
    code = "import sys, ntp_probe.tui.app, ntp_probe.cli; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_has_tui_command():
    res = CliRunner().invoke(cli_app, ["tui", "--help"])
    assert res.exit_code == 0 and "probing app" in res.output


def _help_text(app) -> str:
    assert isinstance(app.screen, TextModal)
    return app.screen.markdown


@sync
async def test_help_and_palette_are_built_from_the_bindings(lm):
    """Every key the app answers is in the help screen with its keys and text, and in the README's key table;
    every binding but quit is a palette command."""
    from ntp_probe.tui.screens.modals import keys_text

    app = ProbeApp([lm], graph=GRAPH)
    async with app.run_test(size=SIZE) as pilot:
        await app.wait_idle()
        await pilot.press("f1")
        await pilot.pause()
        shown = _help_text(app)
        bindings = app.key_bindings()
        assert len(bindings) >= 20
        for b in bindings:
            assert b.tooltip, f"{b.key}: no tooltip, so no help line"
            assert f"* `{keys_text(b)}`: {b.tooltip}" in shown
        assert "ctrl+p" in shown  # the palette's own key
        await pilot.press("escape")
        commands = {c.title: c for c in app.get_system_commands(app.screen)}
        for b in app.BINDINGS:
            if b.action not in ("quit", "leave_editor"):
                assert b.tooltip.partition(": ")[0] in commands
        app.call_later(commands["Random graph"].callback)  # as the palette runs a command
        await app.wait_idle()
        assert app.graph_seed == 1 and app.session.graph.edges == next(generate(2, 3, 10, 1, seed=1).graphs()).edges
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    table = readme[readme.index("## The app"):]
    table = table[: table.index("\n## ", 1)]
    for b in app.BINDINGS:
        names = [k.strip() for k in b.key.split(",")]
        shown_as = {n: n for n in names} | {"right": "→", "left": "←", "question_mark": "?",
                                             "right_square_bracket": "]", "left_square_bracket": "[",
                                             "comma": ",", "full_stop": "."}
        assert any(f"`{shown_as.get(n, n)}`" in table for n in names), f"README's key table lacks {b.key}"


@sync
async def test_one_name_for_the_answer_position(trained):
    """The decoding title, the distribution header, the strip, the attention and lens panels and the force
    prompt all name the position on show the same way: answer token k of n, from 1 (issue #16)."""
    for objective in ("next-token", "reverse"):
        m = trained(objective)
        app = ProbeApp([m], graph=GRAPH)
        async with app.run_test(size=SIZE) as pilot:
            await app.wait_idle()
            for cursor in range(4):
                await pilot.press("0", *(["n"] * cursor))
                await app.wait_idle()
                k = min(cursor, 2) + 1
                name = f"answer token {k} of 3"
                assert app.session.token_label() == name
                assert name in app.query_one("#decode").border_title
                assert text_of(app, "#dist-head").startswith(name)
                assert f"at {name}" in text_of(app, "#attention")
                strip = app.query_one("#strip").render()
                current = [span for span in strip.spans if getattr(span.style, "reverse", False)]
                assert len(current) == 1 and strip.plain[current[0].start : current[0].end].startswith(str(k))
                await pilot.press("l")
                assert f"logit lens at {name}" in text_of(app, "#attention")
                await pilot.press("l", "f")
                await pilot.pause()
                assert isinstance(app.screen, Prompt) and app.screen.title_text == f"force which node at {name}?"
                await pilot.press("escape")
            await pilot.press("f1")
            await pilot.pause()
            assert "answer token k of n" in _help_text(app)


@sync
async def test_failed_writes_are_messages(lm, tmp_path, monkeypatch):
    """A screenshot or a session save that cannot be written says so and the app goes on, session intact
    (issue #15: `cd /sys/kernel && ntp-probe tui`, press s)."""
    gone = tmp_path / "gone"
    gone.mkdir()
    places = [gone] + ([Path("/sys/kernel")] if Path("/sys/kernel").is_dir() else [])
    for place in places:
        monkeypatch.chdir(place)
        if place == gone:
            gone.rmdir()  # the current directory no longer exists
        app = ProbeApp([lm], graph=GRAPH)
        async with app.run_test(size=SIZE) as pilot:
            await app.wait_idle()
            await pilot.press("w")
            await app.wait_idle()
            before = (app.session.tokens, dict(app.session.forced))
            await pilot.press("s")
            await pilot.pause()
            assert app.is_running
            messages = [n.message for n in app._notifications]
            assert any("cannot save a screenshot" in m for m in messages), messages
            if place != gone:
                await pilot.press("ctrl+s")
                await pilot.pause()
                app.screen.query_one("Input").value = str(place / "s.json")
                await pilot.press("enter")
                await app.wait_idle()
                assert app.is_running and not (place / "s.json").exists()
                assert any("cannot save the session" in n.message for n in app._notifications)
                assert "cannot save the session" in text_of(app, "#graph-status")
            assert (app.session.tokens, dict(app.session.forced)) == before


@sync
async def test_a_panel_is_one_widget_and_one_compose_line(lm):
    """Adding a panel: a ProbeText subclass and its line in compose; it is handed every decode like the others."""
    from rich.text import Text

    from ntp_probe.tui.widgets.base import ProbeText

    class Tokens(ProbeText):
        def probe_text(self, p):
            return Text(f"tokens {p.session.tokens} cursor {p.session.cursor}")

    class WithTokens(ProbeApp):
        def compose(self):
            yield from super().compose()
            yield Tokens("", id="tokens")

    app = WithTokens([lm], graph=GRAPH)
    async with app.run_test(size=SIZE) as pilot:
        await app.wait_idle()
        await pilot.press("w", "0", "n")
        await app.wait_idle()
        assert text_of(app, "#tokens") == f"tokens {app.session.tokens} cursor 1"


def test_model_card_is_the_shipped_card_or_one_from_the_header(lm):
    """The app's card (i) and the shipped README come from the one card_markdown (cards.py)."""
    from ntp_probe.cards import card_markdown, model_card
    from ntp_probe.checkpoint import load

    shipped = load("g2-5-next-token")
    assert model_card(shipped) == (shipped.path.parent / "README.md").read_text()
    card = model_card(lm)
    assert card == card_markdown(lm) and card.startswith(f"# {lm.display_name}")
    assert "G(2,3) N=10" in card and "- steps: " in card and "## Figures in the model's header" in card


# the README's keys (less ctrl+q), paging keys, keys typed into prompts and the editor, and terminal resizes
MONKEY_KEYS = ["right", "n", "space", "left", "p", "g", "0", "w", "up", "down", "enter", "f", "u", "x", "r", "t", "e",
               "escape", "o", "c", "left_square_bracket", "right_square_bracket", "l", "d", "ctrl+s", "ctrl+o", "i",
               "question_mark", "s", "ctrl+p", "pagedown", "pageup", "home", "end", "tab", "shift+tab", "backspace",
               "1", "3", "9", "colon", "slash", "tilde", "a", "z", "comma", "minus", "greater_than_sign", "delete",
               "escape", "escape", "escape"]
MONKEY_SIZES = [(40, 10), (120, 40), (60, 16), (100, 32)]


SCREEN_KEYS = {"ctrl+p", "escape", "enter", "o", "f", "ctrl+s", "ctrl+o", "i", "question_mark"}


async def fast_keys(pilot, keys) -> None:
    """Keys as a fast typist sends them: each handled in turn, without Pilot's wait for idle after every key
    (0.1 s a key on the dev machine), except the keys that open or close a screen (a person waits for it to show;
    Textual's own command palette is not safe against keys sent in the same millisecond it opens or closes)."""
    app = pilot.app
    from textual import events
    from textual.app import _character_to_key
    from textual.keys import _get_unicode_name_from_key
    import unicodedata

    for key in keys:
        if key in SCREEN_KEYS:
            await pilot.press(key)
            continue
        key = _character_to_key(key) if len(key) == 1 and not key.isalnum() else key
        try:
            char = unicodedata.lookup(_get_unicode_name_from_key(key))
        except KeyError:
            char = key if len(key) == 1 else None
        event = events.Key(key, char)
        event.set_sender(app)
        app._driver.send_message(event)
        await asyncio.sleep(0.002)


@pytest.mark.slow
@pytest.mark.parametrize("size", [(40, 10), (120, 40)], ids=["40x10", "120x40"])
@sync
async def test_two_thousand_random_keys(trained, tmp_path, monkeypatch, size):
    """Issue 23 (items 5-7, 19 and what this walk found): 2,000 seeded random keys, every key of the README, the
    paging keys, text typed into every prompt (path:line, a session file, a node id, the editor) and terminal resizes;
    the app must still be running, every queued operation applied, with no exception."""
    monkeypatch.chdir(tmp_path)  # s writes screenshots here
    rng = random.Random(23)
    keys = [rng.choice(MONKEY_KEYS) for _ in range(2000)]
    app = ProbeApp([trained("next-token"), trained("reverse")], seed=1)
    async with app.run_test(size=size) as pilot:
        await app.wait_idle()
        for i in range(0, len(keys), 50):
            await fast_keys(pilot, keys[i : i + 50])
            if rng.random() < 0.3:
                await pilot.resize_terminal(*rng.choice(MONKEY_SIZES))
            await pilot.pause()
        await pilot.resize_terminal(*size)
        await app.wait_idle()
        assert app.is_running
        assert app.session is not None


@sync
async def test_prompts_paging_and_a_bad_header_are_messages(lm, tmp_path):
    """Issue 23: the path prompts (o, ctrl+o, ctrl+s) crashed on ~nosuchuser/x:1 (RuntimeError) and on a 300-character
    name (OSError: File name too long); pagedown/pageup at 40×10 crashed (KeyError: 0 in OptionList._move_page);
    a header whose training.config is not an object crashed the model card (i)."""
    app = ProbeApp([lm], graph=GRAPH)
    async with app.run_test(size=SIZE) as pilot:
        await app.wait_idle()
        for key in ("o", "ctrl+o", "ctrl+s"):
            for text, fragment in (("~nosuchuser/x:1", "no such user"), ("x" * 300 + ":1", "File name too long")):
                await pilot.press(key)
                await pilot.pause()
                app.screen.query_one("Input").value = text
                await pilot.press("enter")
                await pilot.pause()
                assert isinstance(app.screen, Prompt) and fragment in str(app.screen.query_one("#prompt-error", Label).render())
                await pilot.press("escape")
                await pilot.pause()
        assert app.is_running
    app = ProbeApp([lm], graph=GRAPH)
    async with app.run_test(size=(40, 10)) as pilot:
        await app.wait_idle()
        await pilot.press("pagedown", "pageup", "pagedown", "ctrl+p", "pagedown", "pageup", "escape")
        await app.wait_idle()
        assert app.is_running and app.session is not None
    from hostile import meta_with, write_model

    bad = write_model(tmp_path / "cfg.safetensors", {**meta_with(), "training": {"config": 5}})
    app = ProbeApp([str(bad)])
    async with app.run_test(size=SIZE) as pilot:
        await app.wait_idle()
        await pilot.press("i")
        await pilot.pause()
        assert app.is_running and "config 5: not an object" in app.load_error
