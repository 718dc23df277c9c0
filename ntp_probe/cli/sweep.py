"""``ntp-probe sweep``: run, list, table and plot a recipe file of trainings (a thin shell over ``ntp_probe.sweep``).

Registered on the app where it is assembled (``ntp_probe/cli/__init__.py``); a recipe's runs are checked by
``train``'s own options (``train_schema``, ``load_runs``).
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from ..errors import UsageError
from ._common import _click, err, handle_errors, out, writing
from .train import train, train_config

sweep_app = typer.Typer(help="Sweeps: a recipe file of training runs — run them K at a time, list them for a cluster, "
                             "table and plot the map.", no_args_is_help=True)

RecipeArg = Annotated[Path, typer.Argument(help="A recipe file (TOML: \\[train], \\[grid], \\[\\[run]]).")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="The sweep directory: one run directory per run.")]


def train_schema() -> dict:
    """train's options as the sweep's schema: option name -> Spec(flag, kind), read from its annotations."""
    import typing

    from ..sweep.recipe import Spec

    schema = {}
    for name, hint in typing.get_type_hints(train, include_extras=True).items():
        if typing.get_origin(hint) is not Annotated:
            continue
        base, *extras = typing.get_args(hint)
        info = next((x for x in extras if isinstance(x, typer.models.OptionInfo)), None)
        if info is None:
            continue
        decls = [info.default, *info.param_decls] if isinstance(info.default, str) else list(info.param_decls)
        longs = [d for d in decls if isinstance(d, str) and d.startswith("--")]
        if not longs:
            continue
        base = next((a for a in typing.get_args(base) if a is not type(None)), base)  # Optional[X] -> X
        kind = {bool: "flag", int: "int", float: "float"}.get(base, "str")
        schema[longs[0][2:]] = Spec(longs[0], kind)
    return schema


def load_runs(recipes: Path, out_dir: Path):
    """The recipe file's runs, every one of them checked as train would check it (nothing starts on an error)."""
    from ..limits import check_threads
    from ..sweep.recipe import RecipeError, load
    from ..train import TrainConfig, pick_device, validate

    schema = train_schema()
    runs = load(recipes, out_dir, schema, default_steps=TrainConfig.steps)
    one = typer.Typer()  # train's own click command (its parsing and checks), without the assembled app
    one.command()(train)
    cmd = typer.main.get_command(one)
    for run in runs:
        try:
            ctx = cmd.make_context("train", run.argv(schema), resilient_parsing=False)
            check_threads(ctx.params.get("threads"))  # what train checks before its config: refused here too
            validate(cfg := train_config(ctx.params))
            pick_device(cfg.device)
        except _click.exceptions.ClickException as e:
            raise RecipeError(f"{recipes}: run {run.name!r}: {' '.join(e.format_message().split())}") from None
        except UsageError as e:
            raise RecipeError(f"{recipes}: run {run.name!r}: {e}") from None
    return runs, schema


def _view(sweep):
    from rich.table import Table
    from rich.text import Text

    from ..errors import NtpProbeError
    from ..fmt import duration
    from ..runs import status

    t = Table(title=f"sweep: {len(sweep.table)} runs, {sweep.jobs} at a time", title_justify="left")
    for col in ("run", "state", "step", "held-out greedy", "decision", "s/step", "ETA", ""):
        t.add_column(col, justify="right" if col in ("step", "held-out greedy", "decision", "s/step", "ETA") else "left")
    for j in sweep.table:
        st = {}
        if j.run.dir.is_dir():
            try:
                st = status(j.run.dir)
            except NtpProbeError:
                st = {}
        last = st.get("last", {})
        colour = {"running": "cyan", "finished": "green", "failed": "red", "skipped": "red", "stopped": "yellow"}.get(j.state, "dim")
        acc = last.get("accuracy")
        dec = last.get("decision_accuracy")
        sps = st.get("seconds_per_step")
        eta = st.get("eta_s") if j.state == "running" else None
        t.add_row(Text(j.run.name), Text(j.state, style=colour), f"{st.get('step', 0):,}/{j.run.steps:,}",
                  "–" if acc is None else f"{acc:.3f}", "–" if dec is None else f"{dec:.3f}",
                  "–" if not sps else f"{sps:.3f}", "–" if eta is None else duration(eta), Text(j.note))  # plain text: a log line is never markup
    return t


