"""The one number formatter of tables and reports: a figure with ``digits`` decimals, "—" for none; a duration."""

from __future__ import annotations


def fmt(x, digits: int = 3) -> str:
    """``0.4681 -> '0.468'``, ``None -> '—'``; a list -> its items (with ``digits`` decimals) joined by spaces."""
    if isinstance(x, (list, tuple)):
        return " ".join(fmt(v, digits) for v in x)
    return "—" if x is None else f"{x:.{digits}f}"


def duration(s: float | None) -> str:
    """Seconds as ``'4m05s'`` or ``'2h07m'`` (an ETA, a wall time), "—" for none."""
    if s is None:
        return "—"
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"
