"""Live views: ``tui`` (the probing app), ``tour`` (the talk in it) and ``watch`` (where trainings stand)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import UsageError
from ._common import ClosedOutput, JsonOpt, handle_errors, out


def need_terminal(command: str) -> None:
    """The app reads keys and draws on a terminal: a closed or redirected stdin/stdout is a usage error."""
    for name, stream in (("input", sys.stdin), ("output", sys.stdout)):
        if stream is None or isinstance(stream, ClosedOutput):
            raise UsageError(f"the app needs a terminal: standard {name} is closed; run 'ntp-probe {command}' in a terminal")
        try:
            tty = stream.isatty()
        except (OSError, ValueError):
            tty = False
        if not tty:
            raise UsageError(f"the app needs a terminal: standard {name} is not one (a file or a pipe); run "
                             f"'ntp-probe {command}' in a terminal (the CLI's probe --graph prints the same figures)")


@handle_errors
def tui(
    models: Annotated[
        Optional[list[str]],
        typer.Argument(help="Models to open: .safetensors files, run directories (RUN@STEP: a kept checkpoint) or shipped names; the first is probed, "
                            "the others are shown side by side. Default: star-next-token (+ star-reverse), else "
                            "g2-5-next-token (+ reverse, teacherless)."),
    ] = None,
    follow: Annotated[bool, typer.Option("--follow", help="The first MODEL is a run directory that train is writing: "
                                         "load each new checkpoint as it is saved (same graph, forced tokens, cursor).")] = False,
    interval: Annotated[float, typer.Option("--interval", help="--follow: seconds between looks at the run.",
                                            min=0.1, max=3600)] = 1.0,
) -> None:
    """Open the probing app: step through decoding, force a wrong arm (the Clever Hans demo), compare models."""
    if follow:
        from ..follow import check_followable

        if not models:
            raise UsageError("--follow: give the run directory to follow, e.g. ntp-probe tui runs/x --follow")
        check_followable(models[0])
    need_terminal("tui")
    from ..tui.app import ProbeApp

    ProbeApp(models or None, follow=follow, follow_interval=interval).run()


@handle_errors
def tour(
    step: Annotated[int, typer.Option("--step", help="Start at this step (1-8: 1 the task, 2 the coin flip, 3 Clever "
                                      "Hans, 4 the indecipherable token, 5 reverse, 6 teacherless, 7 the debate, "
                                      "8 try it yourself).")] = 1,
) -> None:
    """The talk, in the app: a guided walk through the story with the shipped models, each step a live state of the
    probing app (pgdn or > next, pgup or < back, ctrl+q quit)."""
    from ..tui.tour import STEPS

    if not 1 <= step <= len(STEPS):
        raise UsageError(f"--step: {step} is not a step of the tour (1..{len(STEPS)})")
    need_terminal("tour")
    from ..tui.tour import TourApp

    TourApp(start=step - 1).run()


@handle_errors
def watch(
    runs: Annotated[list[Path], typer.Argument(help="Run directories (a directory of runs, e.g. a reproduce --out, is expanded); RUN@STEP: as of a kept checkpoint.")],
    follow: Annotated[Optional[float], typer.Option("--follow", "-f", help="Refresh every SECONDS until Ctrl-C.", min=0.2)] = None,
    as_json: JsonOpt = False,
) -> None:
    """Where trainings stand: running or stopped, step, s/step, ETA, last evaluation, per-position curves."""
    from ..limits import MAX_FOLLOW_S, check_float
    from ..render import watch_view
    from ..runs import statuses

    if follow is not None:
        check_float("--follow", follow, 0.2, MAX_FOLLOW_S)  # inf: an OverflowError in sleep
    if as_json:
        print(json.dumps(statuses(runs)))
        return
    if follow is None:
        out.print(watch_view(statuses(runs)))
        return
    import time

    from rich.live import Live

    try:
        with Live(watch_view(statuses(runs)), console=out, auto_refresh=False) as live:
            while True:
                time.sleep(follow)
                live.update(watch_view(statuses(runs)), refresh=True)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