@sweep_app.command("run")
@handle_errors
def run_cmd(
    recipes: RecipeArg,
    out_dir: OutOpt,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Runs at a time (each gets cores ÷ jobs torch threads "
                                                          "unless the recipe sets threads).", min=1, max=64)] = 1,
) -> None:
    """Run every run of RECIPES that has not finished, K at a time; a stopped run continues from its checkpoint.
    Ctrl-C checkpoints every running run and exits 0: the same command resumes the sweep."""
    import fcntl
    import time

    from ..sweep.recipe import LOCK_FILE, write_plan
    from ..sweep.runner import Sweep

    runs, schema = load_runs(recipes, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lock = open(out_dir / LOCK_FILE, "a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise UsageError(f"{out_dir}: another 'sweep run' is running this sweep") from None
    write_plan(runs, out_dir, recipes, schema)
    env = dict(os.environ)
    if "threads" not in {k for r in runs for k in r.options}:
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // jobs)))
    sweep = Sweep(runs, schema, jobs=jobs, env=env)
    stop = lambda *_: sweep.stop()  # noqa: E731
    old = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        if err.is_terminal:
            from rich.live import Live

            with Live(_view(sweep), console=err, auto_refresh=False) as live:
                last = [0.0]

                def tick(s):
                    if time.time() - last[0] >= 1.0:
                        live.update(_view(s), refresh=True)
                        last[0] = time.time()

                table = sweep.run(tick)
                live.update(_view(sweep), refresh=True)
        else:
            seen: dict[str, str] = {}

            def tick(s):
                for j in s.table:
                    if seen.get(j.run.name) != j.state:
                        seen[j.run.name] = j.state
                        err.print(f"{j.run.name}: {j.state}{' (' + j.note + ')' if j.note else ''}", highlight=False,
                                  markup=False)

            table = sweep.run(tick)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        lock.close()
    failed = [j for j in table if j.state in ("failed", "skipped")]
    done = sum(j.state == "finished" for j in table)
    if sweep.stopping:
        err.print(f"stopped: {done}/{len(table)} runs finished, the others checkpointed; run the same command to resume",
                  highlight=False, markup=False)
        return
    for j in failed:
        err.print(f"[bold red]{j.state}:[/] " + escape(f"{j.run.name}: {j.note}" + (f" (log: {j.log})" if j.log else "")),
                  highlight=False)
    err.print(f"{done}/{len(table)} runs finished → {out_dir}", highlight=False, markup=False)
    if failed:
        raise typer.Exit(1)


@sweep_app.command("list")
@handle_errors
def list_cmd(recipes: RecipeArg, out_dir: OutOpt) -> None:
    """Print one complete 'ntp-probe train …' line per run that has not finished (for a SLURM array, GNU parallel,
    any job queue); a run that warm-starts from another comes after it."""
    runs, schema = load_runs(recipes, out_dir)
    for r in runs:
        state = r.state()
        if state == "running":  # another process trains it now: a scheduler must not start it twice
            err.print(f"# {r.name}: running now, not listed", highlight=False, markup=False)
        elif state == "stuck":  # a model and nothing to resume from: no line may start it over
            err.print(f"# {r.name}: not listed: {r.why}", highlight=False, markup=False)
        elif state != "finished":
            print(r.command(schema, state=state))


@sweep_app.command("table")
@handle_errors
def table_cmd(
    sweep_dir: Annotated[Path, typer.Argument(help="A sweep directory (a sweep run --out).")],
    markdown_file: Annotated[Optional[Path], typer.Option("--markdown", help="Write the Markdown table here (between "
                                                                            "its '<!-- sweep table -->' markers when it has them).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows as JSON.")] = False,
) -> None:
    """The map: one row per run — shape, recipe, steps, wall, greedy last and best, per position, verdict
    (fit: greedy ≥ 0.95; partly: an inner answer position ≥ 0.6; plateau)."""
    from rich.table import Table
    from rich.text import Text

    from ..sweep.records import markdown, records, rows, wall_text, write_markdown

    recs = records(sweep_dir)
    if markdown_file is not None:
        with writing("--markdown"):
            write_markdown(markdown_file, markdown(recs))
    if as_json:
        print(json.dumps(rows(recs)))
        return
    t = Table(title=Text(f"{sweep_dir}: {len(recs)} runs"), title_justify="left")
    for col in ("run", "shape", "recipe", "steps", "wall", "greedy last (best)", "per position", "verdict"):
        t.add_column(col, justify="right" if col in ("steps", "wall") else "left", overflow="fold")
    for row in rows(recs):
        greedy = "–" if row["greedy_last"] is None else f"{row['greedy_last']:.3f} ({row['greedy_best']:.3f})"
        colour = {"fit": "green", "partly": "yellow", "plateau": "red"}.get(row["verdict"], "dim")
        t.add_row(Text(row["run"]), Text(row["shape"]), Text(row["recipe"]), f"{row['steps']:,}",  # a record's text is never markup
                  wall_text(row["wall_min"]), greedy,
                  " ".join(f"{x:.2f}" for x in row["per_position"]), Text(row["verdict"], style=colour))
    out.print(t)


@sweep_app.command("plot")
@handle_errors
def plot_cmd(
    sweep_dir: Annotated[Path, typer.Argument(help="A sweep directory (a sweep run --out).")],
    out_file: Annotated[Path, typer.Option("--out", "-o", help="The PNG to write.")],
) -> None:
    """Draw every run's held-out curves (greedy and each inner answer position) into one PNG."""
    from ..sweep.records import plot, records

    recs = records(sweep_dir)
    with writing("--out"):
        path, note = plot(recs, out_file)
    if note:
        err.print(f"note: {note}", highlight=False, markup=False)
    err.print(f"wrote {path}", highlight=False, markup=False)


@sweep_app.command("archive")
@handle_errors
def archive_cmd(
    runs: Annotated[list[Path], typer.Argument(help="Run directories to archive.")],
    into: Annotated[Path, typer.Option("--into", help="The sweep directory to keep them in (e.g. docs/teacherless/map).")],
    prefix: Annotated[str, typer.Option("--prefix", help="Put this before each run's name (runs of several sweeps side by side).")] = "",
) -> None:
    """Keep runs' records (config, command, curve; no weights) in a sweep directory, so its table and plot are
    rebuilt from it alone (the records a repository can carry)."""
    from ..sweep.archive import archive_plan, write_archive

    plan = archive_plan(runs, into, prefix)  # every run read and every name and target checked before anything is written
    write_archive(plan)
    for path, rec in plan:
        err.print(f"archived {rec['name']} → {path}", highlight=False, markup=False)
