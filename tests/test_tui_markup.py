"""Issue 30 #13: no text from a path, a model name, a file's line or an error is read as Textual markup in the app
— not in a notice (a toast: drawn only in a real terminal, so a pseudo-terminal test too), the graph editor's
status line, a prompt's error, nor a panel's border title. ``[/x]`` used to kill the app with a MarkupError;
``[@click=app.quit]`` became a live action."""

from __future__ import annotations

import os
import pty
import select
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from textual.content import Content
from textual.widgets import Label

from ntp_probe.tui.app import ProbeApp
from test_tui import GRAPH, sync, text_of

SIZE = (120, 40)
ROOT = Path(__file__).resolve().parents[1]


def _plain_toasts(app) -> list[str]:
    """Each notice's text as its toast draws it (Textual's Toast: markup only where the notice asks for it)."""
    out = []
    for n in app._notifications:
        assert n.markup is False, n
        content = Content(n.message)
        assert not content.spans  # no style, no link, no action
        out.append(content.plain)
    return out


@sync
async def test_a_model_path_with_brackets_is_a_plain_notice():
    for spec in ("no[/such]", "[@click=app.quit]x", "a\\[/x]\\"):
        app = ProbeApp([spec])
        async with app.run_test(size=SIZE) as pilot:
            await app.wait_idle()
            await pilot.pause()
            assert app.is_running and app.lm is None
            toasts = _plain_toasts(app)
            named = repr(spec)[1:-1]  # the error quotes the name
            assert toasts and named in toasts[0], toasts  # the toast's text is the message, brackets and all
            assert named in text_of(app, "#graph-status")  # the editor's status line too


@sync
async def test_screenshot_notice_names_a_bracketed_directory(tmp_path, trained, monkeypatch):
    where = tmp_path / "shots[" / "x]"  # the directory's path holds "[/x]"
    where.mkdir(parents=True)
    monkeypatch.chdir(where)
    app = ProbeApp([trained("next-token")], graph=GRAPH)
    async with app.run_test(size=SIZE) as pilot:
        await app.wait_idle()
        app.action_screenshot()
        await pilot.pause()
        saved = [t for t in _plain_toasts(app) if "screenshot saved to" in t]
        assert saved and "shots[/x]" in saved[0] and list(where.glob("*.svg"))
        os.chmod(where, 0o500)  # cannot be written: the error notice names the path too
        try:
            app.action_screenshot()
            await pilot.pause()
        finally:
            os.chmod(where, 0o700)
        if os.geteuid() != 0:
            assert any("cannot save a screenshot in" in t and "shots[/x]" in t for t in _plain_toasts(app))
        assert app.is_running


@sync
async def test_prompt_error_and_border_title_show_brackets(tmp_path, trained):
    src = trained("next-token").path
    run = tmp_path / "m[bold]x[@click=app.quit]"
    run.mkdir()
    shutil.copy(src, run / "model.safetensors")
    app = ProbeApp([str(run)], graph=GRAPH)
    async with app.run_test(size=SIZE) as pilot:
        await app.wait_idle()
        title = app.query_one("#decode").border_title  # the model's name, as drawn
        assert "m[bold]x[@click=app.quit]" in app.query_one("#decode")._border_title.plain, title
        await pilot.press("o")
        await pilot.pause()
        await pilot.press(*list("no[/such]:1"), "enter")
        await pilot.pause()
        err = app.screen.query_one("#prompt-error", Label)
        assert "no[/such]" in str(err.render()), str(err.render())
        await pilot.press("escape")
        await pilot.pause()
        assert app.is_running


def _pty_run(args: list[str], seconds_after: float, expect: bytes, timeout: float = 90) -> tuple[bytes, int | None]:
    """Run ``ntp-probe ARGS`` in a pseudo-terminal of 120×40 until ``expect`` is drawn (or ``timeout``), let it run
    ``seconds_after`` more, then press ctrl+q; (everything drawn, exit code or None if it would not quit)."""
    import fcntl
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "TERM": "xterm-256color",
           "COLUMNS": "120", "LINES": "40"}
    env.pop("TEXTUAL", None)
    p = subprocess.Popen([sys.executable, "-m", "ntp_probe", *args], stdin=slave, stdout=slave, stderr=slave,
                         env=env, close_fds=True, start_new_session=True)
    os.close(slave)
    out = bytearray()

    def pump(until: float, stop: bytes | None = None) -> None:
        while time.monotonic() < until and p.poll() is None:
            r, _, _ = select.select([master], [], [], 0.1)
            if r:
                try:
                    out.extend(os.read(master, 65536))
                except OSError:
                    return
            if stop is not None and stop in out:
                return

    try:
        pump(time.monotonic() + timeout, expect)
        pump(time.monotonic() + seconds_after)
        alive = p.poll() is None
        if alive:
            os.write(master, b"\x11")  # ctrl+q
            pump(time.monotonic() + 15)
        try:
            code = p.wait(timeout=10) if alive else p.returncode
        except subprocess.TimeoutExpired:
            code = None
        return bytes(out), (code if alive else -999 if p.returncode == 0 else p.returncode)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)


@pytest.mark.slow
def test_bracketed_model_path_in_a_real_terminal():
    """The toast is drawn only in a terminal: there, a MarkupError used to end the app at once."""
    drawn, code = _pty_run(["tui", "no[/such]"], 1.5, b"no[/such]")
    text = drawn.decode("utf-8", "replace")
    assert "MarkupError" not in text and "Traceback" not in text, text[-3000:]
    assert b"no[/such]" in drawn  # the notice drawn, brackets and all
    assert code == 0, (code, text[-3000:])  # it was still running, and quit on ctrl+q
