"""Batched decoding apart from training (cf. nanochat's engine): one decode loop, strategies over it.

The loop (``_decode``) asks the model's objective for a *stepper* (``objectives.base.Stepper``: a KV-cached
left-to-right pass, teacherless's one pass, mlm-u's fill-in), and at each step lets a strategy choose
among the stepper's next distributions: greedy (argmax), sampling (temperature, top-k) or beam search
(which keeps several rows per graph); the verifier is beam search plus an oracle. ``forced`` is a [B, L]
tensor of token ids with -1 where the model decodes freely; the loop applies it in one place: at a forced
position every token but the forced one is ruled out before the strategy chooses.

A batch of graphs of several shapes comes LEFT-padded (``tokenizer.PAD``) with ``lengths`` ([B] answer tokens
per graph): the loop decodes max(lengths) steps and writes -1 past each graph's own length.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .checkpoint import LoadedModel


@dataclass
class Decoded:
    tokens: torch.Tensor  # [B, L] answer in the model's order
    logits: torch.Tensor  # [B, L, V] the distribution each answer token was chosen from


# a strategy: (logits [N, V] with forced tokens applied, graph index of each row [N]) -> (tokens [N'], parents [N'] or None)
Choose = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, "torch.Tensor | None"]]


def _apply_forced(lp: torch.Tensor, forced_col: torch.Tensor | None) -> torch.Tensor:
    """Rule out every token but the forced one in rows with a forced token (-1: free)."""
    if forced_col is None:
        return lp
    keep = forced_col >= 0
    if not keep.any():
        return lp
    masked = torch.full_like(lp, float("-inf"))
    masked.scatter_(1, forced_col.clamp_min(0)[:, None], 0.0)
    return torch.where(keep[:, None], masked, lp)


@torch.no_grad()
def _decode(lm: LoadedModel, questions: torch.Tensor, choose: Choose, forced: torch.Tensor | None = None,
            keep_logits: bool = False, use_cache: bool = True,
            lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The decode loop: ([N, L] answers, [N] graph of each row, [B, L, V] the distributions chosen from or None)."""
    B = questions.shape[0]
    if lengths is not None:
        lengths = lengths.to(questions.device)
    L = lm.task.path_len if lengths is None else int(lengths.max())
    dev = questions.device
    stepper = lm.objective.stepper(lm, questions, forced, use_cache)
    graph = torch.arange(B, device=dev)
    seqs = torch.full((B, L), -1, dtype=torch.long, device=dev)
    out_logits = None
    for _ in range(L):
        pos, logits = stepper.next()
        if keep_logits:
            if out_logits is None:
                out_logits = logits.new_zeros(B, L, logits.shape[-1])
            out_logits[graph, pos] = logits
        if forced is not None:
            logits = _apply_forced(logits, forced[graph, pos])  # forced tokens: the one place
        if lengths is not None:  # a graph past its own answer: a forced dummy keeps its beams and scores as they are
            beyond = pos >= lengths[graph]
            if bool(beyond.any()):
                logits = _apply_forced(logits, torch.where(beyond, 0, -1))
        tokens, parents = choose(logits, graph)
        if parents is not None:
            seqs, graph, pos = seqs[parents], graph[parents], pos[parents]
        seqs[torch.arange(len(seqs), device=dev), pos] = tokens
        stepper.feed(pos, tokens, parents)
    if keep_logits:
        out_logits = stepper.finish(seqs, out_logits)
    if lengths is not None:  # past a graph's own answer: padding
        beyond = torch.arange(L, device=dev)[None, :] >= lengths[graph][:, None]
        seqs = seqs.masked_fill(beyond, -1)
    return seqs, graph, out_logits


def _greedy(logits: torch.Tensor, graph: torch.Tensor):
    return logits.argmax(-1), None


@torch.no_grad()
def greedy(
    lm: LoadedModel,
    questions: torch.Tensor,
    forced: torch.Tensor | None = None,
    use_cache: bool = True,
    lengths: torch.Tensor | None = None,
) -> Decoded:
    """Greedy decoding of ``lm.task.path_len`` answer tokens (``lengths``: each graph's own), as the model was trained."""
    tokens, _, logits = _decode(lm, questions, _greedy, forced, keep_logits=True, use_cache=use_cache, lengths=lengths)
    return Decoded(tokens, logits)


