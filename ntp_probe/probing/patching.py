"""The causal probes: activation patching, edge knock-out and direct logit attribution at one answer step.

Each probe runs the model on a **pair** of graphs at one answer step, with the model's teacher-forced input
there (the true answer before the step; mlm-u: the true answer before the step given, the rest masked):

* ``goal``: the same edges, the goal moved to the leaf of the next arm (the right first move changes);
* ``shuffle``: the same graph, its edges in another (seeded) order (the answer must not change);
* ``corrupt``: a second graph of the same shape the user gives.

The **logit difference** at the step is the logit of the clean answer's token minus the corrupt answer's token;
where the two answers agree (``shuffle``) the second token is the clean run's best wrong alternative (the
likeliest legal-but-wrong move, else the likeliest wrong token).

**Activation patching** (``patch``): for every layer (the embeddings, then after each block) and every input
position, the corrupt run with its residual stream there overwritten by the clean run's; ``grid[layer][pos]``
is that run's logit difference, ``normalized`` = (patched − corrupt) / (clean − corrupt). Cells that cannot
change anything are not run: a position whose clean and corrupt residuals are equal (in a causal model, every
position before the first token that differs), and, after the last block, every position but the one read out.

**Edge knock-out** (``knockout``): the clean run with one edge's two node tokens hidden as keys from every
other position, per edge; the change in the correct token's probability and in the logit difference. Mamba
models have no attention keys: refused.

**Direct logit attribution** (``attribution``): the correct-minus-best-wrong logit at the step split into what
each part writes into the residual stream — the embeddings, each head, each attention bias, each MLP (each
Mamba mixer) — read through the final layer norm with its scale frozen at the clean run's, plus the norm's
bias: the terms sum to the logit difference.

Many graphs are batched: a whole layer × position grid of many graphs is one forward pass per layer, each from
the layer it patches (``model.resume``). ``patch`` averages over graphs of one shape, ``GRAPHS`` at a time
into running sums (memory bounded for any count).

**Near zero**: where the goal barely moves the step's logit difference (|clean − corrupt| within ``NOISE`` × the
spread of the clean run's logits), the normalized map is a ratio of two near-equal numbers; ``patch`` flags it
(``near_zero``) and the CLI, the PNG and the app say "nothing to patch here" and show the raw differences.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from itertools import islice
from dataclasses import dataclass

import torch

from ..checkpoint import LoadedModel
from ..errors import GraphError, UsageError
from ..task import Graph
from .fit import answer_length, check_fits

PAIRS = ("goal", "shuffle")
ROLES = ("goal arm", "other arm")
CHUNK = 256  # graphs per forward pass (attribution)
GRAPHS = 256  # graphs per chunk of ``patch``: one chunk's activations are held at a time (memory does not grow
# with --count; g2-5-next-token: a few tens of MB a chunk; benchmarks/patch.py --rss)
NOISE = 0.05  # the near-zero threshold, a fraction of the clean logits' spread at the step (``noise_threshold``)
ROWS = 64  # sequences per patched or knocked-out pass: small batches stay in the CPU's cache (2-3x faster than
# 1,024 rows on the project's box for g2-5-mlm-u; benchmarks/patch.py)


# ------------------------------------------------------------------------------------------------
# pairs


def goal_pair(g: Graph) -> Graph:
    """The same edges, the goal moved to the leaf of the next arm."""
    arms = [a for a in g.arms() if a]
    if len(arms) < 2:
        raise GraphError(f"the goal pair needs a graph with two arms or more; this one has {len(arms)}")
    here = next((i for i, a in enumerate(arms) if g.goal in a), 0)
    return Graph(g.edges, g.start, arms[(here + 1) % len(arms)][-1])


def shuffle_pair(g: Graph, seed: int = 0) -> Graph:
    """The same graph with its edges in another order (seeded; the same order if it has one edge)."""
    edges = list(g.edges)
    rng = random.Random(seed)
    for _ in range(20):
        rng.shuffle(edges)
        if tuple(edges) != g.edges:
            break
    return Graph(tuple(edges), g.start, g.goal)


def check_corrupt(lm: LoadedModel, clean: Graph, corrupt: Graph) -> None:
    """A corrupt graph must fit the model and have the clean graph's shape (edges and path length)."""
    check_fits(corrupt, lm)
    a, b = (len(clean.edges), len(clean.path)), (len(corrupt.edges), len(corrupt.path))
    if a != b:
        raise GraphError(f"--corrupt: a graph of another shape ({b[0]} edges, a path of {b[1]} nodes) than the clean "
                         f"one ({a[0]} edges, a path of {a[1]} nodes)")


