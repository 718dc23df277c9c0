"""Scoring a model on many graphs: greedy accuracy, teacher-forced accuracy, the decision step."""

from __future__ import annotations

import time

import torch

from .checkpoint import LoadedModel
from .decoding import Strategy, decode_with, default_tries, row_bytes, teacher_forced
from .errors import GraphError
from .task import Graph, GraphBatch, shape_of, where


def as_batch(lm: LoadedModel, graphs: list[Graph] | GraphBatch) -> GraphBatch:
    """Check that graphs fit the model (ids < N, edge count, path length) and batch them.

    A model of one shape takes graphs of that shape only; a topology set's model any path-star graph whose
    sequence fits its context (graphs outside its set are scored too: its figures per shape tell them apart)."""
    if isinstance(graphs, GraphBatch):
        return graphs
    check_graphs(lm, graphs)
    return GraphBatch.from_graphs(graphs)


def check_graphs(lm: LoadedModel, graphs: list[Graph], odd_ok: bool = False) -> None:
    """``as_batch``'s checks alone (before any work starts): a GraphError naming the first graph that does not fit.
    ``odd_ok``: a set's model lets through graphs whose edge count is not d(l−1) (clever-hans skips them)."""
    t = lm.task
    for i, g in enumerate(graphs):
        if t.mixed:
            if shape_of(g) is None and not odd_ok:  # batched by shape: the edges past d(l−1) would be cut off
                raise GraphError(f"{where(graphs, i)}: {len(g.edges)} edges and a {len(g.path)}-node path are not a "
                                 f"path-star G(d,l) (d×(l−1) edges); probe it alone (ntp-probe probe --graph)")
            check_fits(lm, len(g.edges), len(g.path), where(graphs, i))
        elif len(g.edges) != t.num_edges or len(g.path) != t.path_len:
            raise GraphError(
                f"{where(graphs, i)}: {len(g.edges)} edges and a {len(g.path)}-node path, but the model was trained on "
                f"{t.label()} ({t.num_edges} edges, {t.path_len}-node paths)"
            )
        if max(max(e) for e in g.edges) >= t.nodes:
            raise GraphError(f"{where(graphs, i)}: node ids must be < {t.nodes} for this model")


def check_fits(lm: LoadedModel, edges: int, path_len: int, what: str) -> None:
    """A graph of ``edges`` edges and a ``path_len``-node path must fit the model's context (a topology set's model
    scores any such star); else a GraphError naming ``what`` (a graph, or a shape asked for)."""
    need = lm.tokenizer.question_len(edges) + path_len - 1 + lm.objective.extra_context
    block = lm.model.config.block_size
    if need > block:
        raise GraphError(f"{what}: {edges} edges and a {path_len}-node path make a {need}-token sequence, longer than "
                         f"the model's context of {block} (trained on {lm.task.label()})")


