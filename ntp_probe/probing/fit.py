"""Checking a graph against a model, and parsing the probes' small inputs (``--force``)."""

from __future__ import annotations

import re

from ..checkpoint import LoadedModel
from ..errors import GraphError
from ..task import MAX_TEXT, Graph, parse, parse_node_id


def parse_for_model(text: str, lm: LoadedModel) -> Graph:
    """Parse graph text and check it fits the model (ids < N, question within the context)."""
    g = parse(text, nodes=lm.task.nodes)
    check_fits(g, lm)
    return g


def answer_length(lm: LoadedModel, g: Graph) -> int:
    """Answer tokens to decode for ``g``: the model's path length, or, for a topology set's model, the graph's own."""
    return lm.task.answer_len(len(g.path)) if lm.task.mixed else lm.task.path_len


def check_fits(g: Graph, lm: LoadedModel) -> None:
    n = max(max(e) for e in g.edges)
    if n >= lm.task.nodes:
        raise GraphError(f"node id {n} is out of range: the model knows ids 0..{lm.task.nodes - 1}")
    length = lm.tokenizer.question_len(len(g.edges)) + answer_length(lm, g) - 1
    block = getattr(lm.model, "config").block_size
    if length > block:
        raise GraphError(
            f"{len(g.edges)} edges make a {length}-token sequence, longer than the model's context of {block} "
            f"(trained on {lm.task.label()}, {lm.task.num_edges} edges)"
        )


def parse_force(text: str, lm: LoadedModel, graph: Graph | None = None) -> list[int]:
    """``--force 9,3`` -> [9, 3]: node ids in the model's answer order, at most path_len, in the graph."""
    if len(text) > MAX_TEXT:
        raise GraphError(f"--force: {len(text):,} characters; give at most {lm.task.path_len} node ids like 9,3")
    items = [x for x in re.split(r"[,\s]+", text) if x]
    if not items:
        raise GraphError("--force: empty list; give node ids like 9,3")
    if len(items) > lm.task.path_len:
        raise GraphError(f"--force: {len(items)} tokens, but the answer has only {lm.task.path_len} positions")
    out = []
    for i, x in enumerate(items):
        v = parse_node_id(x, f"--force: item {i + 1}", None)  # ASCII digits only; negative, huge and junk ids are errors
        if not 0 <= v < lm.task.nodes:
            raise GraphError(f"--force: node {v} is out of range (the model knows ids 0..{lm.task.nodes - 1})")
        if graph is not None and v not in graph.nodes:
            raise GraphError(f"--force: node {v} is not in the graph")
        out.append(v)
    return out
