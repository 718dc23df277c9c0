"""Session files: their format, schema and limits, and how they name their model. Building the session
from a checked file is ``session.load_session``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from ..checkpoint import LoadedModel
from ..checkpoint import resolve as resolve_model
from ..errors import NtpProbeError
from ..limits import MAX_BEAM, MAX_NODES, MAX_SESSION_BYTES, MAX_TEMPERATURE, MAX_TRIES, MIN_TEMPERATURE, read_small_text
from ..safejson import loads as safe_loads

SESSION_FORMAT = "ntp-probe-session/1"


def model_ref(lm: LoadedModel) -> str:
    """How a session file names its model: the shipped name if it resolves to this file, else the path."""
    path = lm.path.resolve() if lm.path else None
    if lm.name:
        try:
            if resolve_model(lm.name)[0].resolve() == path:
                return lm.name
        except NtpProbeError:
            pass
    return str(path or "")


def _pick(ref: str, candidates: Sequence[LoadedModel]) -> LoadedModel | None:
    """The loaded model a session file's model reference names, if any."""
    for lm in candidates:
        if model_ref(lm) == ref:
            return lm
        try:
            if lm.path is not None and Path(ref).expanduser().resolve() == lm.path.resolve():
                return lm
        except (OSError, ValueError, RuntimeError):  # a name too long, an unknown ~user
            continue
    return None


# limits of a session file: what the app or ``probe --save`` can write, with room to spare
# the limits of the same options on the command line (ntp_probe/limits.py): a file saved by `probe --save` loads
SESSION_TEMPERATURE = (MIN_TEMPERATURE, MAX_TEMPERATURE)
SESSION_SEED = (0, 2**62)  # what Strategy accepts
STRATEGY_FIELDS = ("kind", "temperature", "top_k", "beam", "tries", "seed")


class SessionFileError(NtpProbeError):
    """A session file that is malformed: the message names the field."""


def _session_field(data: dict, path: str, default=None):
    cur = data
    for key in path.split("."):
        if not isinstance(cur, dict) or key not in cur:
            return default
        cur = cur[key]
    return cur


def check_session_data(data) -> dict:
    """Validate a parsed session file against its schema (types and ranges; what needs the model is checked on
    loading). Returns the fields normalised: ``{"model", "graph", "forced": {pos: node}, "cursor", "strategy": {}}``.
    Raises ``SessionFileError`` naming the first bad field."""
    from ..decoding import STRATEGIES

    def bad(field: str, value, why: str) -> SessionFileError:
        shown = repr(value)
        shown = shown if len(shown) <= 40 else shown[:40] + "…"
        return SessionFileError(f"bad session file: {field} is {shown}: {why}")

    def whole(field: str, value, lo: int, hi: int, span: str | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise bad(field, value, f"not a whole number in {span or f'{lo:,}..{hi:,}'}")
        return value

    if not isinstance(data, dict):
        raise SessionFileError(f"not an ntp-probe session file (a JSON {type(data).__name__}, not an object)")
    if data.get("format") != SESSION_FORMAT:
        fmt = data.get("format")
        raise SessionFileError(f"not an ntp-probe session file (format {fmt!r:.40})")
    for key in ("model", "graph"):
        if key not in data:
            raise SessionFileError(f"session file lacks {key!r}")
    model, graph = data["model"], data["graph"]
    if not isinstance(model, str) or not model.strip() or len(model) > 4096 or "\x00" in model:
        raise bad("model", model, "not a model name or path")
    if not isinstance(graph, str):
        raise bad("graph", graph, "not a graph in the line format (a string)")
    forced_raw = data.get("forced", {})
    if not isinstance(forced_raw, dict):
        raise bad("forced", forced_raw, "not an object of answer position → node id")
    forced = {}
    for k, v in forced_raw.items():
        if not (k.isascii() and k.isdigit() and len(k) <= 6 and str(int(k)) == k):
            raise bad("forced", k, "a key that is not an answer position (0, 1, …)")
        forced[int(k)] = whole(f"forced[{k!r}]", v, 0, 2**63 - 1, "0..2⁶³−1")
    cursor = data.get("cursor")
    if cursor is not None:
        whole("cursor", cursor, 0, 1_000_000)
    strat = data.get("strategy", {})
    if not isinstance(strat, dict):
        raise bad("strategy", strat, "not an object")
    unknown = sorted(set(strat) - set(STRATEGY_FIELDS))
    if unknown:
        raise SessionFileError(f"bad session file: strategy has an unknown field {unknown[0]!r:.40} "
                               f"(known: {', '.join(STRATEGY_FIELDS)})")
    if "kind" in strat and strat["kind"] not in STRATEGIES:
        raise bad("strategy.kind", strat["kind"], f"not one of {', '.join(STRATEGIES)}")
    if "temperature" in strat:
        t, (lo, hi) = strat["temperature"], SESSION_TEMPERATURE
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not lo <= t <= hi:  # NaN fails both comparisons
            raise bad("strategy.temperature", t, f"not a number in {lo:g}..{hi:g}")
    if "top_k" in strat:
        whole("strategy.top_k", strat["top_k"], 0, MAX_NODES)
    for key, most in (("beam", MAX_BEAM), ("tries", MAX_TRIES)):
        if key in strat:
            whole(f"strategy.{key}", strat[key], 1, most)
    if "seed" in strat:
        whole("strategy.seed", strat["seed"], *SESSION_SEED, "0..2⁶²")
    return {"model": model, "graph": graph, "forced": forced, "cursor": cursor, "strategy": dict(strat)}


def read_session_file(path: str | Path) -> dict:
    """The checked fields of a session file (``check_session_data``): a regular file of at most
    MAX_SESSION_BYTES (/dev/zero or a FIFO is refused, not read forever), depth-guarded JSON, then the schema."""
    p = Path(path)
    if not p.exists():
        raise SessionFileError(f"{p}: no such session file")
    raw = read_small_text(p, "sessions", MAX_SESSION_BYTES)
    try:
        data = safe_loads(raw, max_depth=8, max_chars=MAX_SESSION_BYTES)
    except ValueError as e:
        first = str(e).splitlines()[0][:80] if str(e) else e.__class__.__name__
        kind = "JSONDecodeError" if isinstance(e, json.JSONDecodeError) else first
        raise SessionFileError(f"{p}: not a session file ({kind})") from None
    try:
        return check_session_data(data)
    except SessionFileError as e:
        raise SessionFileError(f"{p}: {e}") from None
