"""The few helpers of the Python API (``import ntp_probe``) that the engine does not already have in the shape a
notebook wants. Everything else the package exposes is the engine's own function or class, re-exported lazily
by ``ntp_probe/__init__.py`` (see ``API`` there)."""

from __future__ import annotations

from .checkpoint import LoadedModel
from .task import Graph, generate_set, parse


def sample_graphs(model: LoadedModel, count: int, seed: int = 0) -> list[Graph]:
    """``count`` fresh random graphs of ``model``'s task (its shape, or each drawn from its topology set), seeded:
    the same seed gives the same graphs."""
    from .limits import check_count

    check_count(count, model.task.nodes, "count", edges=model.task.num_edges)
    return list(generate_set(model.task.topologies, model.task.nodes, count, seed=seed).graphs())


def parse_graph(text: str, model: LoadedModel | None = None) -> Graph:
    """A graph from text, in the line format (``0,1|1,2|0,3|3,4/0,4=0,3,4``) or the readable one
    (``0→1 1→2 0→3 3→4, find 0 → 4``). With ``model``, its node ids and size are checked against the model."""
    if model is not None:
        from .probing import parse_for_model

        return parse_for_model(text, model)
    return parse(text)