def make_pair(lm: LoadedModel, g: Graph, pair: str = "goal", corrupt: Graph | None = None, seed: int = 0) -> Graph:
    """The corrupt graph of ``g`` for a pair kind (``corrupt`` given: that graph, checked)."""
    if corrupt is not None:
        check_corrupt(lm, g, corrupt)
        return corrupt
    if pair == "goal":
        return goal_pair(g)
    if pair == "shuffle":
        return shuffle_pair(g, seed)
    raise UsageError(f"--pair {pair!r}: choose one of {', '.join(PAIRS)}")


# ------------------------------------------------------------------------------------------------
# the step's input


def check_patchable(lm: LoadedModel) -> None:
    """Every shipped objective runs one forward pass at a step (next-token, reverse, multi-token: teacher-forced;
    teacherless, hybrid: ``$`` inputs; mlm-u: the prefix given, the rest masked), so every one can be patched;
    an objective that says otherwise (``no_patching``) is refused with its reason."""
    why = lm.objective.no_patching
    if why:
        raise UsageError(f"{lm.objective.name} models cannot be patched: {why}")


def default_step(lm: LoadedModel, g: Graph) -> int:
    """The decision step (0-based, model order): the answer position of the node after the start."""
    return lm.objective.path_index(1, answer_length(lm, g))


def check_step(lm: LoadedModel, g: Graph, step: int) -> None:
    n = answer_length(lm, g)
    if not 0 <= step < n:
        raise GraphError(f"--step {step + 1}: outside the answer (answer tokens 1..{n})")


@dataclass
class StepInput:
    x: list[int]  # the model's input (causal models: up to the row read, nothing after it matters)
    row: int  # the output row holding the step's distribution
    answer: list[int]  # the true answer, model order


def step_input(lm: LoadedModel, g: Graph, step: int) -> StepInput:
    obj, tok = lm.objective, lm.tokenizer
    answer = obj.to_path_list(list(g.path))
    q = tok.question(g)
    if not obj.causal:  # mlm-u: the answer before the step given, the step and after masked
        x = q + answer[:step] + [tok.dollar] * (len(answer) - step)
        return StepInput(x, len(q) + step, answer)
    x = obj.inputs(torch.tensor([q]), torch.tensor([answer]), tok.dollar)[0].tolist()
    row = len(q) - 1 + step
    return StepInput(x[: row + 1], row, answer)


def _device(lm: LoadedModel):
    return next(lm.model.parameters()).device


def _best_wrong(logits: torch.Tensor, right: int, legal: list[int]) -> int:
    wrong = [t for t in legal if t != right] or [t for t in range(logits.numel()) if t != right]
    return max(wrong, key=lambda t: float(logits[t]))


@dataclass
class Prepared:
    """A batch of pairs at one step, run clean and corrupt."""

    clean_x: torch.Tensor  # [B, T]
    corrupt_x: torch.Tensor
    row: int
    a: torch.Tensor  # [B] the clean answer's token
    b: torch.Tensor  # [B] the corrupt answer's token (or the clean run's best wrong one)
    clean_hidden: list[torch.Tensor]  # per layer [B, T, C]
    corrupt_hidden: list[torch.Tensor]
    clean_ld: torch.Tensor  # [B]
    corrupt_ld: torch.Tensor
    clean_logits: torch.Tensor  # [B, V] at the row


