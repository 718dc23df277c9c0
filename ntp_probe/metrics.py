"""Batch measurements of the two failures: the Clever Hans cheat and the indecipherable token."""

from __future__ import annotations

import math

import torch

from .checkpoint import LoadedModel
from .decoding import greedy, teacher_forced
from .errors import GraphError, UsageError
from .evaluate import as_batch, shape_key, split_shapes
from .task import Graph, GraphBatch, shape_of


def path_star_mask(batch: GraphBatch, degree: int, path_len: int, nodes: int) -> torch.Tensor:
    """[B] bool: which graphs are in-distribution path-stars G(degree, path_len): the start has ``degree``
    children and no parent, every other node at most one child and one parent, every arm has
    ``path_len - 1`` nodes (so with d·(l-1) edges there is nothing else: no cycle, no branch) and the goal
    is an arm's leaf. ``arm_table`` and the Clever Hans measures are defined only for these."""
    B, E = batch.edges.shape[:2]
    u, v = batch.edges[..., 0], batch.edges[..., 1]
    if E != degree * (path_len - 1) or B == 0:
        return torch.zeros(B, dtype=torch.bool, device=u.device)
    from_start = u == batch.start[:, None]
    ones = torch.ones_like(u)
    parents = torch.zeros(B, nodes + 1, dtype=torch.long, device=u.device).scatter_add_(1, v, ones)
    uu = torch.where(from_start, torch.full_like(u, nodes), u)  # start edges counted in the dummy column
    children = torch.zeros(B, nodes + 1, dtype=torch.long, device=u.device).scatter_add_(1, uu, ones)
    ok = (from_start.sum(1) == degree) & (parents.max(1).values <= 1) & (children[:, :nodes].max(1).values <= 1)
    ok &= ~(v == batch.start[:, None]).any(1)
    if not ok.any():
        return ok
    arms = arm_table(batch, degree, path_len, nodes, rows=ok)
    ok &= (arms < nodes).all(2).all(1) & (arms[:, :, -1] == batch.goal[:, None]).any(1)
    return ok


def arm_table(batch: GraphBatch, degree: int, path_len: int, nodes: int, rows: torch.Tensor | None = None) -> torch.Tensor:
    """[B, d, l-1] the arms of each path-star graph, first node after the start first (``nodes`` past an arm's
    end). Graphs that are not path-stars (see ``path_star_mask``) must be left out with ``rows`` (their arms
    are then all ``nodes``)."""
    B = len(batch)
    u, v = batch.edges[..., 0], batch.edges[..., 1]
    from_start = u == batch.start[:, None]
    if rows is not None:
        from_start = from_start & rows[:, None]
        firsts = torch.full((B, degree), nodes, dtype=torch.long, device=u.device)
        firsts[rows] = v[from_start].view(-1, degree)
    else:
        firsts = v[from_start].view(B, degree)
    nxt = torch.full((B, nodes + 1), nodes, dtype=torch.long, device=u.device)  # nodes = "no child"
    uu = torch.where(from_start, torch.full_like(u, nodes), u)  # start edges go to the dummy column
    nxt.scatter_(1, uu, v)
    arms = [firsts]
    for _ in range(path_len - 2):
        arms.append(torch.gather(nxt, 1, arms[-1].clamp(max=nodes)))
    return torch.stack(arms, dim=2)


