"""Scoring: ``eval``, ``models``, ``inference-fixes``, ``reproduce`` (and its ``--leaderboard``), ``ship``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from .. import objectives
from ..errors import NtpProbeError, UsageError
from ._common import DEFAULT_OBJECTIVES, ArchOpt, BeamOpt, DecodeOpt, DegreeOpt, DeviceOpt, DStateOpt, ExpandOpt, \
    JsonOpt, ModelDegreeOpt, ModelPathLenOpt, NodesOpt, PathLenOpt, SampleTopKOpt, TempOpt, ThreadsOpt, TriesOpt, \
    SHIPPED_DATA, check_seed, err, handle_errors, load_graphs_arg, make_strategy, one_or_set, out, set_threads


@handle_errors
def eval_cmd(
    model: Annotated[str, typer.Argument(help="A .safetensors file, a run directory, or a shipped model name.")],
    data: Annotated[Optional[Path], typer.Option("--data", help="Graphs in the original line format, with answers." + SHIPPED_DATA, rich_help_panel="Graphs")] = None,
    count: Annotated[int, typer.Option("--count", help="Fresh graphs when no --data.", min=1, rich_help_panel="Graphs")] = 2000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the fresh graphs.", rich_help_panel="Graphs")] = 12345,
    degree: ModelDegreeOpt = None,
    path_len: ModelPathLenOpt = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Graphs per forward pass.", min=1)] = 2000,
    device: DeviceOpt = "cpu",
    decode: DecodeOpt = "greedy",
    temperature: TempOpt = 1.0,
    sample_top_k: SampleTopKOpt = 0,
    beam: BeamOpt = 4,
    tries: TriesOpt = 8,
    threads: ThreadsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Score a model: greedy (or --decode) and teacher-forced accuracy, per position, and the decision step."""
    from ..checkpoint import load
    from ..evaluate import evaluate
    from ..train import pick_device

    set_threads(threads)
    check_seed(seed)
    strategy = make_strategy(decode, temperature, sample_top_k, beam, tries, seed)
    lm = load(model, pick_device(device))
    graphs = load_graphs_arg(lm, data, count, seed, degree, path_len)
    res = evaluate(lm, graphs, batch_size=batch_size, strategy=strategy)
    res = {"model": lm.display_name, "data": str(data) if data else f"fresh:seed={seed}", **res}
    if as_json:
        out.print_json(json.dumps(res)) if out.is_terminal else print(json.dumps(res))
        return
    from ..render import eval_table, shape_table

    out.print(eval_table(lm, res))
    if "by_topology" in res:
        out.print(shape_table(res, "per shape"))


def _set_label(task: dict) -> str:
    """A set's shapes in a table column: 'G(2-5,3-6)' (degrees, path lengths)."""
    from ..task import format_values

    try:
        return f"G({format_values(task['degrees'])},{format_values(task['path_lens'])})"
    except (TypeError, ValueError):
        return "G(?)"


@handle_errors
def models_cmd(as_json: JsonOpt = False) -> None:
    """List the shipped models (models/) with their task, objective and accuracy."""
    from ..checkpoint import list_models, read_meta

    rows = []
    for name, path in list_models():
        try:
            meta = read_meta(path)
        except NtpProbeError as e:
            rows.append({"name": name, "error": str(e)})
            continue
        t, m, tr = meta["task"], meta.get("metrics") or {}, meta.get("training") or {}
        card = meta.get("card") or {}
        rows.append({
            "name": name,
            "objective": meta["objective"]["name"],
            "arch": meta["config"].get("arch", "gpt"),
            "degree": t["degree"],
            "path_len": t["path_len"],
            **({"degrees": t["degrees"], "path_lens": t["path_lens"], "task": _set_label(t)} if "degrees" in t else {}),
            "nodes": t["nodes"],
            "layers": meta["config"]["n_layer"],
            "d_model": meta["config"]["n_embd"],
            "accuracy": card.get("accuracy", m.get("accuracy")),
            "decision_accuracy": card.get("decision_accuracy", m.get("decision_accuracy")),
            "forced_accuracy": card.get("forced_accuracy", m.get("forced_accuracy")),
            "follow_rate": card.get("follow_rate"),  # forced onto a wrong arm: on it at every inner step
            "goal_copy_rate": card.get("goal_copy_rate"),  # then the goal from the query (a second shortcut)
            "steps": tr.get("steps"),
            "path": str(path),
        })
    if as_json:
        print(json.dumps(rows))
        return
    from ..render import models_table

    out.print(models_table(rows))