def _ld(logits: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[B] logit difference from [B, V] logits."""
    i = torch.arange(logits.shape[0], device=logits.device)
    return (logits[i, a] - logits[i, b]).float()


def _inputs(lm: LoadedModel, graphs: Sequence[Graph], step: int) -> tuple[list[StepInput], torch.Tensor]:
    ins = [step_input(lm, g, step) for g in graphs]
    if len({(len(s.x), s.row) for s in ins}) > 1:
        raise GraphError("graphs of several shapes cannot be averaged position by position; give graphs of one shape")
    return ins, torch.tensor([s.x for s in ins], device=_device(lm))


@torch.no_grad()
def prepare(lm: LoadedModel, cleans: Sequence[Graph], corrupts: Sequence[Graph], step: int) -> Prepared:
    ci, cx = _inputs(lm, cleans, step)
    xi, xx = _inputs(lm, corrupts, step)
    if cx.shape != xx.shape or ci[0].row != xi[0].row:
        raise GraphError("the corrupt graph's input does not line up with the clean one's (another shape)")
    row = ci[0].row
    model = lm.model
    c_hidden, c_logits = _run(model, cx, row)
    x_hidden, x_logits = _run(model, xx, row)
    cl = c_logits.float()
    a, bs = [], []
    for k, (c, x) in enumerate(zip(ci, xi)):
        a.append(c.answer[step])
        if x.answer[step] != c.answer[step]:
            bs.append(x.answer[step])
        else:
            bs.append(_best_wrong(cl[k], c.answer[step], lm.objective.legal_moves(cleans[k], step, c.answer)))
    dev = cx.device
    a, b = torch.tensor(a, device=dev), torch.tensor(bs, device=dev)
    # the two ends of the scale by the patched runs' own arithmetic (``resume`` from the embeddings), so that a
    # cell that changes nothing gives the corrupt value to the last bit, not to the kernels' 1e-6
    clean_ld = torch.cat([_ld(model.resume(cx[i: i + ROWS], c_hidden[0][i: i + ROWS], 0, row), a[i: i + ROWS],
                              b[i: i + ROWS]) for i in range(0, len(cx), ROWS)])
    corrupt_ld = torch.cat([_ld(model.resume(xx[i: i + ROWS], x_hidden[0][i: i + ROWS], 0, row), a[i: i + ROWS],
                                b[i: i + ROWS]) for i in range(0, len(xx), ROWS)])
    return Prepared(cx, xx, row, a, b, c_hidden, x_hidden, clean_ld, corrupt_ld, cl)


def _run(model, x: torch.Tensor, row: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The residual stream after every layer ([B, T, C] each) and the logits at ``row`` [B, V], ROWS at a time."""
    outs = [model(x[i: i + ROWS], want_hidden=True) for i in range(0, len(x), ROWS)]
    hidden = [torch.cat([o.hidden[layer] for o in outs]) for layer in range(len(outs[0].hidden))]
    return hidden, torch.cat([o.logits[:, row] for o in outs])


# ------------------------------------------------------------------------------------------------
# activation patching


@torch.no_grad()
def patched_ld(lm: LoadedModel, prep: Prepared, layer: int, positions: Sequence[int]) -> torch.Tensor:
    """[B] the corrupt run's logit difference with the residual after ``layer`` at ``positions`` (all at once)
    overwritten by the clean run's."""
    x = prep.corrupt_hidden[layer].clone()
    pos = list(positions)
    x[:, pos] = prep.clean_hidden[layer][:, pos]
    logits = lm.model.resume(prep.corrupt_x, x, layer, prep.row)
    return _ld(logits, prep.a, prep.b)


@torch.no_grad()
def patch_grid(lm: LoadedModel, prep: Prepared, skip: bool = True) -> torch.Tensor:
    """[B, layers + 1, T]: every (layer, position) patched alone. ``skip`` leaves out the cells that cannot change
    anything (their value is the corrupt run's, exactly); ``skip=False`` runs them all."""
    B, T = prep.corrupt_x.shape
    L = len(prep.clean_hidden)
    grid = prep.corrupt_ld[:, None, None].expand(B, L, T).clone()
    for layer in range(L):
        hc, hx = prep.clean_hidden[layer], prep.corrupt_hidden[layer]
        run = torch.ones(B, T, dtype=torch.bool, device=hc.device)
        if skip:
            run = (hc != hx).any(-1)
            hidden = getattr(lm.model.config, "hidden_token", -1)
            if hidden >= 0:  # mlm-u --drop-masked: a mask token is read by no other position
                run &= prep.corrupt_x != hidden
            if layer == L - 1:  # after the last block only the row read out matters
                run[:, : prep.row] = False
            run[:, prep.row + 1:] &= layer < L - 1
            run[:, prep.row] |= (hc[:, prep.row] != hx[:, prep.row]).any(-1)
        cells_k, cells_p = run.nonzero(as_tuple=True)
        for i in range(0, len(cells_k), ROWS):
            ks, ps = cells_k[i: i + ROWS], cells_p[i: i + ROWS]
            x = hx[ks].clone()
            j = torch.arange(len(ks), device=hc.device)
            x[j, ps] = hc[ks, ps]
            logits = lm.model.resume(prep.corrupt_x[ks], x, layer, prep.row)
            grid[ks, layer, ps] = _ld(logits, prep.a[ks], prep.b[ks])
    return grid


def layer_names(lm: LoadedModel) -> list[str]:
    return ["embed"] + [f"block {i + 1}" for i in range(len(lm.model.blocks))]


def _f(x: float | None, nd: int = 6) -> float | None:
    return None if x is None or x != x else round(float(x), nd)


# ------------------------------------------------------------------------------------------------
# knock-out and attribution


def edge_roles(g: Graph) -> list[str]:
    arm = next((set(a) for a in g.arms() if g.goal in a), set())
    return [ROLES[0] if v in arm else ROLES[1] for _, v in g.edges]


def check_knockout(lm: LoadedModel) -> None:
    if getattr(lm.model.config, "arch", "gpt") == "mamba":
        raise UsageError("--knockout hides edges from attention; a Mamba model has none (patching and --attribution "
                         "work on it)")


@torch.no_grad()
def knockout(lm: LoadedModel, prep: Prepared, cleans: Sequence[Graph]) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, E] change in the correct token's probability and in the logit difference, each edge hidden alone."""
    check_knockout(lm)
    B, T = prep.clean_x.shape
    E = len(cleans[0].edges)
    dev = prep.clean_x.device
    p0 = prep.clean_logits.softmax(-1)[torch.arange(B, device=dev), prep.a]
    dp, dl = torch.zeros(B, E), torch.zeros(B, E)
    keys = torch.zeros(E, T, dtype=torch.bool, device=dev)
    first = getattr(lm.tokenizer, "edges_offset", 0)  # the query-first layout puts 's g /' before the edges
    for e in range(E):
        keys[e, [first + 3 * e, first + 3 * e + 1]] = True
    per = max(1, ROWS // E)
    for i in range(0, B, per):
        ks = torch.arange(i, min(B, i + per), device=dev)
        n = len(ks)
        x = prep.clean_x[ks].repeat_interleave(E, 0)
        lg = lm.model(x, knockout=keys.repeat(n, 1)).logits[:, prep.row].float()
        a, b = prep.a[ks].repeat_interleave(E), prep.b[ks].repeat_interleave(E)
        p = lg.softmax(-1)[torch.arange(n * E, device=dev), a]
        dp[ks.cpu()] = (p - p0[ks].repeat_interleave(E)).view(n, E).cpu()
        dl[ks.cpu()] = (_ld(lg, a, b) - prep.clean_ld[ks].repeat_interleave(E)).view(n, E).cpu()
    return dp, dl


def check_attribution(lm: LoadedModel) -> None:
    if getattr(lm.model.config, "bst", False):
        raise UsageError("--attribution: a bst model's next head is an MLP on the forward and the backward encoders' "
                         "states, so no head or MLP has a direct path to the logits (patching and --knockout work)")


@torch.no_grad()
def attribution(lm: LoadedModel, prep: Prepared, cleans: Sequence[Graph], step: int) -> tuple[list[str], torch.Tensor,
                                                                                               torch.Tensor, list[int]]:
    """Direct logit attribution of the correct-minus-best-wrong logit at the row: (term names, [B, terms] values,
    [B] the logit difference itself, [B] the best wrong token). The terms: ``embed``, each part the model
    records (``block i head h``, ``block i attn bias``, ``block i mlp``; Mamba: ``block i mixer``), ``ln_f bias``."""
    check_attribution(lm)
    model = lm.model
    B = prep.clean_x.shape[0]
    dev = prep.clean_x.device
    right = prep.a
    host_logits, host_right = prep.clean_logits.float().cpu(), right.tolist()  # one copy, not B syncs on CUDA
    wrong = torch.tensor([_best_wrong(host_logits[k], host_right[k],
                                      lm.objective.legal_moves(cleans[k], step, step_input(lm, cleans[k], step).answer))
                          for k in range(B)], device=dev)
    names, values = None, []
    for i in range(0, B, CHUNK):
        ks = torch.arange(i, min(B, i + CHUNK), device=dev)
        out = model(prep.clean_x[ks], want_hidden=True, want_parts=True)
        parts = [("embed", out.hidden[0])] + list(out.parts)
        names = [n for n, _ in parts] + ["ln_f bias"]
        final = out.hidden[-1][:, prep.row].float()  # [n, C]
        ln = model.ln_f
        scale = (final.var(-1, unbiased=False, keepdim=True) + ln.eps).sqrt()  # frozen
        w = model.lm_head.weight.float()
        d = (w[right[ks]] - w[wrong[ks]]) * ln.weight.float() / scale  # [n, C]
        terms = []
        for _, t in parts:
            c = t[:, prep.row].float()
            terms.append(((c - c.mean(-1, keepdim=True)) * d).sum(-1))
        bias = ln.bias.float() if ln.bias is not None else torch.zeros(w.shape[1], device=dev)
        terms.append(((w[right[ks]] - w[wrong[ks]]) * bias).sum(-1))
        values.append(torch.stack(terms, 1).cpu())
    i = torch.arange(B, device=dev)
    total = (prep.clean_logits[i, right] - prep.clean_logits[i, wrong]).float().cpu()
    return names, torch.cat(values), total, wrong.tolist()


# ------------------------------------------------------------------------------------------------
# the whole probe, as the CLI and the app show it


class _Sums:
    """Running sums over the chunks of graphs: what ``patch`` reports, without holding any chunk's activations."""

    def __init__(self) -> None:
        self.n = 0
        self.clean = self.corrupt = self.gap = self.threshold = 0.0
        self.grid: torch.Tensor | None = None  # [L, T] float64
        self.norm: torch.Tensor | None = None  # [L, T] over the graphs with an effect
        self.effect = 0  # graphs whose gap is above their noise threshold
        self.roles = {r: [0, 0.0, 0.0] for r in ROLES}  # edges, Σ Δp, Σ Δlogit
        self.terms: torch.Tensor | None = None
        self.total = 0.0

    def add(self, grid: torch.Tensor, prep: Prepared, gap: torch.Tensor, thr: torch.Tensor) -> None:
        self.n += len(gap)
        self.clean += float(prep.clean_ld.double().sum())
        self.corrupt += float(prep.corrupt_ld.double().sum())
        self.gap += float(gap.double().sum())
        self.threshold += float(thr.double().sum())
        g = grid.double().sum(0).cpu()
        self.grid = g if self.grid is None else self.grid + g
        ok = gap > thr  # the ratio (patched − corrupt) / (clean − corrupt) of a graph within the noise is noise
        self.effect += int(ok.sum())
        if bool(ok.any()):
            d = (prep.clean_ld - prep.corrupt_ld)[ok][:, None, None].double()
            nm = ((grid[ok].double() - prep.corrupt_ld[ok][:, None, None].double()) / d).sum(0).cpu()
            self.norm = nm if self.norm is None else self.norm + nm


def noise_threshold(clean_logits: torch.Tensor) -> torch.Tensor:
    """[B] the logit difference below which a pair's clean and corrupt runs do not differ: ``NOISE`` × the
    standard deviation of the clean run's logits over the vocabulary at the step (the model's own logit scale
    there; 2.0–3.0 on the shipped models, so about 0.1–0.15 logits), and never below 1e-6 (float rounding)."""
    return (NOISE * clean_logits.float().std(-1, unbiased=False)).clamp_min(1e-6)


@torch.no_grad()
def patch(lm: LoadedModel, graphs: Iterable[Graph], pair: str = "goal", corrupt: Graph | None = None,
          step: int | None = None, edges: bool = False, attribute: bool = False, seed: int = 0,
          chunk: int = GRAPHS) -> dict:
    """The probe over one graph (the JSON of ``ntp-probe patch``) or averaged over several (adds ``count``).
    ``step`` is 0-based in the model's order (default: the decision step); the JSON counts it from 1.

    ``graphs`` is read ``chunk`` graphs at a time (an iterator is never held whole): each chunk's activations
    are run, summed into running totals and dropped, so memory does not grow with the number of graphs.

    ``near_zero``: the goal does not change this step's output — the pair's clean and corrupt logit differences
    are within ``noise_threshold`` of each other (averaged: the mean |clean − corrupt| over the graphs is within
    the mean threshold). ``normalized`` then divides noise by noise: it is averaged over the graphs *above* their
    threshold only (``normalized_graphs`` of them; null everywhere when there are none)."""
    check_patchable(lm)
    if edges:
        check_knockout(lm)  # before any work
    if attribute:
        check_attribution(lm)
    if chunk < 1:
        raise UsageError("chunk: at least one graph")
    it = iter(graphs)
    batch = list(islice(it, chunk))
    if not batch:
        raise GraphError("no graphs to patch")
    if corrupt is not None and len(batch) > 1:
        raise UsageError("--corrupt gives the second graph of one pair: use it with --graph")
    if step is None:
        step = default_step(lm, batch[0])
    sums, shape, tokens, names, first, one_edges, first_att = _Sums(), None, None, None, batch[0], None, None
    while batch:
        for g in batch:
            check_fits(g, lm)
            check_step(lm, g, step)
        corrupts = [make_pair(lm, g, pair, corrupt, seed + sums.n + k) for k, g in enumerate(batch)]
        prep = prepare(lm, batch, corrupts, step)
        if shape is None:
            shape, tokens = (prep.clean_x.shape[1], prep.row), prep.clean_x[0].tolist()
        elif (prep.clean_x.shape[1], prep.row) != shape:
            raise GraphError("graphs of several shapes cannot be averaged position by position; give graphs of one "
                             "shape")
        grid = patch_grid(lm, prep)
        gap, thr = (prep.clean_ld - prep.corrupt_ld).abs(), noise_threshold(prep.clean_logits)
        sums.add(grid, prep, gap, thr)
        if edges:
            dp, dl = knockout(lm, prep, batch)
            if one_edges is None:
                one_edges = (dp[0], dl[0])
            for k, g in enumerate(batch):
                for e, r in enumerate(edge_roles(g)):
                    acc = sums.roles[r]
                    acc[0] += 1
                    acc[1] += float(dp[k, e])
                    acc[2] += float(dl[k, e])
        if attribute:
            names, vals, total, wrong = attribution(lm, prep, batch, step)
            v = vals.double().sum(0)
            sums.terms = v if sums.terms is None else sums.terms + v
            sums.total += float(total.double().sum())
            if sums.n == len(batch):
                first_att = (int(prep.a[0]), wrong[0])
        del prep, grid
        batch = list(islice(it, chunk))
    n = sums.n
    tok = lm.tokenizer.token_str
    one = n == 1
    L, T = sums.grid.shape
    mean_norm = sums.norm / sums.effect if sums.norm is not None else torch.full((L, T), float("nan"))
    res = {
        "model": lm.display_name,
        "pair": "corrupt" if corrupt is not None else pair,
        "step": step + 1,
        "tokens": [tok(t) for t in tokens],
        "layers": layer_names(lm),
        "clean": _f(sums.clean / n),
        "corrupt": _f(sums.corrupt / n),
        "grid": [[_f(v) for v in row] for row in (sums.grid / n).tolist()],
        "normalized": [[_f(v) for v in row] for row in mean_norm.tolist()],
    }
    if not one:
        res["count"] = n
    res["near_zero"] = sums.gap <= sums.threshold
    res["gap"] = _f(sums.gap / n)  # mean |clean − corrupt| per graph, logits
    res["noise_threshold"] = _f(sums.threshold / n)
    if not one:
        res["normalized_graphs"] = sums.effect
    if edges:
        if one:
            dp, dl = one_edges
            res["edges"] = [{"edge": f"{u}→{v}", "role": r, "delta_p": _f(dp[e]), "delta_logit": _f(dl[e])}
                            for e, ((u, v), r) in enumerate(zip(first.edges, edge_roles(first)))]
        else:
            res["edges"] = [{"role": r, "edges": c, "delta_p": _f(p / c), "delta_logit": _f(d / c)}
                            for r, (c, p, d) in sums.roles.items() if c]
    if attribute:
        res["attribution"] = {
            "correct": tok(first_att[0]) if one else None,
            "wrong": tok(first_att[1]) if one else None,
            "logit_diff": _f(sums.total / n),
            "terms": [{"name": nm, "value": _f(v)} for nm, v in zip(names, (sums.terms / n).tolist())],
        }
    return res


def position_labels(tokens: list[str]) -> list[str]:
    """Generic names of the input positions for an averaged map (each graph has its own node ids): ``u1 v1 | u2 …``
    for the edges, ``s`` ``g`` for the query, ``a1 …`` for answer tokens given; the separators and ``$`` as they are."""
    if "/" not in tokens or "=" not in tokens:
        return list(tokens)
    slash, eq = tokens.index("/"), tokens.index("=")
    query_first = slash < eq and slash == 2 and eq > 3 and tokens[eq - 1] != "/"
    out = []
    edge0 = 3 if query_first else 0
    for p, t in enumerate(tokens):
        if t in ("|", "/", "=", "$"):
            out.append(t)
        elif p > eq:
            out.append(f"a{p - eq}")
        elif (query_first and p < 2) or (not query_first and p > slash):
            out.append("s" if p in (0, slash + 1) else "g")
        else:
            q = p - edge0
            out.append(f"{'uv'[q % 3]}{q // 3 + 1}")
    return out


def top_cells(res: dict, k: int = 5) -> list[tuple[str, int, str, float]]:
    """The ``k`` cells of largest normalized effect: (layer, position, token, value)."""
    cells = [(res["layers"][i], p, res["tokens"][p], v) for i, row in enumerate(res["normalized"])
             for p, v in enumerate(row) if v is not None]
    return sorted(cells, key=lambda c: -abs(c[3]))[:k]


NEAR_ZERO = "the goal does not change this step's output: nothing to patch here"


def raw_cells(res: dict, k: int = 3) -> list[tuple[str, int, float]]:
    """The ``k`` cells of largest raw effect, patched − corrupt in logits: (layer, position, value)."""
    c = res["corrupt"]
    cells = [(res["layers"][i], p, v - c) for i, row in enumerate(res["grid"]) for p, v in enumerate(row)
             if v is not None and c is not None]
    return sorted(cells, key=lambda x: -abs(x[2]))[:k]


def near_zero_detail(res: dict, labels: list[str] | None = None) -> str:
    """What a near-zero result shows instead of a normalized map: the raw logit differences, one line."""
    labels = labels or res["tokens"]
    mean = " (mean per graph)" if "count" in res else ""
    cells = ", ".join(f"{layer} @ {labels[p]} (#{p + 1}) {v:+.4f}" for layer, p, v in raw_cells(res))
    return (f"|clean − corrupt| = {res['gap']:.4f} logits{mean}, within the noise threshold {res['noise_threshold']:.3f} "
            f"({NOISE:.0%} of the spread of the clean run's logits); largest patched − corrupt: {cells}")

