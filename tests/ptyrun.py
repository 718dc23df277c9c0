"""Run a command in a pseudo-terminal, as a user's terminal runs it: what behaves differently on a TTY (Rich live
views and progress bars, colours, the app) is tested through this one helper.

The command gets a new session whose controlling terminal is the pty's slave (so Ctrl-C typed as ``\\x03`` is a
SIGINT to it, as in a shell), a fixed window size (``COLUMNS``×``LINES``, also set in the environment), and
``TERM=xterm-256color``. ``keys`` are (text, bytes) pairs: once ``text`` has appeared in the output (ANSI codes
removed), ``bytes`` are typed. The output is read until the command exits and the pty is closed, or ``timeout``.

    r = run_in_pty([NTP_PROBE, "watch", run, "--follow", "0.2"], keys=[("finished", CTRL_C)])
    assert r.rc == 0 and "step" in r.text
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from dataclasses import dataclass
from pathlib import Path

COLUMNS, LINES = 120, 40
CTRL_C, CTRL_Q = b"\x03", b"\x11"
NTP_PROBE = str(Path(sys.executable).parent / "ntp-probe")  # the CLI installed in the test's environment

# CSI (colours, cursor moves, modes), OSC (titles, links), single-character escapes, other controls but \n and \t
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[PX^_][^\x1b]*\x1b\\|\x1b[@-Z\\-_]|\x1b.|[\x00-\x08\x0b-\x1f\x7f]")


def strip_ansi(raw: str) -> str:
    """Terminal output as text: escape sequences dropped, ``\\r\\n`` as ``\\n``, other carriage returns as newlines
    (a redrawn line's every version stays readable)."""
    return _ANSI.sub("", raw.replace("\r\n", "\n").replace("\r", "\n"))


@dataclass
class PtyResult:
    rc: int | None  # the exit status (negative: killed by that signal); None: still running at the timeout, killed
    raw: str  # everything written to the terminal, escape codes included
    timed_out: bool
    seconds: float
    cpu: float = 0.0  # user + system seconds of the command and what it waited for

    @property
    def text(self) -> str:
        return strip_ansi(self.raw)

    def explain(self, tail: int = 4000) -> str:
        """For an assertion message: the status and the end of the output as text."""
        return f"exit {self.rc}{' (timed out)' if self.timed_out else ''} after {self.seconds:.1f}s; output:\n{self.text[-tail:]}"


def _make_controlling_tty() -> None:  # in the child, after setsid (start_new_session)
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def run_in_pty(args: list[str], *, cwd: str | Path | None = None, env: dict | None = None, timeout: float = 120,
               keys: list[tuple[str, bytes]] = (), columns: int = COLUMNS, lines: int = LINES) -> PtyResult:
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
    full_env = {**os.environ, **(env or {}), "COLUMNS": str(columns), "LINES": str(lines), "TERM": "xterm-256color"}
    for k in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "CI"):  # a terminal, as a user's
        full_env.pop(k, None)
    full_env.setdefault("OMP_NUM_THREADS", "1")
    start = time.monotonic()
    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=full_env, close_fds=True,
                            start_new_session=True, preexec_fn=_make_controlling_tty)
    os.close(slave)
    chunks: list[bytes] = []
    pending = list(keys)
    timed_out = False
    try:
        while True:
            left = timeout - (time.monotonic() - start)
            if left <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([master], [], [], min(left, 0.1))
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every slave fd is closed (the command and its children are gone)
                    break
                if not data:
                    break
                chunks.append(data)
            while pending and pending[0][0] in strip_ansi(b"".join(chunks).decode("utf-8", "replace")):
                os.write(master, pending.pop(0)[1])
    finally:
        if timed_out:
            _kill(proc)
        timer = threading.Timer(10, _kill, (proc,))  # the terminal closed: it is ending (else it is killed)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        os.close(master)
    raw = b"".join(chunks).decode("utf-8", "replace")
    return PtyResult(None if timed_out else proc.returncode, raw, timed_out, time.monotonic() - start,
                     usage.ru_utime + usage.ru_stime)


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # its own session and process group: only what it started
    except ProcessLookupError:
        pass
