"""Decoding for the any-order objective ``mlm-u`` (Kitouni et al. 2024, "The Factorization Curse").

The model sees ``question + answer`` with bidirectional attention, masked answer tokens written as
``$``, and predicts every answer position in place (no shift). Decoding starts with the whole answer
masked (forced tokens written in) and makes one pass per answer token: among the positions still
masked it fills **the most confident one** (highest top-1 probability) with its argmax. So the model
chooses its own order — typically the easy end first (the goal, then its parent, …), which is how
it avoids guessing at the decision node.

``Decoded.logits[:, i]`` is the distribution position ``i`` was filled from. For a forced position it
is the model's distribution there with that slot masked and every other slot as finally decoded.
"""

from __future__ import annotations

import torch

from .checkpoint import LoadedModel


@torch.no_grad()
def greedy_masked(lm: LoadedModel, questions: torch.Tensor, forced: torch.Tensor | None = None):
    from .decoding import Decoded

    model, L, mask = lm.model, lm.task.path_len, lm.tokenizer.dollar
    B, Q = questions.shape
    dev = questions.device
    x = torch.cat([questions, questions.new_full((B, L), mask)], dim=1)
    known = torch.zeros(B, L, dtype=torch.bool, device=dev)
    if forced is not None:
        known = forced >= 0
        x[:, Q:] = torch.where(known, forced, x[:, Q:])
    rows = torch.arange(B, device=dev)
    V = model.config.vocab_size
    out_logits = torch.zeros(B, L, V, device=dev)
    for _ in range(L):
        active = ~known.all(1)
        if not active.any():
            break
        lg = model(x).logits[:, Q:].float()  # [B, L, V]
        conf = lg.softmax(-1).amax(-1).masked_fill(known, -1.0)
        pos = conf.argmax(1)  # [B]
        chosen = lg[rows, pos]  # [B, V]
        r, p = rows[active], pos[active]
        out_logits[r, p] = chosen[active]
        x[r, Q + p] = chosen[active].argmax(-1)
        known[r, p] = True
    if forced is not None and (forced >= 0).any():
        f = forced >= 0
        xm = x.clone()
        xm[:, Q:] = torch.where(f, torch.full_like(forced, mask), x[:, Q:])
        lg = model(xm).logits[:, Q:].float()
        out_logits = torch.where(f[:, :, None], lg, out_logits)
    return Decoded(x[:, Q:].clone(), out_logits)


@torch.no_grad()
def teacher_forced_masked(lm: LoadedModel, questions: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
    """[B, L, V]: position i predicted with the true ``answer[:i]`` given and ``answer[i:]`` masked — the
    any-order analogue of teacher forcing (L graphs' worth of passes, batched)."""
    L, mask = answers.shape[1], lm.tokenizer.dollar
    B, Q = questions.shape
    keep = torch.arange(L, device=answers.device)[None, :] < torch.arange(L, device=answers.device)[:, None]  # [i, j]: j < i
    ans = torch.where(keep[None], answers[:, None, :], torch.full_like(answers[:, None, :], mask))  # [B, L, L]
    x = torch.cat([questions[:, None, :].expand(B, L, Q), ans], dim=2).reshape(B * L, Q + L)
    lg = lm.model(x).logits[:, Q:].float().view(B, L, L, -1)  # [B, i, pos, V]
    idx = torch.arange(L, device=answers.device)
    return lg[:, idx, idx]
