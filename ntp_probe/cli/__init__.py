"""The ``ntp-probe`` command line: a thin shell over the engine and the probing API, assembled here.

Every command lives in the module of its group; this module only builds the Typer app and registers them, in
the order ``ntp-probe --help`` lists them. No module of this package imports this one (only the entry points:
the console script ``ntp_probe.cli:main``, ``python -m ntp_probe`` and ``python -m ntp_probe.cli``).

==============  ===================================================================================
module          commands
==============  ===================================================================================
``data``        generate
``train``       train (and ``train_config``: train's options -> TrainConfig, shared with sweep)
``score``       eval, models, inference-fixes, reproduce (--leaderboard), ship (hidden)
``probe``       probe, clever-hans, patch
``tui``         tui, tour, watch
``export``      export, import
``sweep``       the ``sweep`` group: run, list, table, plot, archive
``_common``     consoles, ``handle_errors``/``fail`` (one line ``error:``, exit 2), ``OneLineErrors``,
                the shared options (``ThreadsOpt``, ``JsonOpt``, ``DegreeOpt`` …) and their helpers
==============  ===================================================================================

A new command: a function decorated with ``@handle_errors`` in its group's module (a new group: a new module),
registered below with ``app.command()``; a new command group with subcommands: a ``typer.Typer`` in its module,
added below with ``app.add_typer``.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from . import data, export, probe, score, sweep, train, tui
from ._common import OneLineErrors, version_callback

app = typer.Typer(
    cls=OneLineErrors,
    name="ntp-probe",
    help="See why next-token prediction with teacher forcing fails to learn planning (path-star graphs).",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def main_callback(
    version: Annotated[
        Optional[bool], typer.Option("--version", callback=version_callback, is_eager=True, help="Show the version and exit.")
    ] = None,
) -> None:
    """[bold]ntp-probe[/]: generate path-star graphs, train, evaluate and probe models."""


app.command()(data.generate)
app.command()(train.train)
app.command("eval")(score.eval_cmd)
app.command()(tui.watch)
app.command("models")(score.models_cmd)
app.command()(probe.probe)
app.command("clever-hans")(probe.clever_hans_cmd)
app.command("patch")(probe.patch_cmd)
app.command("inference-fixes")(score.inference_fixes_cmd)
app.command()(score.reproduce)
app.command(hidden=True)(score.ship)
app.command()(tui.tui)
app.command()(tui.tour)
app.command()(export.export)
app.command("import")(export.import_cmd)
app.add_typer(sweep.sweep_app, name="sweep")


def main() -> None:
    app()