@torch.no_grad()
def teacher_forced(lm: LoadedModel, questions: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
    """[B, L, V] logits at each answer position with the true answer as input (as the objective defines it)."""
    return lm.objective.teacher_forced(lm, questions, answers)


# ------------------------------------------------------------------------------------------------
# Other strategies: sampling, beam search, verifier-guided search


@dataclass(frozen=True)
class Strategy:
    """How to decode: greedy (default), sample (temperature, top-k), beam (width), verify (tries)."""

    kind: str = "greedy"
    temperature: float = 1.0
    top_k: int = 0  # 0 = no top-k filter when sampling
    beam: int = 4
    tries: int = 8
    seed: int = 0

    def __post_init__(self):
        from .errors import UsageError

        if self.kind not in STRATEGIES:
            raise UsageError(f"--decode {self.kind}: choose one of {', '.join(STRATEGIES)}")
        from .limits import check_int, check_strategy

        check_strategy(self.temperature, self.top_k, self.beam, self.tries)  # finite, in range: NaN or 1e-45 would
        check_int("--seed", self.seed, 0, 2**62)  # turn the softmax into NaNs, a beam of 10**30 into an allocation error

    def to_json(self) -> dict:
        d = {"kind": self.kind}
        if self.kind == "sample":
            d.update(temperature=self.temperature, top_k=self.top_k, seed=self.seed)
        elif self.kind == "beam":
            d.update(beam=self.beam)
        elif self.kind == "verify":
            d.update(tries=self.tries)
        return d

    def label(self) -> str:
        return {"greedy": "greedy", "sample": f"sample T={self.temperature:g}" + (f" top-k {self.top_k}" if self.top_k else ""),
                "beam": f"beam W={self.beam}", "verify": f"verifier, ≤{self.tries} tries"}[self.kind]


STRATEGIES = ("greedy", "sample", "beam", "verify")


def default_tries(degree: int) -> int:
    """The verifier's default budget: enough to try every arm, at least 8."""
    return max(8, 2 * degree)


@torch.no_grad()
def sample(lm: LoadedModel, questions: torch.Tensor, forced: torch.Tensor | None = None, temperature: float = 1.0,
           top_k: int = 0, generator: torch.Generator | None = None, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """[B, L] answers sampled token by token (forced tokens kept)."""
    lm.objective.check_strategy("sample")

    def choose(logits, graph):
        logits = logits.log_softmax(-1) / temperature
        if top_k:
            kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = logits.softmax(-1)
        return torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(1).to(questions.device), None

    return _decode(lm, questions, choose, forced, lengths=lengths)[0]


@torch.no_grad()
def beam_search(lm: LoadedModel, questions: torch.Tensor, width: int, forced: torch.Tensor | None = None,
                lengths: torch.Tensor | None = None):
    """Beam search: ([B, W, L] answers best first, [B, W] total log-probabilities; -inf marks unused beams)."""
    lm.objective.check_strategy("beam")
    B = questions.shape[0]
    state = {"scores": torch.zeros(B, 1, device=questions.device)}

    def choose(logits, graph):  # rows are graph-major: row b * nb + j is beam j of graph b
        scores = state["scores"]
        nb, V = scores.shape[1], logits.shape[-1]
        cand = (scores[:, :, None] + logits.log_softmax(-1).view(B, nb, V)).view(B, nb * V)
        top, idx = cand.topk(min(width, nb * V), dim=1)
        state["scores"] = top
        parents = (torch.arange(B, device=idx.device)[:, None] * nb + idx // V).reshape(-1)
        return (idx % V).reshape(-1), parents

    seqs = _decode(lm, questions, choose, forced, lengths=lengths)[0]
    scores = state["scores"]
    return seqs.view(B, scores.shape[1], -1), scores


def valid_paths(batch_edges: torch.Tensor, start: torch.Tensor, goal: torch.Tensor, paths: torch.Tensor,
                nodes: int) -> torch.Tensor:
    """The verifier, a perfect oracle: [B, K] whether each candidate path (start→goal order) is a valid
    start→goal path in its graph. ``paths`` is [B, K, L]; in a padded batch -1 ends a path (and pad edges are -1)."""
    code = batch_edges[..., 0] * (nodes + 8) + batch_edges[..., 1]  # [B, E]
    pair = paths[..., :-1] * (nodes + 8) + paths[..., 1:]  # [B, K, L-1]
    real = (paths[..., 1:] >= 0) & (paths[..., :-1] >= 0)
    is_edge = ((pair[..., None] == code[:, None, None, :]).any(-1) | ~real).all(-1)
    n = (paths >= 0).sum(-1, keepdim=True).clamp_min(1)  # [B, K, 1] real tokens
    last = paths.gather(-1, n - 1).squeeze(-1)
    return is_edge & (paths[..., 0] == start[:, None]) & (last == goal[:, None])


def row_bytes(lm: LoadedModel) -> int:
    """A generous estimate of the memory one decoded row takes: its context's key/value cache in every layer,
    activations and logits, in float32."""
    c = lm.model.config
    return c.block_size * (2 * c.n_layer * c.n_embd + 8 * c.n_embd + c.vocab_size) * 4


def check_width(lm: LoadedModel, strategy: Strategy) -> None:
    """A beam search keeps ``beam`` rows per graph, the verifier ``tries``: one graph's rows must fit
    ``limits.DECODE_BYTES`` (100,000 tries of a G(2,5) model took 4.7 GB); else a one-line UsageError."""
    from .errors import UsageError
    from .limits import DECODE_BYTES

    if strategy.kind not in ("beam", "verify"):
        return
    width = strategy.beam if strategy.kind == "beam" else strategy.tries
    most = max(1, DECODE_BYTES // row_bytes(lm))
    if width > most:
        name = "--beam" if strategy.kind == "beam" else "--tries"
        raise UsageError(f"{name} {width:,}: too wide for {lm.display_name} (each candidate holds its "
                         f"{lm.model.config.block_size}-token context); at most {most:,} for this model")


@torch.no_grad()
def decode_with(lm: LoadedModel, questions: torch.Tensor, strategy: Strategy, forced: torch.Tensor | None = None,
                batch=None, generator: torch.Generator | None = None,
                lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode with any strategy: ([B, L] answers in the model's order, [B] tries used).

    ``verify`` enumerates candidates best first (beam search of width ``tries``) and keeps the first
    that the verifier accepts; it needs ``batch`` (the graphs) for the oracle. ``batch`` gives the answer lengths
    of a topology set's model (or of a padded batch) when ``lengths`` is not given."""
    lm.objective.check_strategy(strategy.kind)
    check_width(lm, strategy)
    B = questions.shape[0]
    if lengths is None and batch is not None and (batch.padded or lm.task.mixed):
        lengths = batch.lengths()
    ones = torch.ones(B, dtype=torch.long)
    if strategy.kind == "greedy":
        return greedy(lm, questions, forced, lengths=lengths).tokens, ones
    if strategy.kind == "sample":
        if generator is None:
            generator = torch.Generator().manual_seed(strategy.seed)
        return sample(lm, questions, forced, strategy.temperature, strategy.top_k, generator, lengths=lengths), ones
    if strategy.kind == "beam":
        seqs, _ = beam_search(lm, questions, strategy.beam, forced, lengths=lengths)
        return seqs[:, 0], ones
    seqs, scores = beam_search(lm, questions, strategy.tries, forced, lengths=lengths)
    if batch is None:
        raise ValueError("verify needs the graphs")
    ok = valid_paths(batch.edges, batch.start, batch.goal, lm.objective.to_path(seqs), lm.task.nodes) & torch.isfinite(scores)
    K = seqs.shape[1]
    first = torch.where(ok.any(1), ok.float().argmax(1), torch.full((B,), K - 1, device=ok.device))
    tries = torch.where(ok.any(1), first + 1, torch.full((B,), K, device=ok.device))
    return seqs[torch.arange(B, device=seqs.device), first], tries.cpu()
