"""The one number formatter of tables and reports: a figure with ``digits`` decimals, "—" for none."""

from __future__ import annotations


def fmt(x, digits: int = 3) -> str:
    """``0.4681 -> '0.468'``, ``None -> '—'``; a list -> its items (with ``digits`` decimals) joined by spaces."""
    if isinstance(x, (list, tuple)):
        return " ".join(fmt(v, digits) for v in x)
    return "—" if x is None else f"{x:.{digits}f}"
