"""JSON from files a user hands us (model headers, session files, metrics logs), parsed with limits.

``json.loads`` recurses once per nesting level: 100,000 ``[`` raise ``RecursionError`` (not a
``ValueError``), and a text of gigabytes is read whole. ``loads`` checks the size and, in one linear
pass without recursion, the nesting depth first; every failure is a ``ValueError`` with a short message.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 64  # our files nest 4 levels at most
MAX_CHARS = 1_000_000

# an escape inside a string is consumed whole (so \" and \\ never toggle the string state); linear, no backtracking
_TOKEN = re.compile(r'\\.|["\[\]{}]', re.S)


class JSONLimitError(ValueError):
    """Text too long or nested too deep to be one of our JSON files."""


def check_depth(text: str, max_depth: int = MAX_DEPTH) -> None:
    depth, in_string = 0, False
    for m in _TOKEN.finditer(text):
        t = m.group()
        if t[0] == "\\":
            continue
        if t == '"':
            in_string = not in_string
        elif in_string:
            continue
        elif t in "[{":
            depth += 1
            if depth > max_depth:
                raise JSONLimitError(f"JSON nested more than {max_depth} levels deep")
        else:
            depth -= 1


def loads(text: str | bytes, max_depth: int = MAX_DEPTH, max_chars: int = MAX_CHARS) -> Any:
    """``json.loads`` with a size and a nesting limit. Raises ValueError (JSONDecodeError, JSONLimitError)."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise JSONLimitError("not UTF-8 text") from None
    if len(text) > max_chars:
        raise JSONLimitError(f"{len(text):,} characters of JSON, more than the limit of {max_chars:,}")
    check_depth(text, max_depth)
    try:
        return json.loads(text)
    except RecursionError:  # cannot happen after check_depth; kept as a last guard
        raise JSONLimitError("JSON nested too deep") from None


def is_int(x: Any) -> bool:
    """A JSON whole number (``true``/``false`` are not numbers)."""
    return isinstance(x, int) and not isinstance(x, bool)


def is_real(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


__all__ = ["loads", "check_depth", "JSONLimitError", "MAX_DEPTH", "MAX_CHARS", "is_int", "is_real"]