def graphs_per_pass(lm: LoadedModel, strategy: Strategy, batch_size: int) -> int:
    """Graphs decoded at once: ``batch_size`` at most, and no more than fit ``limits.DECODE_BYTES`` with each graph's
    rows (a beam search keeps ``beam`` rows per graph, the verifier ``tries``), so that any count, beam and budget
    inside the limits decodes in bounded memory (``decoding.check_width``: one graph's rows must fit)."""
    from .limits import DECODE_BYTES

    width = strategy.beam if strategy.kind == "beam" else strategy.tries if strategy.kind == "verify" else 1
    return max(1, min(batch_size, DECODE_BYTES // (width * row_bytes(lm))))


def shape_key(shape: tuple[int, int]) -> str:
    """(3, 4) -> "3,4": the key of a shape in ``by_topology``."""
    return f"{shape[0]},{shape[1]}"


def split_shapes(lm: LoadedModel, batch: GraphBatch) -> dict[tuple[int, int], GraphBatch] | None:
    """The batch's graphs per shape when figures per shape are reported (a topology set's model, or data of more
    than one shape); None otherwise (one shape, one model: the figures as they always were)."""
    groups = batch.by_shape() if batch.padded or lm.task.mixed else None
    if groups is not None and len(groups) == 1 and not lm.task.mixed:
        return None
    return groups


# the per-graph figures averaged over shapes weighted by count
_MEANS = ("accuracy", "forced_accuracy", "decision_accuracy", "chance", "tries_mean", "tokens_per_graph")


def combine(parts: dict[tuple[int, int], dict]) -> dict:
    """Overall figures from figures per shape (weighted by count), and ``by_topology``."""
    n = sum(r["count"] for r in parts.values())
    first = next(iter(parts.values()))
    out = {k: v for k, v in first.items() if k not in _MEANS}
    out["count"] = n
    for k in _MEANS:
        out[k] = sum(r[k] * r["count"] for r in parts.values()) / n
    tokens = sum(r["forced_accuracy"] * r["count"] * len(r["per_position"]) for r in parts.values())
    out["forced_accuracy"] = tokens / sum(r["count"] * len(r["per_position"]) for r in parts.values())
    for key in ("per_position", "forced_per_position"):  # position p over the graphs whose answer has it
        L = max(len(r[key]) for r in parts.values())
        out[key] = [sum(r[key][p] * r["count"] for r in parts.values() if p < len(r[key]))
                    / sum(r["count"] for r in parts.values() if p < len(r[key])) for p in range(L)]
    after = [r for r in parts.values() if r["forced_after_decision"] is not None]
    out["forced_after_decision"] = (sum(r["forced_after_decision"] * r["count"] for r in after)
                                    / sum(r["count"] for r in after)) if after else None
    out["seconds"] = sum(r["seconds"] for r in parts.values())
    out = {**{k: out[k] for k in first}, **{k: v for k, v in out.items() if k not in first}}  # the usual key order
    keep = ("count", "accuracy", "decision_accuracy", "chance", "forced_accuracy", "forced_after_decision",
            "per_position", "forced_per_position", "tries_mean", "tokens_per_graph")
    out["by_topology"] = {shape_key(s): {k: r[k] for k in keep} for s, r in parts.items()}
    return out


@torch.no_grad()
def evaluate(lm: LoadedModel, graphs: list[Graph] | GraphBatch, batch_size: int = 2000, strategy: Strategy | None = None) -> dict:
    """Score ``graphs``; for a topology set's model (or data of several shapes) also per shape, under
    ``by_topology`` ({"d,l": figures}); each shape is scored as its own unpadded batch."""
    strategy = strategy or Strategy()
    generator = torch.Generator().manual_seed(strategy.seed)
    batch = as_batch(lm, graphs)
    groups = split_shapes(lm, batch)
    if groups is None:
        return _evaluate(lm, batch, batch_size, strategy, generator, lm.task.degree)
    return combine({s: _evaluate(lm, b, batch_size, strategy, generator, s[0]) for s, b in groups.items()})


def _evaluate(lm: LoadedModel, batch: GraphBatch, batch_size: int, strategy: Strategy, generator: torch.Generator,
              degree: int) -> dict:
    """The figures of a batch of one shape."""
    device = next(lm.model.parameters()).device
    obj, L = lm.objective, batch.path.shape[1]
    n = len(batch)
    # the counts stay on the model's device and are read once at the end (no host sync per chunk on CUDA)
    correct = torch.zeros(L, dtype=torch.long, device=device)
    forced_correct = torch.zeros(L, dtype=torch.long, device=device)
    exact, decision, tries = (torch.zeros((), dtype=torch.long, device=device) for _ in range(3))
    t0 = time.perf_counter()
    step = graphs_per_pass(lm, strategy, batch_size)
    if device.type == "cuda" and batch.start.device.type == "cpu":
        batch = batch.pin()  # page-locked once: each chunk's copy runs without blocking the host
    for lo in range(0, n, step):
        sub = batch[lo : lo + step].to(device, non_blocking=True)
        q = lm.tokenizer.questions(sub)
        answers = obj.answer(sub.path)
        out, used = decode_with(lm, q, strategy, batch=sub, generator=generator)
        tries += used.to(device).sum()
        hit = out == answers
        correct += hit.sum(0)
        exact += hit.all(1).sum()
        decision += (obj.to_path(out)[:, 1] == sub.path[:, 1]).sum()
        tf = teacher_forced(lm, q, answers).argmax(-1)
        forced_correct += (tf == answers).sum(0)
    correct, forced_correct = correct.cpu(), forced_correct.cpu()
    exact, decision, tries = int(exact), int(decision), int(tries)
    seconds = time.perf_counter() - t0
    per_pos = (correct.double() / n).tolist()
    forced_pos = (forced_correct.double() / n).tolist()
    after = [forced_pos[p] for p in range(L) if obj.path_index(p, L) >= 2]
    return {
        "count": n,
        "objective": obj.name,
        "answer_order": obj.answer_order,
        "accuracy": exact / n,
        "per_position": per_pos,
        "forced_accuracy": float(forced_correct.sum()) / (n * L),
        "forced_per_position": forced_pos,
        "forced_after_decision": sum(after) / len(after) if after else None,
        "decision_accuracy": decision / n,
        "chance": 1 / degree,
        "decode": strategy.kind,
        "decode_options": strategy.to_json(),
        "tries_mean": tries / n,
        # answer tokens generated per graph: L for greedy and sampling, W·L for beam search, tries·L for the
        # verifier (candidates produced one by one, best first, until one is accepted)
        "tokens_per_graph": (strategy.beam * L) if strategy.kind == "beam" else tries * L / n,
        "seconds": seconds,
    }


def inference_fixes(lm: LoadedModel, graphs, beam: int = 4, tries: int | None = None, temperature: float = 1.0,
                    seed: int = 0) -> list[dict]:
    """Score one model with every decoding strategy on the same graphs: can search recover the plan?"""
    tries = tries or default_tries(lm.task.degree)
    strategies = [Strategy("greedy"), Strategy("sample", temperature=temperature, seed=seed), Strategy("beam", beam=beam),
                  Strategy("verify", tries=tries)]
    rows = []
    for s in strategies:
        r = evaluate(lm, graphs, strategy=s)
        rows.append({"model": lm.display_name, "objective": lm.objective.name, "strategy": s.label(), "decode": s.kind,
                     **{k: r[k] for k in ("count", "accuracy", "decision_accuracy", "tries_mean", "tokens_per_graph", "seconds")}})
    return rows