@torch.no_grad()
def clever_hans(lm: LoadedModel, graphs: list[Graph] | GraphBatch, seed: int = 0, batch_size: int = 2000,
                shape: tuple[int, int] | None = None) -> dict:
    """Force the decision step onto a wrong arm and decode greedily; measure whether the model follows it.

    Two shortcuts, two figures: ``follow_rate``, the fraction of graphs where the model stays on the forced arm at
    every inner step after the decision (answer tokens 3..l-1, counted from 1: each the child of the previous token,
    the Clever Hans cheat; ``None`` on G(d,3), whose arm has no inner node after the decision), and
    ``goal_copy_rate``, the fraction whose last token is the goal read in the query anyway (a second shortcut: "the
    last token is the goal"). ``wrong_leaf_rate``: the forced arm walked to its own (wrong) leaf.

    A topology set's model (or data of several shapes) is measured per shape too, under ``by_topology``
    (``shape``: the one shape of ``graphs``, set by that split)."""
    obj, t = lm.objective, lm.task
    if not obj.decision_step:
        raise UsageError(f"clever-hans does not apply to {lm.display_name}: {obj.no_decision}; probe it with "
                         "'ntp-probe probe' instead")
    if shape is None and not t.mixed and t.degree < 2:
        raise UsageError("clever-hans needs at least two arms (degree ≥ 2)")
    odd = 0
    if t.mixed and not isinstance(graphs, GraphBatch):  # edges not d(l−1): not a path-star, and batching would cut it
        kept = [g for g in graphs if shape_of(g) is not None]
        odd, graphs = len(graphs) - len(kept), kept
        if not kept:
            raise GraphError(f"clever-hans: none of the {odd:,} graphs is a path-star with at least two arms "
                             f"(the goal at an arm's end) that fits {t.label()}; it needs such graphs")
    batch = as_batch(lm, graphs)
    if shape is None and (groups := split_shapes(lm, batch)) is not None:
        parts, skipped = {}, odd
        for s, b in groups.items():  # a shape read off a graph that is not a path-star keeps none of its graphs
            if s[0] >= 2 and bool(path_star_mask(b, s[0], s[1], t.nodes).any()):
                parts[s] = clever_hans(lm, b, seed, batch_size, s)
            else:
                skipped += len(b)
        if not parts:
            raise GraphError(f"clever-hans: none of the {len(batch):,} graphs is a path-star with at least two arms "
                             f"(the goal at an arm's end) that fits {t.label()}; it needs such graphs")
        out = _combine(parts)
        out["skipped_ood"] = skipped + sum(r["skipped_ood"] for r in parts.values())
        return out
    d, l = shape if shape else (t.degree, t.path_len)
    if d < 2:
        raise UsageError("clever-hans needs at least two arms (degree ≥ 2)")
    total = len(batch)
    keep = path_star_mask(batch, d, l, t.nodes)
    if not keep.all():  # not a path-star G(d, l): no wrong arm to force; counted, not scored
        batch = GraphBatch(*(x[keep] for x in (batch.edges, batch.start, batch.goal, batch.path)))
    if len(batch) == 0:
        raise GraphError(f"clever-hans: none of the {total:,} graphs is a path-star G({d},{l}) N={t.nodes} (the start "
                         f"with {d} arms of {l - 1} nodes, the goal at an arm's end); it needs such graphs")
    device = next(lm.model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    n, L = len(batch), batch.path.shape[1]
    follow = torch.zeros(L, dtype=torch.long)
    leaf = decision_ok = goal_end = follow_inner = 0
    ent_sum = mass_sum = 0.0
    for lo in range(0, n, batch_size):
        sub = batch[lo : lo + batch_size].to(device)
        B = len(sub)
        lengths = sub.lengths() if t.mixed else None  # a topology set's model decodes each graph's own length
        arms = arm_table(sub, d, L, t.nodes)  # [B, d, l-1]
        goal_arm = (arms[:, :, -1] == sub.goal[:, None]).float().argmax(1)
        shift = torch.randint(1, d, (B,), generator=gen).to(device)  # a uniformly random wrong arm
        wrong = arms[torch.arange(B, device=device), (goal_arm + shift) % d]  # [B, l-1]
        q = lm.tokenizer.questions(sub)
        forced = torch.full((B, L), -1, dtype=torch.long, device=device)
        forced[:, 0], forced[:, 1] = sub.start, wrong[:, 0]
        out = greedy(lm, q, forced, lengths=lengths).tokens
        hit = out[:, 1:] == wrong  # positions 1..l-1 against the wrong arm
        follow[1:] += hit.sum(0).cpu()
        leaf += int(hit[:, 1:].all(1).sum())  # the whole arm, its (wrong) leaf included
        goal_end += int((out[:, -1] == sub.goal).sum())
        follow_inner += int(hit[:, 1:-1].all(1).sum())  # the inner steps after the decision (none on G(d,3))
        # the unforced decision: greedy choice, and its distribution given the true prefix "s"
        dec_logits = teacher_forced(lm, q, obj.answer(sub.path))[:, 1]
        p = dec_logits.softmax(-1)
        ent_sum += float(-(p * p.clamp_min(1e-12).log()).sum(-1).sum())
        mass_sum += float(p.gather(1, arms[:, :, 0]).sum())
        decision_ok += int((greedy(lm, q, lengths=lengths).tokens[:, 1] == sub.path[:, 1]).sum())
    per_pos = (follow.double() / n).tolist()
    per_pos[0] = per_pos[1] = None  # the forced start and the forced wrong node
    return {
        "count": n,
        "model": lm.display_name,
        "objective": obj.name,
        # the Clever Hans cheat: on the forced arm at every inner step after the decision (undefined without one)
        "follow_rate": follow_inner / n if L > 3 else None,
        # a second shortcut: on the wrong arm, the model still ends with the goal it read in the query
        "goal_copy_rate": goal_end / n,
        "wrong_leaf_rate": leaf / n,
        "follow_rate_per_position": per_pos,
        "decision_accuracy": decision_ok / n,
        "decision_entropy": ent_sum / n,
        "log_degree": math.log(d),
        "decision_mass_on_children": mass_sum / n,
        "chance": 1 / d,
        "skipped_ood": total - n,  # graphs that are not path-stars G(d, l) (a branch, a cycle, another degree)
    }


CH_FIGURES = ("follow_rate", "goal_copy_rate", "wrong_leaf_rate")  # the headline figures (cards, models, reports)
_RATES = ("follow_rate", "goal_copy_rate", "wrong_leaf_rate", "decision_accuracy", "decision_entropy",
          "log_degree", "decision_mass_on_children", "chance")


def _combine(parts: dict[tuple[int, int], dict]) -> dict:
    """Overall figures from figures per shape (weighted by count; a figure a shape does not define, such as
    G(d,3)'s follow rate, over the shapes that do), and ``by_topology``."""
    n = sum(r["count"] for r in parts.values())
    first = next(iter(parts.values()))
    out = dict(first)
    out["count"] = n
    for k in _RATES:
        defined = [r for r in parts.values() if r[k] is not None]
        out[k] = sum(r[k] * r["count"] for r in defined) / sum(r["count"] for r in defined) if defined else None
    L = max(len(r["follow_rate_per_position"]) for r in parts.values())
    out["follow_rate_per_position"] = [None, None] + [
        sum(r["follow_rate_per_position"][p] * r["count"] for r in parts.values() if p < len(r["follow_rate_per_position"]))
        / sum(r["count"] for r in parts.values() if p < len(r["follow_rate_per_position"])) for p in range(2, L)]
    out["by_topology"] = {shape_key(s): {k: r[k] for k in ("count", *_RATES, "follow_rate_per_position")}
                          for s, r in parts.items()}
    return out


def pct(x: float) -> str:
    """A rate as a percentage, never rounded to 100 % or 0 % when it is not (0.99996 → '>99.9 %')."""
    if x >= 1:
        return "100 %"
    if x <= 0:
        return "0 %"
    v = f"{x * 100:.1f}"
    return ">99.9 %" if v == "100.0" else "<0.1 %" if v == "0.0" else f"{v} %"


def clever_hans_sentence(res: dict) -> str:
    """What ``clever_hans``'s figures say, in words: the walk (follow rate) and the second shortcut (goal copy)."""
    follow, copy, leaf = res.get("follow_rate"), res["goal_copy_rate"], res["wrong_leaf_rate"]
    if follow is None:
        walk = ("Forced onto a wrong arm at the decision, there is nothing to walk: on G(d,3) the arm has no inner "
                "node after the decision (follow rate —), the next token is the last. ")
    else:
        walk = (f"Forced onto a wrong arm at the decision, the model stays on it at every inner step in {pct(follow)} "
                "of graphs (the Clever Hans cheat: 'the next node is a child of the previous one'). ")
    last = (f"At the last token it writes the goal from the query in {pct(copy)} (a second shortcut: 'the last token "
            f"is the goal'), the wrong arm's own leaf in {pct(leaf)}.")
    return walk + last
