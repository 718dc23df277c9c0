"""Probing one model: ``probe`` (step by step, forced prefixes), ``clever-hans``, ``patch`` (activation patching)."""

from __future__ import annotations

import json
from itertools import islice
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from ..errors import NtpProbeError, UsageError
from ._common import BeamOpt, DecodeOpt, JsonOpt, ModelDegreeOpt, ModelPathLenOpt, SampleTopKOpt, TempOpt, \
    SHIPPED_DATA, ThreadsOpt, TriesOpt, check_seed, err, handle_errors, load_graphs_arg, make_strategy, out, set_threads, \
    writing


@handle_errors
def probe(
    model: Annotated[Optional[str], typer.Argument(help="A .safetensors file, a run directory, or a shipped model name.")] = None,
    graph: Annotated[Optional[str], typer.Option("--graph", "-g", help="One graph, in the line or the human format.", rich_help_panel="Graph")] = None,
    graphs: Annotated[Optional[Path], typer.Option("--graphs", help="A file of graphs, one a line (original format)." + SHIPPED_DATA, rich_help_panel="Graph")] = None,
    force: Annotated[Optional[str], typer.Option("--force", "-f", help="Force the first answer tokens, e.g. 9,3 (model's order).", rich_help_panel="Graph")] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="Top tokens shown per step.", min=1, rich_help_panel="Output")] = 5,
    decode: DecodeOpt = "greedy",
    temperature: TempOpt = 1.0,
    sample_top_k: SampleTopKOpt = 0,
    beam: BeamOpt = 4,
    tries: TriesOpt = 8,
    seed: Annotated[int, typer.Option("--seed", help="Seed for --decode sample.", rich_help_panel="Decoding")] = 0,
    layers: Annotated[bool, typer.Option("--layers", help="Add the logit lens: each layer's readout per step.", rich_help_panel="Output")] = False,
    save: Annotated[Optional[Path], typer.Option("--save", help="Save the session (model, graph, forced tokens, strategy) as JSON.", rich_help_panel="Output")] = None,
    load_from: Annotated[Optional[Path], typer.Option("--load", help="Load a saved session instead of MODEL/--graph.", rich_help_panel="Graph")] = None,
    threads: ThreadsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Decode graphs step by step, optionally forcing a (wrong) prefix, and show every step's distribution."""
    from ..checkpoint import load
    from ..probing import ProbeSession, load_session, parse_for_model, parse_force
    from ..task import read_lines

    set_threads(threads)
    check_seed(seed)
    if load_from is not None:
        if graph is not None or graphs is not None:
            raise UsageError("--load restores the graph; leave out --graph/--graphs")
        sessions = [load_session(load_from, load(model) if model else None)]
        for note in sessions[0].notes:
            err.print(f"warning: {note}", highlight=False, markup=False)
    else:
        if model is None:
            raise UsageError("give a MODEL (or --load FILE)")
        if (graph is None) == (graphs is None):
            raise UsageError("give exactly one of --graph TEXT or --graphs FILE")
        if save is not None and graphs is not None:
            raise UsageError("--save saves one session: use it with --graph")
        strategy = make_strategy(decode, temperature, sample_top_k, beam, tries, seed)
        lm = load(model)
        items = [parse_for_model(graph, lm)] if graph is not None else read_lines(graphs, lm.task.nodes)
        sessions = (ProbeSession(lm, g, strategy=strategy) for g in items)
    for session in sessions:
        if force is not None:  # --force '' is an error (an empty list), not silently nothing
            session.set_forced_prefix(parse_force(force, session.lm, session.graph))
        if save is not None:
            with writing("--save"):
                session.save(save, plain_error=True)
        if as_json:
            print(json.dumps(session.to_json(top_k, layers=layers)), flush=True)
        else:
            from ..render import probe_panel

            out.print(probe_panel(session, top_k, layers=layers))


