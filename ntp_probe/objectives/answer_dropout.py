"""``answer-dropout``: teacher forcing without the cheat's input (Frydenlund, ACL 2025, arXiv 2503.10542).

The model is trained left to right with teacher forcing, exactly as ``next-token``, except that the *inputs*
of the answer are adulterated at random: the Clever Hans cheat ("the next node is a child of the node I was
just given") needs the true previous node, so a target whose input was taken away can only be predicted by
finding the goal's arm in the edge list. The loss covers every answer token; decoding is ordinary left-to-right
(no input is dropped at inference).

Modes (``train --drop-mode``, with ``--drop-rate p``):

- ``token``: each answer input is replaced by ``$`` with probability p, independently;
- ``span``: with probability p a row loses one contiguous span of its answer inputs (every non-empty span
  equally likely) to ``$`` — "span token dropout";
- ``replace``: each answer input is replaced by a uniformly random node id with probability p — "dropout with
  replacement": the input is there but cannot be trusted.

The answer's first input is its start node, which the question already holds; it is dropped like any other.
The header keeps ``{"name": "answer-dropout", "n_future": 1, "drop_rate": p, "drop_mode": mode}``.
"""

from __future__ import annotations

import math

import torch

from ..errors import UsageError
from . import register
from .base import Objective

MODES = ("token", "span", "replace")


@register
class AnswerDropout(Objective):
    name = "answer-dropout"
    options = {"drop_rate": 0.5, "drop_mode": "token"}
    coin_flip = "the dropped inputs have not (yet) taught it to plan the arm. "

    def check(self) -> None:
        if not isinstance(self.drop_rate, (int, float)) or isinstance(self.drop_rate, bool) \
                or not math.isfinite(self.drop_rate) or not 0.0 <= self.drop_rate <= 1.0:
            raise UsageError(f"--drop-rate {self.drop_rate}: a probability in [0, 1]")
        if self.drop_mode not in MODES:
            raise UsageError(f"--drop-mode {self.drop_mode}: choose {', '.join(MODES)}")
        self.drop_rate = float(self.drop_rate)

    def to_meta(self) -> dict:
        return {**super().to_meta(), "drop_rate": self.drop_rate, "drop_mode": self.drop_mode}

    @classmethod
    def from_meta(cls, meta):
        return cls(drop_rate=meta.get("drop_rate", 0.5), drop_mode=meta.get("drop_mode", "token"))

    def drop_mask(self, B: int, n: int, generator: torch.Generator | None, device) -> torch.Tensor:
        """[B, n] bool: which of the n answer inputs of each row are dropped."""
        p = self.drop_rate
        if self.drop_mode in ("token", "replace"):
            return torch.rand(B, n, generator=generator, device=device) < p
        # span: pick one of the n(n+1)/2 non-empty spans [a, b) uniformly, for rows drawn with probability p
        spans = torch.tensor([(a, b) for a in range(n) for b in range(a + 1, n + 1)], device=device)
        pick = spans[torch.randint(len(spans), (B,), generator=generator, device=device)]
        hit = torch.rand(B, generator=generator, device=device) < p
        pos = torch.arange(n, device=device)
        return hit[:, None] & (pos >= pick[:, :1]) & (pos < pick[:, 1:])

    def train_batch(self, question, answer, dollar, generator=None):
        """Teacher-forced inputs with the answer's inputs dropped as the mode says; targets untouched."""
        x = self.inputs(question, answer, dollar).clone()
        Q, n = question.shape[1], answer.shape[1] - 1
        if n > 0 and self.drop_rate > 0:
            mask = self.drop_mask(x.shape[0], n, generator, x.device)
            mask &= x[:, Q:] >= 0  # padding stays padding
            if self.drop_mode == "replace":
                nodes = dollar - 3  # the tokenizer's numbering: node ids 0..N-1, then | = / $
                fill = torch.randint(nodes, (x.shape[0], n), generator=generator, device=x.device)
            else:
                fill = torch.full_like(x[:, Q:], dollar)
            x[:, Q:] = torch.where(mask, fill, x[:, Q:])
        return x, self.targets(question, answer)