@handle_errors
def inference_fixes_cmd(
    models: Annotated[Optional[list[str]], typer.Argument(help="Models to compare (default: g2-5-next-token g2-5-reverse).")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", help="Graphs in the original line format." + SHIPPED_DATA, rich_help_panel="Graphs")] = None,
    count: Annotated[int, typer.Option("--count", help="Fresh graphs when no --data.", min=1, rich_help_panel="Graphs")] = 2000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the fresh graphs and of sampling.", rich_help_panel="Graphs")] = 12345,
    beam: BeamOpt = 4,
    tries: Annotated[Optional[int], typer.Option("--tries", help="Verifier budget (default max(8, 2d)).", rich_help_panel="Decoding")] = None,
    temperature: TempOpt = 1.0,
    threads: ThreadsOpt = None,
    as_json: JsonOpt = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print a Markdown table (for reports).")] = False,
) -> None:
    """Greedy, sampling, beam search and a perfect verifier on the same graphs: does search recover the plan?"""
    from ..checkpoint import load
    from ..evaluate import inference_fixes

    set_threads(threads)
    check_seed(seed)
    from ..limits import check_int, check_strategy, MAX_TRIES

    if tries is not None:
        check_int("--tries", tries, 1, MAX_TRIES)  # 0 is not "the default"
    check_strategy(temperature, 0, beam, tries or 1)
    rows = []
    for spec in models or ["g2-5-next-token", "g2-5-reverse"]:
        lm = load(spec)
        rows += inference_fixes(lm, load_graphs_arg(lm, data, count, seed), beam=beam, tries=tries,
                                temperature=temperature, seed=seed)
    if as_json:
        print(json.dumps(rows))
        return
    if markdown:
        from ..report import inference_markdown

        print("\n".join(inference_markdown(rows)))
        return
    from ..render import inference_table

    out.print(inference_table(rows))


@handle_errors
def reproduce(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Directory for the runs, report.md and the plots.")],
    degree: DegreeOpt = "2",
    path_len: PathLenOpt = "5",
    nodes: NodesOpt = 50,
    objective_names: Annotated[str, typer.Option("--objectives", help=f"Comma-separated objectives to train (any of {', '.join(objectives.names())}).", rich_help_panel="Task")] = DEFAULT_OBJECTIVES,
    models: Annotated[Optional[str], typer.Option("--models", help="Evaluate these existing models (comma-separated) instead of training.", rich_help_panel="Task")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", help="Score on this file (original format) instead of fresh graphs." + SHIPPED_DATA, rich_help_panel="Task")] = None,
    count: Annotated[int, typer.Option("--count", help="Fresh graphs to score on when no --data.", min=1, rich_help_panel="Task")] = 2000,
    steps: Annotated[int, typer.Option("--steps", help="Training steps per objective.", min=1, rich_help_panel="Optimiser")] = 1500,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, rich_help_panel="Optimiser")] = 256,
    lr: Annotated[float, typer.Option("--lr", rich_help_panel="Optimiser")] = 1e-3,
    layers: Annotated[int, typer.Option("--layers", min=1, rich_help_panel="Model")] = 2,
    d_model: Annotated[int, typer.Option("--d-model", min=8, rich_help_panel="Model")] = 128,
    heads: Annotated[int, typer.Option("--heads", min=1, rich_help_panel="Model")] = 4,
    arch: ArchOpt = "gpt",
    d_state: DStateOpt = 16,
    expand: ExpandOpt = 2,
    eval_every: Annotated[int, typer.Option("--eval-every", min=1)] = 100,
    eval_count: Annotated[int, typer.Option("--eval-count", help="Held-out graphs per evaluation (the learning curves).", min=1)] = 2000,
    seed: Annotated[int, typer.Option("--seed", rich_help_panel="Optimiser")] = 0,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    report: Annotated[str, typer.Option("--report", help="File name of the report inside --out.")] = "report.md",
    fixes: Annotated[bool, typer.Option("--inference-fixes", help="Add the inference-fixes table (greedy, sampling, beam, verifier) for every model.")] = False,
    leaderboard: Annotated[bool, typer.Option("--leaderboard", help="Score every shipped model (or --models) on G(2,3), G(2,4), G(2,5), G(5,5) and its star set: one row per fix and shape, into leaderboard.md/.json.", rich_help_panel="Task")] = False,
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", help="--leaderboard: score each shape on its original test file found here (deg_D_path_L_nodes_N_test_*.txt); else --count fresh graphs.", rich_help_panel="Task")] = None,
) -> None:
    """Train the objectives side by side with one recipe (or score --models) and write a report with plots;
    [bold]--leaderboard[/] scores the shipped models on the debate's shapes instead."""
    from ..checkpoint import load
    from ..report import metrics_for, score, sparkline, train_all, write_report
    from ..train import TrainConfig, run_command_line

    from ..limits import check_file_name

    set_threads(threads)
    check_seed(seed)
    check_file_name(report, "--report", "--out")  # before anything is trained: the report stays inside --out
    if models is not None and not [m for m in models.split(",") if m.strip()]:
        raise UsageError("--models: empty list; give model names or files, comma-separated")
    if leaderboard:
        return reproduce_leaderboard(out_dir, models, data_dir, count, seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    if models is not None:
        lms = [load(m.strip()) for m in models.split(",") if m.strip()]
    else:
        from ..progress import TrainProgress

        from ..task import Topologies

        shapes = Topologies.parse(one_or_set(degree), one_or_set(path_len), nodes)
        if shapes.mixed and objective_names == DEFAULT_OBJECTIVES:  # teacherless trains on one shape only
            objective_names = "next-token,reverse"
        degree, path_len = shapes.to_option()
        base = TrainConfig(degree=degree, path_len=path_len, nodes=nodes, steps=steps, batch_size=batch_size, lr=lr,
                           layers=layers, d_model=d_model, heads=heads, arch=arch, d_state=d_state, expand=expand,
                           eval_every=eval_every, eval_count=eval_count, seed=seed, device=device)
        objs = [o.strip() for o in objective_names.split(",") if o.strip()]
        for o in objs:  # a bad name fails before any training
            objectives.objective_class(o)
        progress = {}

        def callback_for(obj):
            err.print(f"[bold]{obj}[/]")
            progress[obj] = TrainProgress(err, quiet=True)
            return progress[obj]

        runs = train_all(base, objs, out_dir, callback_for, command=run_command_line())
        lms = [load(r) for r in runs]
    tasks = {lm.task for lm in lms}
    if len(tasks) != 1:
        raise UsageError("--models must all be trained on the same G(d,l) and N")
    lm0 = lms[0]
    graphs = load_graphs_arg(lm0, data, count, seed + 12345)
    rows, curves, fix_rows = [], {}, []
    for lm in lms:
        err.print(f"scoring {lm.display_name} …")
        rows.append(score(lm, graphs, seed=seed))
        curves[lm.display_name] = metrics_for(lm)
        if fixes:
            from ..evaluate import inference_fixes

            fix_rows += inference_fixes(lm, graphs, seed=seed + 12345)
    desc = f"`{data.name}` ({len(graphs):,} graphs)" if data else f"{count:,} fresh graphs (seed {seed + 12345})"
    path = write_report(rows, curves, out_dir, lm0.task.label(), desc, run_command_line(), report, fix_rows)
    from ..render import reproduce_table

    out.print(reproduce_table(rows, lm0.task.label()))
    if any("by_topology" in r for r in rows):
        from ..render import grid_table

        out.print(grid_table(rows))
    for name, recs in curves.items():
        if recs:
            out.print(f"[bold]{name}[/] greedy per position over {recs[-1]['step']} steps")
            for p in range(len(recs[0]["per_position"])):
                out.print(f"  pos {p + 1} {sparkline([r['per_position'][p] for r in recs])}", highlight=False)
    err.print(f"report: {path}")


def reproduce_leaderboard(out_dir: Path, models: str | None, data_dir: Path | None, count: int, seed: int) -> None:
    from ..atomic import atomic_write_text
    from ..checkpoint import list_models, load
    from ..leaderboard import markdown, rows_for

    if data_dir is not None and not data_dir.is_dir():
        raise UsageError(f"--data-dir {data_dir}: no such directory")
    names = [m.strip() for m in models.split(",") if m.strip()] if models else [name for name, _ in list_models()]
    if not names:
        raise UsageError("no models to score (none shipped, and no --models)")
    lms = [load(n) for n in names]  # every model loads before any scoring
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for lm in lms:
        rows += rows_for(lm, data_dir, count, seed + 12345, note=lambda s: err.print(s, highlight=False))
    md = markdown(rows)
    atomic_write_text(out_dir / "leaderboard.md", md + "\n")
    atomic_write_text(out_dir / "leaderboard.json", json.dumps(rows, indent=1) + "\n")
    out.print(md, markup=False, highlight=False)
    err.print(f"wrote {out_dir / 'leaderboard.md'} and leaderboard.json", highlight=False)


@handle_errors
def ship(
    run: Annotated[str, typer.Argument(help="A run directory (or model) to package.")],
    name: Annotated[str, typer.Option("--name", help="Model name: the folder models/NAME.")],
    data: Annotated[Path, typer.Option("--data", help="Test file the card's figures are measured on." + SHIPPED_DATA)],
    models_dir: Annotated[Path, typer.Option("--models-dir", help="Where shipped models live.")] = Path("models"),
    seed: Annotated[int, typer.Option("--seed")] = 0,
    note: Annotated[Optional[str], typer.Option("--note", help="A paragraph for the card's Notes section.")] = None,
    threads: ThreadsOpt = None,
) -> None:
    """Package a trained run as a shipped model: weights with its card figures, metrics.jsonl, README.md."""
    from ..cards import ship_model

    set_threads(threads)
    check_seed(seed)
    path = ship_model(run, name, data, models_dir, seed, note)
    err.print(f"shipped {name} → {path}")