@handle_errors
def clever_hans_cmd(
    model: Annotated[str, typer.Argument(help="A .safetensors file, a run directory, or a shipped model name.")],
    data: Annotated[Optional[Path], typer.Option("--data", help="Graphs in the original line format." + SHIPPED_DATA)] = None,
    count: Annotated[int, typer.Option("--count", help="Fresh graphs when no --data.", min=1)] = 2000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the fresh graphs and of the wrong-arm choice.")] = 12345,
    degree: ModelDegreeOpt = None,
    path_len: ModelPathLenOpt = None,
    threads: ThreadsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Force the decision step onto a wrong arm and measure whether the model follows it (the Clever Hans cheat)."""
    from ..checkpoint import load
    from ..metrics import clever_hans

    set_threads(threads)
    check_seed(seed)
    lm = load(model)
    res = clever_hans(lm, load_graphs_arg(lm, data, count, seed, degree, path_len, odd_ok=True), seed=seed)
    res["data"] = str(data) if data else f"fresh:seed={seed}"
    if as_json:
        print(json.dumps(res))
        return
    from ..render import clever_hans_table, shape_table

    out.print(clever_hans_table(res))
    if "by_topology" in res:
        out.print(shape_table(res, "per shape"))


@handle_errors
def patch_cmd(
    model: Annotated[str, typer.Argument(help="A .safetensors file, a run directory, or a shipped model name.")],
    graph: Annotated[Optional[str], typer.Option("--graph", "-g", help="One graph (the clean run), line or human format.", rich_help_panel="Graphs")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", help="Average over the first --count graphs of this file." + SHIPPED_DATA, rich_help_panel="Graphs")] = None,
    count: Annotated[int, typer.Option("--count", help="Graphs to average over (--data's first, or fresh ones).", min=1, rich_help_panel="Graphs")] = 500,
    pair: Annotated[str, typer.Option("--pair", help="The corrupt run: goal (the goal on another arm's leaf) or shuffle (the edges reordered).", rich_help_panel="Graphs")] = "goal",
    corrupt: Annotated[Optional[str], typer.Option("--corrupt", help="The corrupt run's graph, of --graph's shape.", rich_help_panel="Graphs")] = None,
    step: Annotated[Optional[int], typer.Option("--step", help="Answer token K (1-based, the model's order; default: the decision step).")] = None,
    knockout: Annotated[bool, typer.Option("--knockout", help="Also hide each edge from every attention and report its effect.")] = False,
    attribution: Annotated[bool, typer.Option("--attribution", help="Also each head's and MLP's direct logit attribution.")] = False,
    png: Annotated[Optional[Path], typer.Option("--png", help="Write the heat map as a PNG.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of fresh graphs and of the shuffle pair.")] = 0,
    threads: ThreadsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Activation patching at one answer step: which (layer, token) carries the goal to the decision; with
    --knockout the edges it reads, with --attribution the heads and MLPs that write the answer."""
    from ..checkpoint import load
    from ..limits import check_count
    from ..probing import parse_for_model
    from ..probing.patching import PAIRS, patch

    set_threads(threads)
    check_seed(seed)
    if pair not in PAIRS:
        raise UsageError(f"--pair {pair!r}: choose goal or shuffle (or give --corrupt GRAPH)")
    if graph is not None and data is not None:
        raise UsageError("give --graph (one pair) or --data (an average), not both")
    if corrupt is not None and graph is None:
        raise UsageError("--corrupt is the second graph of one pair: give --graph too")
    lm = load(model)
    if graph is not None:
        graphs = [parse_for_model(graph, lm)]
    else:
        check_count(count, lm.task.nodes)
        got = load_graphs_arg(lm, data, count, seed)  # a file's graphs, or a batch of fresh ones
        graphs = islice(got.graphs() if hasattr(got, "graphs") else got, count)  # read a chunk at a time
    second = None
    if corrupt is not None:
        try:
            second = parse_for_model(corrupt, lm)
        except NtpProbeError as e:
            raise e.__class__(f"--corrupt: {e}") from None
    k = None
    if step is not None:
        if step < 1:
            raise UsageError(f"--step {step}: answer tokens are counted from 1")
        k = step - 1
    res = patch(lm, graphs, pair, second, k, edges=knockout, attribute=attribution, seed=seed)
    if png is not None:
        from ..probing.figure import heatmap_png

        with writing("--png"):
            heatmap_png(res, png)
    if as_json:
        print(json.dumps(res))
        return
    from ..render import patch_view

    out.print(patch_view(res))
    if png is not None:
        out.print(f"wrote {escape(str(png))}", highlight=False)
