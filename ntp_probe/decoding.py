"""Batched decoding apart from training (cf. nanochat's engine): greedy with a KV cache, forced tokens,
one-pass teacherless decoding, and teacher-forced scoring.

``forced`` is a [B, L] tensor of token ids with -1 where the model decodes freely; a forced token
is written into the answer (and into the model's input) instead of the model's own choice.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .checkpoint import LoadedModel


@dataclass
class Decoded:
    tokens: torch.Tensor  # [B, L] answer in the model's order
    logits: torch.Tensor  # [B, L, V] the distribution each answer token was chosen from


@torch.no_grad()
def greedy(
    lm: LoadedModel,
    questions: torch.Tensor,
    forced: torch.Tensor | None = None,
    use_cache: bool = True,
) -> Decoded:
    """Greedy decoding of ``lm.task.path_len`` answer tokens, the way the model was trained."""
    model, L = lm.model, lm.task.path_len
    B, Q = questions.shape
    if lm.objective.masked:  # mlm-u: fill in the most confident masked position, one pass per token
        from .anyorder import greedy_masked

        return greedy_masked(lm, questions, forced)
    if lm.objective.teacherless:
        x = torch.cat([questions, questions.new_full((B, L - 1), lm.tokenizer.dollar)], dim=1)
        if forced is not None:
            f = forced[:, : L - 1]
            x[:, Q:] = torch.where(f >= 0, f, x[:, Q:])
        logits = model(x).logits[:, Q - 1 :].float()
        tokens = logits.argmax(-1)
        if forced is not None:
            tokens = torch.where(forced >= 0, forced, tokens)
        return Decoded(tokens, logits)

    tokens, all_logits = [], []
    if use_cache:
        cache = model.new_cache()
        step_logits = model(questions, cache=cache).logits[:, -1].float()
    else:
        seq = questions
        step_logits = model(seq).logits[:, -1].float()
    for i in range(L):
        all_logits.append(step_logits)
        tok = step_logits.argmax(-1)
        if forced is not None:
            tok = torch.where(forced[:, i] >= 0, forced[:, i], tok)
        tokens.append(tok)
        if i == L - 1:
            break
        if use_cache:
            step_logits = model(tok[:, None], cache=cache).logits[:, -1].float()
        else:
            seq = torch.cat([seq, tok[:, None]], dim=1)
            step_logits = model(seq).logits[:, -1].float()
    return Decoded(torch.stack(tokens, 1), torch.stack(all_logits, 1))


@torch.no_grad()
def teacher_forced(lm: LoadedModel, questions: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
    """[B, L, V] logits at each answer position with the true answer as input (``$`` for teacherless)."""
    if lm.objective.masked:
        from .anyorder import teacher_forced_masked

        return teacher_forced_masked(lm, questions, answers)
    x = lm.objective.inputs(questions, answers, lm.tokenizer.dollar)
    return lm.model(x).logits[:, questions.shape[1] - 1 :].float()


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
        if self.temperature <= 0:
            raise UsageError("--temperature must be > 0")
        if self.beam < 1 or self.tries < 1 or self.top_k < 0:
            raise UsageError("--beam and --tries must be ≥ 1, --sample-top-k ≥ 0")

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


def _step_source(lm: LoadedModel, questions: torch.Tensor, forced: torch.Tensor | None):
    """(first log-probs [B, V], advance(tokens, row_index) -> next log-probs) for autoregressive or one-pass models."""
    if lm.objective.masked:
        from .errors import UsageError

        raise UsageError(f"{lm.objective.name} decodes by greedy fill-in only (no left-to-right sampling or beam search)")
    model, L = lm.model, lm.task.path_len
    B, Q = questions.shape
    if lm.objective.teacherless:
        x = torch.cat([questions, questions.new_full((B, L - 1), lm.tokenizer.dollar)], dim=1)
        if forced is not None:
            f = forced[:, : L - 1]
            x[:, Q:] = torch.where(f >= 0, f, x[:, Q:])
        all_lp = model(x).logits[:, Q - 1 :].float().log_softmax(-1)  # [B, L, V]
        state = {"i": 0, "rows": torch.arange(B, device=questions.device)}

        def advance(tokens, rows):
            state["i"] += 1
            state["rows"] = state["rows"][rows]
            return all_lp[state["rows"], state["i"]]

        return all_lp[:, 0], advance
    cache = model.new_cache()
    first = model(questions, cache=cache).logits[:, -1].float().log_softmax(-1)
    holder = {"cache": cache}

    def advance(tokens, rows):
        holder["cache"] = holder["cache"].select(rows)
        return model(tokens[:, None], cache=holder["cache"]).logits[:, -1].float().log_softmax(-1)

    return first, advance


def _apply_forced(lp: torch.Tensor, forced_col: torch.Tensor | None) -> torch.Tensor:
    if forced_col is None:
        return lp
    keep = forced_col >= 0
    if not keep.any():
        return lp
    masked = torch.full_like(lp, float("-inf"))
    masked.scatter_(1, forced_col.clamp_min(0)[:, None], 0.0)
    return torch.where(keep[:, None], masked, lp)


@torch.no_grad()
def sample(lm: LoadedModel, questions: torch.Tensor, forced: torch.Tensor | None = None, temperature: float = 1.0,
           top_k: int = 0, generator: torch.Generator | None = None) -> torch.Tensor:
    """[B, L] answers sampled token by token (forced tokens kept)."""
    B, L = questions.shape[0], lm.task.path_len
    lp, advance = _step_source(lm, questions, forced)
    rows = torch.arange(B, device=questions.device)
    out = []
    for i in range(L):
        logits = lp / temperature
        if top_k:
            kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = logits.softmax(-1)
        tok = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(1).to(questions.device)
        if forced is not None:
            tok = torch.where(forced[:, i] >= 0, forced[:, i], tok)
        out.append(tok)
        if i < L - 1:
            lp = advance(tok, rows)
    return torch.stack(out, 1)


@torch.no_grad()
def beam_search(lm: LoadedModel, questions: torch.Tensor, width: int, forced: torch.Tensor | None = None):
    """Beam search: ([B, W, L] answers best first, [B, W] total log-probabilities; -inf marks unused beams)."""
    B, L = questions.shape[0], lm.task.path_len
    dev = questions.device
    lp, advance = _step_source(lm, questions, forced)
    V = lp.shape[-1]
    nb = 1
    seqs = torch.zeros(B, 1, 0, dtype=torch.long, device=dev)
    scores = torch.zeros(B, 1, device=dev)
    for i in range(L):
        f = None if forced is None else forced[:, i].repeat_interleave(nb)
        lp = _apply_forced(lp, f).view(B, nb, V)
        cand = (scores[:, :, None] + lp).view(B, nb * V)
        k = min(width, nb * V)
        top, idx = cand.topk(k, dim=1)
        beam_idx, tok = idx // V, idx % V
        seqs = torch.cat([seqs.gather(1, beam_idx[:, :, None].expand(B, k, seqs.shape[2])), tok[:, :, None]], dim=2)
        scores = top
        rows = (torch.arange(B, device=dev)[:, None] * nb + beam_idx).reshape(-1)
        nb = k
        if i < L - 1:
            lp = advance(tok.reshape(-1), rows)
    return seqs, scores


def valid_paths(batch_edges: torch.Tensor, start: torch.Tensor, goal: torch.Tensor, paths: torch.Tensor,
                nodes: int) -> torch.Tensor:
    """The verifier, a perfect oracle: [B, K] whether each candidate path (start→goal order) is a valid
    start→goal path in its graph. ``paths`` is [B, K, L]."""
    code = batch_edges[..., 0] * (nodes + 8) + batch_edges[..., 1]  # [B, E]
    pair = paths[..., :-1] * (nodes + 8) + paths[..., 1:]  # [B, K, L-1]
    is_edge = (pair[..., None] == code[:, None, None, :]).any(-1).all(-1)
    return is_edge & (paths[..., 0] == start[:, None]) & (paths[..., -1] == goal[:, None])


@torch.no_grad()
def decode_with(lm: LoadedModel, questions: torch.Tensor, strategy: Strategy, forced: torch.Tensor | None = None,
                batch=None, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode with any strategy: ([B, L] answers in the model's order, [B] tries used).

    ``verify`` enumerates candidates best first (beam search of width ``tries``) and keeps the first
    that the verifier accepts; it needs ``batch`` (the graphs) for the oracle."""
    B = questions.shape[0]
    ones = torch.ones(B, dtype=torch.long)
    if strategy.kind == "greedy":
        return greedy(lm, questions, forced).tokens, ones
    if strategy.kind == "sample":
        if generator is None:
            generator = torch.Generator().manual_seed(strategy.seed)
        return sample(lm, questions, forced, strategy.temperature, strategy.top_k, generator), ones
    if strategy.kind == "beam":
        seqs, _ = beam_search(lm, questions, strategy.beam, forced)
        return seqs[:, 0], ones
    seqs, scores = beam_search(lm, questions, strategy.tries, forced)
    if batch is None:
        raise ValueError("verify needs the graphs")
    ok = valid_paths(batch.edges, batch.start, batch.goal, lm.objective.to_path(seqs), lm.task.nodes) & torch.isfinite(scores)
    K = seqs.shape[1]
    first = torch.where(ok.any(1), ok.float().argmax(1), torch.full((B,), K - 1, device=ok.device))
    tries = torch.where(ok.any(1), first + 1, torch.full((B,), K, device=ok.device))
    return seqs[torch.arange(B, device=seqs.device), first], tries.cpu()
