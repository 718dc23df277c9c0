"""Scoring a model on many graphs: greedy accuracy, teacher-forced accuracy, the decision step."""

from __future__ import annotations

import time

import torch

from .checkpoint import LoadedModel
from .decoding import Strategy, decode_with, default_tries, teacher_forced
from .errors import GraphError
from .task import Graph, GraphBatch


def as_batch(lm: LoadedModel, graphs: list[Graph] | GraphBatch) -> GraphBatch:
    """Check that graphs fit the model (ids < N, edge count, path length) and batch them."""
    if isinstance(graphs, GraphBatch):
        return graphs
    t = lm.task
    for i, g in enumerate(graphs):
        if len(g.edges) != t.num_edges or len(g.path) != t.path_len:
            raise GraphError(
                f"graph {i + 1}: {len(g.edges)} edges and a {len(g.path)}-node path, but the model was trained on "
                f"{t.label()} ({t.num_edges} edges, {t.path_len}-node paths)"
            )
        if max(max(e) for e in g.edges) >= t.nodes:
            raise GraphError(f"graph {i + 1}: node ids must be < {t.nodes} for this model")
    return GraphBatch.from_graphs(graphs)


@torch.no_grad()
def evaluate(lm: LoadedModel, graphs: list[Graph] | GraphBatch, batch_size: int = 2000, strategy: Strategy | None = None) -> dict:
    strategy = strategy or Strategy()
    generator = torch.Generator().manual_seed(strategy.seed)
    batch = as_batch(lm, graphs)
    device = next(lm.model.parameters()).device
    obj, L = lm.objective, lm.task.path_len
    n = len(batch)
    correct = torch.zeros(L, dtype=torch.long)
    forced_correct = torch.zeros(L, dtype=torch.long)
    exact = decision = tries = 0
    t0 = time.perf_counter()
    for lo in range(0, n, batch_size):
        sub = batch[lo : lo + batch_size].to(device)
        q = lm.tokenizer.questions(sub)
        answers = obj.answer(sub.path)
        out, used = decode_with(lm, q, strategy, batch=sub, generator=generator)
        tries += int(used.sum())
        hit = out == answers
        correct += hit.sum(0).cpu()
        exact += int(hit.all(1).sum())
        decision += int((obj.to_path(out)[:, 1] == sub.path[:, 1]).sum())
        tf = teacher_forced(lm, q, answers).argmax(-1)
        forced_correct += (tf == answers).sum(0).cpu()
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
        "chance": 1 / lm.task.degree,
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
