"""``hybrid``: the teacherless loss plus the next-token loss on the same graphs (Nagarajan et al. 2025),
``mix · L_teacherless + (1 − mix) · L_next-token``.

A training batch holds each graph twice: its teacherless inputs (``$`` after the question) on top of its
teacher-forced inputs (the true answer), the same targets for both; one forward pass over the stacked
batch is the two passes. The model decodes like a teacherless one (one pass with ``$`` inputs) — that is
what is measured — and is scored teacher-forced like one too. ``mix`` (``train --mix``, in [0, 1]) is
kept in the checkpoint header: ``{"name": "hybrid", "n_future": 1, "mix": 0.5}``.
"""

from __future__ import annotations

import torch

from ..errors import UsageError
from . import register
from .base import Objective, cross_entropy
from .teacherless import Teacherless


@register
class Hybrid(Teacherless):
    name = "hybrid"
    mixed_shapes = False  # decodes a fixed answer length: one shape per model
    options = {"mix": 0.5}  # weight of the teacherless loss; the next-token loss gets 1 - mix

    def check(self) -> None:
        if not 0.0 <= self.mix <= 1.0:  # also false for NaN
            raise UsageError(f"--mix {self.mix}: the teacherless loss's weight must lie in [0, 1]")
        self.mix = float(self.mix)

    def to_meta(self) -> dict:
        return {**super().to_meta(), "mix": self.mix}

    @classmethod
    def from_meta(cls, meta):
        return cls(mix=meta.get("mix", 0.5))

    def train_batch(self, question, answer, dollar, generator=None):
        """Rows [:B] the teacherless inputs (weight ``mix`` in the loss), rows [B:] the teacher-forced ones
        (``1 - mix``); the targets repeated."""
        y = self.targets(question, answer)
        forced = Objective.inputs(self, question, answer, dollar)
        return torch.cat([self.inputs(question, answer, dollar), forced]), torch.cat([y, y])

    def loss(self, logits, targets):
        B = logits.shape[0] // 2
        return self.mix * cross_entropy(logits[:B], targets[:B]) + (1 - self.mix) * cross_entropy(logits[B:], targets[B:])
