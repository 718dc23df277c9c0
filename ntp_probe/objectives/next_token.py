"""``next-token``: teacher forcing (the paper's baseline). The model reads the true prefix and predicts the
next answer token, start→goal; at inference it feeds back its own tokens. It learns the Clever Hans cheat."""

from __future__ import annotations

from . import register
from .base import Objective


@register
class NextToken(Objective):
    name = "next-token"
    coin_flip = "teacher forcing never taught it to plan the arm. "
