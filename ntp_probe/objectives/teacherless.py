"""``teacherless``: the answer's inputs are ``$`` dummies, so every answer token is predicted from the question
alone; decoding is one forward pass (forced tokens are written into the inputs in place of their ``$``)."""

from __future__ import annotations

import torch

from . import register
from .base import Objective, OnePass


@register
class Teacherless(Objective):
    name = "teacherless"
    mixed_shapes = False  # decodes a fixed answer length: one shape per model

    def inputs(self, question: torch.Tensor, answer: torch.Tensor, dollar: int) -> torch.Tensor:
        """``question`` then a ``$`` for each of ``answer[:-1]``."""
        x = torch.cat([question, answer[:, :-1]], dim=1)
        x[:, question.shape[1] :] = dollar
        return x

    def decode_input(self, question: torch.Tensor, length: int, dollar: int, forced: torch.Tensor | None) -> torch.Tensor:
        """The one decoding pass's input: ``$`` inputs, forced tokens written in where given."""
        B, Q = question.shape
        x = torch.cat([question, question.new_full((B, length - 1), dollar)], dim=1)
        if forced is not None:
            f = forced[:, : length - 1]
            x[:, Q:] = torch.where(f >= 0, f, x[:, Q:])
        return x

    def stepper(self, lm, questions, forced, use_cache=True):
        x = self.decode_input(questions, lm.task.path_len, lm.tokenizer.dollar, forced)
        return OnePass(lm.model(x).logits[:, questions.shape[1] - 1 :].float())

    def probe_input(self, question, tokens, forced, position, dollar):
        x = self.decode_input(question, len(tokens), dollar, _forced_row(forced, len(tokens), question.device))
        return x, question.shape[1] - 1 + position


def _forced_row(forced: dict[int, int], length: int, device) -> torch.Tensor:
    f = torch.full((1, length), -1, dtype=torch.long, device=device)
    for p, t in forced.items():
        f[0, p] = t
    return f
