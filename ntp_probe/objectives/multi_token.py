"""``multi-token``: ``future`` output heads predict tokens t+1 … t+k (Gloeckle et al. 2024), each head one extra
transformer block sharing the unembedding; the loss is the mean over heads. Decoding uses head 0, like
next-token."""

from __future__ import annotations

from ..errors import UsageError
from . import register
from .base import Objective


@register
class MultiToken(Objective):
    name = "multi-token"
    options = {"future": 4}

    def check(self) -> None:
        if self.future < 2:
            raise UsageError("multi-token needs --future ≥ 2 heads")

    @property
    def heads(self) -> int:
        return self.future

    @classmethod
    def from_meta(cls, meta):
        return cls(future=meta.get("n_future", 4))
