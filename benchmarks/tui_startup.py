"""Time from `ntp-probe tui` to its first screen, and to the first decoded graph, in a real pseudo-terminal.

The process is started exactly as a user starts it (imports included) on a 100x32 pty; the script reads
the terminal output until the app's header is drawn (first screen) and until the decoding panel shows the
shipped model's answer (ready). Also: the bare import cost of the modules each phase needs.

    python benchmarks/tui_startup.py [--repeat 5] [--model g2-5-next-token]
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time

from _common import machine, median, table

FIRST = b"ntp-probe"  # the header title: the first screen is on show
READY = b"decoding \xc2\xb7"  # "decoding ·": the model is loaded and a graph decoded


def launch(cmd: list[str], timeout: float = 60.0) -> tuple[float, float]:
    """(seconds to the first screen, seconds to ready) for one start of the app in a pty."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 32, 100, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "100", "LINES": "32"}
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    seen, first, ready = b"", None, None
    try:
        while ready is None and time.perf_counter() - t0 < timeout:
            r, _, _ = select.select([master], [], [], 0.05)
            if not r:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            seen += chunk
            now = time.perf_counter() - t0
            if first is None and FIRST in seen:
                first = now
            if READY in seen:
                ready = now
        os.write(master, b"\x11")  # ctrl+q; keep draining the terminal so the app can write while it exits
        end = time.perf_counter() + 10
        while p.poll() is None and time.perf_counter() < end:
            if select.select([master], [], [], 0.05)[0]:
                try:
                    os.read(master, 65536)
                except OSError:
                    break
    finally:
        if p.poll() is None:
            p.kill()
        os.close(master)
    if first is None or ready is None:
        raise SystemExit(f"the app did not reach its screen in {timeout:.0f} s: {seen[-400:]!r}")
    return first, ready


def import_cost(module: str, repeat: int) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    return median([float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                        check=True).stdout) for _ in range(repeat)])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--model", default="g2-5-next-token")
    args = ap.parse_args()
    cmd = [sys.executable, "-m", "ntp_probe", "tui", args.model]
    launch(cmd)  # warm the file cache
    runs = [launch(cmd) for _ in range(args.repeat)]
    firsts, readies = [r[0] for r in runs], [r[1] for r in runs]
    rows = [["first screen (header drawn)", f"{median(firsts):.2f}", f"{max(firsts):.2f}", "≤ 2.0"],
            ["ready (model loaded, graph decoded)", f"{median(readies):.2f}", f"{max(readies):.2f}", "—"]]
    imports = [[m, f"{import_cost(m, args.repeat):.2f}"] for m in ("ntp_probe.cli", "ntp_probe.tui.app", "torch")]
    print(f"\nmachine: {machine()}; `{' '.join(cmd[2:])}` in a 100x32 pty, {args.repeat} starts after one warm-up\n")
    print(table("tui_startup (seconds from process start)", ["phase", "median", "max", "target"], rows))
    print(table("import cost (seconds, fresh interpreter)", ["module", "median"], imports))


if __name__ == "__main__":
    main()
