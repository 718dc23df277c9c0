"""``reverse``: teacher forcing on the answer reversed, goal→start. Every step is a lookup of the previous
node's unique parent, so there is no arm to choose (and no Clever Hans probe)."""

from __future__ import annotations

import torch

from . import register
from .base import Objective


@register
class Reverse(Objective):
    name = "reverse"
    answer_order = "reverse"
    answer_direction = "goal→start"
    decision_step = False
    no_decision = ("a reverse model answers goal→start, where every step is a lookup of the parent and there is no "
                   "arm to choose")

    def answer(self, path: torch.Tensor) -> torch.Tensor:
        return flip_rows(path)

    def to_path(self, answer: torch.Tensor) -> torch.Tensor:
        return flip_rows(answer)  # reversing is its own inverse

    def to_path_list(self, answer: list[int]) -> list[int]:
        return list(answer)[::-1]

    def path_index(self, position: int, length: int) -> int:
        return length - 1 - position

    def legal_moves(self, graph, position, tokens):
        """The goal first, then a parent of the previous node."""
        return [graph.goal] if position == 0 else graph.parents(tokens[position - 1])


def flip_rows(x: torch.Tensor) -> torch.Tensor:
    """Reverse the last dim; in a padded batch (-1 after each row's real tokens) only each row's real tokens, the
    padding staying at the end. ``x`` may be [B, L] or [B, K, L] (beams)."""
    L = x.shape[-1]  # one gather for both (no padding: the plain flip), without a host sync to tell them apart
    n = (x >= 0).sum(-1, keepdim=True)  # real tokens per row
    i = torch.arange(L, device=x.device)
    idx = torch.where(i < n, n - 1 - i, i)
    return x.gather(-1, idx.expand_as(x))
