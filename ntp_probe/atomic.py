"""Atomic writes: a reader sees the old file or the new one, never half of either.

The rule for what a path names when we write it:

* absent, or a regular file: write a temp file in the same directory, fsync, rename it over the path;
* a symbolic link: follow it, and replace the file it points to (the link stays a link);
* a device or a FIFO (``/dev/null``, a pipe), or any path under ``/dev`` or ``/proc`` (``/dev/stdout``):
  write straight through it: there is no file to replace, and renaming over it would swap a system device
  for a regular file;
* a directory: refused with ``IsADirectoryError`` (the CLI prints one line).

Temp files are named ``.NAME.XXXX.tmp``; a process killed mid-write leaves one behind, and
``remove_stale_temps`` (called by ``train`` under its run lock) sweeps them.

A write that fails raises ``CannotWrite`` (an ``OSError`` and a ``WriteError``): it names the path the caller
gave — never the temp file — and the system's reason, as one line: ``--png nodir/x.png: cannot write (No such file
or directory)`` (``what`` names the option the path came from). A broken pipe stays a ``BrokenPipeError``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from .errors import WriteError


class CannotWrite(WriteError, OSError):
    """An output that could not be written: ``[WHAT ]PATH: cannot write (REASON)``, PATH as the caller gave it."""

    def __init__(self, path: str | Path, err: OSError, what: str | None = None) -> None:
        OSError.__init__(self, err.errno, err.strerror or str(err) or err.__class__.__name__, str(path))
        self.what = what

    def __str__(self) -> str:
        return f"{self.what + ' ' if self.what else ''}{self.filename}: cannot write ({self.strerror})"


def atomic_write(path: str | Path, write: Callable[[str], None], what: str | None = None) -> None:
    """Call ``write(file_name)`` so that ``path`` ends up holding exactly what it wrote.

    A regular (or new) file is written to a temp file and renamed over ``path``; the old file survives
    any failure, even ``KeyboardInterrupt``. A device or FIFO is written through directly. An ``OSError`` about
    the output (or about no file: a full device, an illegal seek) becomes ``CannotWrite`` naming ``path``
    (``what``: the option it came from, e.g. ``--png``); one about another file ``write`` opened passes unchanged."""
    path = Path(path)
    mine: set[str] = {str(path)}
    try:
        _write(path, write, mine)
    except CannotWrite:
        raise
    except BrokenPipeError:
        raise
    except OSError as e:
        if e.filename is not None and str(e.filename) not in mine and os.path.abspath(str(e.filename)) not in mine:
            raise  # another file (a source being copied): its own error
        raise _cannot_write(path, e, what) from None


_KINDS: dict[type, type] = {}


def _cannot_write(path: Path, e: OSError, what: str | None) -> CannotWrite:
    """``CannotWrite``, still the kind of ``OSError`` it was (``IsADirectoryError``, ``FileNotFoundError`` …)."""
    kind = type(e)
    if kind is OSError or not issubclass(kind, OSError):
        return CannotWrite(path, e, what)
    if kind not in _KINDS:
        _KINDS[kind] = type(f"CannotWrite{kind.__name__}", (CannotWrite, kind), {})
    return _KINDS[kind](path, e, what)


def _write(path: Path, write: Callable[[str], None], mine: set[str]) -> None:
    try:
        st = os.stat(path)  # follows links: /dev/stdout is whatever fd 1 is
    except FileNotFoundError:
        st = None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, "is a directory, not a file", str(path))
    if (st is not None and not stat.S_ISREG(st.st_mode)) or _special(path):
        write(str(path))  # /dev/null, /dev/stdout, a FIFO: no file to replace
        return
    real = Path(os.path.realpath(path)) if path.is_symlink() else path  # replace the link's target, keep the link
    mine.update({str(real), os.path.abspath(real), os.path.abspath(path)})
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{real.name}.", suffix=".tmp", dir=real.parent)
    except OSError as e:  # mkstemp names its temp file: the directory is what failed
        raise OSError(e.errno, e.strerror) from None
    mine.update({tmp, os.path.abspath(tmp)})
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, st.st_mode & 0o777 if st is not None else 0o644)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, real)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _special(path: Path) -> bool:
    """/dev/stdout, /dev/fd/N, /proc/self/fd/N: names of open files, written through even when a regular file."""
    return str(path.absolute()).startswith(("/dev/", "/proc/"))


def atomic_write_text(path: str | Path, text: str, what: str | None = None) -> None:
    def write(name: str) -> None:
        with open(name, "w") as f:
            f.write(text)

    atomic_write(path, write, what)


def atomic_write_chunks(path: str | Path, chunks: Iterable[str], what: str | None = None) -> None:
    """Write text produced piece by piece (bounded memory for any size), atomically as above."""

    def write(name: str) -> None:
        with open(name, "w") as f:
            for chunk in chunks:
                f.write(chunk)

    atomic_write(path, write, what)


def remove_stale_temps(directory: str | Path, names: Iterable[str]) -> list[Path]:
    """Delete the temp files (``.NAME.*.tmp``) that killed writers of ``names`` left in ``directory``.

    Only call this while holding the lock that keeps other writers of the directory out."""
    removed = []
    for name in names:
        for p in Path(directory).glob(f".{name}.*.tmp"):
            with contextlib.suppress(OSError):
                p.unlink()
                removed.append(p)
    return removed


__all__ = ["CannotWrite", "atomic_write", "atomic_write_text", "atomic_write_chunks", "remove_stale_temps"]
