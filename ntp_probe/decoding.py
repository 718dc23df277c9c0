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
    x = lm.objective.inputs(questions, answers, lm.tokenizer.dollar)
    return lm.model(x).logits[:, questions.shape[1] - 1 :].float()
