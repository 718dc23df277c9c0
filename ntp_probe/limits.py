"""Every size a user can ask for has a documented limit, checked before anything is allocated.

Nothing here is a recommendation: the limits only keep a typo (``--count 100000000000``, ``--seed 1e20``,
``--layers 1000000``) from ending in an allocation error, an overflow or a hang. Whatever can be streamed
(``generate``) has no count limit. Data files are read only when they are regular files, with a size and
a line-length cap: a FIFO would block forever and ``/dev/zero`` never ends.
"""

from __future__ import annotations

import math
import os
import stat
from pathlib import Path

from .errors import UsageError

MAX_SEED = 2**32 - 1  # seeds are mixed into 64-bit torch seeds (seed × 1,000,003 + step): keep them in range
MAX_THREADS = 256
MAX_NODES = 1_000_000  # node ids 0..N-1 (the vocabulary)
MAX_EDGES = 100_000  # degree × (path length − 1): the length of one question
MAX_COUNT = 1_000_000  # graphs scored in one eval/clever-hans/inference-fixes/reproduce (also --eval-count)
MAX_COUNT_CELLS = 50_000_000  # count × N: the generator draws N random numbers per graph
MAX_COUNT_EDGES = 25_000_000  # count × d(l−1): the edges of one batch (1,000,000 graphs of G(5,6): 1.4 GB at peak)
MAX_BATCH = 65_536
MAX_STEPS = 100_000_000
MAX_LAYERS = 256
MAX_D_MODEL = 16_384
MAX_HEADS = 1_024
MAX_EXPAND = 64
MAX_D_STATE = 4_096
MAX_FUTURE = 64
MAX_PARAMS = 2_000_000_000  # parameters of a model train builds (checked on the meta device, no memory)
MAX_BEAM = 1_024
MAX_TRIES = 100_000  # and, the verifier being a beam search of width --tries, as many rows as fit DECODE_BYTES
DECODE_BYTES = 768 * 2**20  # one decoding pass (graphs × beam rows × context): graphs are scored in passes this big
MIN_TEMPERATURE, MAX_TEMPERATURE = 1e-6, 1e6  # below, logits / T overflows float32 (1e-45: NaN)
MAX_DATA_BYTES = 256 * 2**20  # a data file (--data, --graphs, --train-file)
MAX_LINE_CHARS = 2**20  # one line of a data file
MAX_GRAPHS = 2_000_000  # graphs in one data file
MAX_SESSION_BYTES = 2**20  # a saved probe session (probe --load, the app's ctrl+o)
MAX_FOLLOW_S = 86_400.0  # watch --follow: refresh at least once a day


def check_int(name: str, value: int, lo: int, hi: int) -> int:
    """``value`` as an int in [lo, hi], else a one-line UsageError naming the option."""
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        shown = value if isinstance(value, int) and len(str(value)) <= 30 else f"{str(value)[:20]}…"
        raise UsageError(f"{name} {shown}: must be an integer from {lo:,} to {hi:,}")
    return value


def check_float(name: str, value: float, lo: float, hi: float, lo_open: bool = False, hi_open: bool = False) -> float:
    """``value`` finite and in the range (bounds open or closed), else a one-line UsageError."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > lo if lo_open else value >= lo) and (value < hi if hi_open else value <= hi)
    if not ok:
        rng = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        raise UsageError(f"{name} {value!r}: must be a finite number in {rng}")
    return float(value)


def check_seed(seed: int, name: str = "--seed") -> int:
    return check_int(name, seed, 0, MAX_SEED)


def check_threads(threads: int | None) -> int | None:
    return None if threads is None else check_int("--threads", threads, 1, MAX_THREADS)


def check_count(count: int, nodes: int, name: str = "--count", edges: int = 0) -> int:
    """Graphs drawn in one batch: ``count`` × N random numbers and ``count`` × ``edges`` (the largest shape's) edges."""
    check_int(name, count, 1, MAX_COUNT)
    if count * nodes > MAX_COUNT_CELLS:
        raise UsageError(f"{name} {count:,}: too many graphs of N={nodes:,} at once (count × N at most "
                         f"{MAX_COUNT_CELLS:,}); score a --data file or use fewer")
    if count * edges > MAX_COUNT_EDGES:
        raise UsageError(f"{name} {count:,}: too many graphs of {edges:,} edges at once (count × edges at most "
                         f"{MAX_COUNT_EDGES:,}); use fewer")
    return count


def check_task_size(degree: int, path_len: int, nodes: int) -> None:
    check_int("--nodes", nodes, 1, MAX_NODES)
    check_int("--degree", degree, 1, MAX_EDGES)
    check_int("--path-len", path_len, 2, MAX_EDGES + 1)
    if degree * (path_len - 1) > MAX_EDGES:
        raise UsageError(f"G({degree},{path_len}) has {degree * (path_len - 1):,} edges; at most {MAX_EDGES:,}")


def check_strategy(temperature: float, top_k: int, beam: int, tries: int) -> None:
    check_float("--temperature", temperature, MIN_TEMPERATURE, MAX_TEMPERATURE)
    check_int("--sample-top-k", top_k, 0, MAX_NODES)
    check_int("--beam", beam, 1, MAX_BEAM)
    check_int("--tries", tries, 1, MAX_TRIES)


def check_file_name(name: str, option: str, inside: str) -> str:
    """``name`` as one path component (a file or folder name inside ``inside``): not empty, not ``.`` or ``..``, no
    ``/`` and no NUL, so that nothing is written outside the folder asked for; else a one-line UsageError."""
    bad = (not name or name in (".", "..") or "/" in name or os.sep in name or (os.altsep or "/") in name
           or "\0" in name or len(name.encode(errors="surrogatepass")) > 255)
    if bad:
        shown = repr(name) if len(name) <= 60 else repr(name[:40]) + f"… ({len(name):,} characters)"
        raise UsageError(f"{option} {shown}: must be one file name inside {inside} (no '/', not '..', not empty)")
    return name


def open_regular(path: str | Path, what: str, max_bytes: int):
    """Open ``path`` for reading text if it is a regular file of at most ``max_bytes``; else a one-line error.

    Opened non-blocking first so that a FIFO is refused instead of waiting forever for a writer."""
    from .errors import GraphError

    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise GraphError(f"{p}: no such file") from None
    except OSError as e:
        raise GraphError(f"{p}: cannot read {what} ({e.strerror or e.__class__.__name__})") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise GraphError(f"{p}: cannot read {what} (Is a directory)")
        if not stat.S_ISREG(st.st_mode):
            kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "not a regular file"
            raise GraphError(f"{p}: is {kind}; {what} are read from a regular file only")
        if st.st_size > max_bytes:
            raise GraphError(f"{p}: {st.st_size:,} bytes; a file of {what} is at most {max_bytes:,}")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return open(fd, encoding="utf-8", newline="\n", closefd=True)
    except BaseException:
        os.close(fd)
        raise


def read_small_text(path: str | Path, what: str, max_bytes: int) -> str:
    """The whole text of a small regular file (a session), refused if larger than ``max_bytes``."""
    from .errors import GraphError

    with open_regular(path, what, max_bytes) as f:
        try:
            text = f.read(max_bytes + 1)
        except UnicodeDecodeError:
            raise GraphError(f"{path}: not a text file (not UTF-8)") from None
    if len(text.encode()) > max_bytes:
        raise GraphError(f"{path}: more than {max_bytes:,} bytes; a file of {what} is at most {max_bytes:,}")
    return text
