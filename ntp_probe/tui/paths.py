"""Paths typed in the app's prompts (``o``, ``ctrl+o``, ``ctrl+s``): expanded and checked without an exception.

``Path.expanduser`` raises ``RuntimeError`` for ``~nosuchuser``; ``is_file`` raises ``OSError`` (File name too long)
for a 300-character name and ``ValueError`` for a NUL. Each is a message under the prompt here, never a crash.
"""

from __future__ import annotations

import os
from pathlib import Path


def _shown(text: str) -> str:
    return text if len(text) <= 60 else f"{text[:40]}… ({len(text):,} characters)"


def expand(text: str) -> Path:
    """``~`` and ``~user`` expanded where they can be (else the text as it is: the checks below say why)."""
    try:
        return Path(text).expanduser()
    except RuntimeError:  # ~nosuchuser
        return Path(text)


def _problem(text: str, path: Path) -> str | None:
    """Why ``path`` cannot be used at all (an unknown user, a name too long, a NUL), or None."""
    if text.startswith("~") and str(path).startswith("~"):
        return f"{_shown(text)}: no such user (cannot expand {text.split('/', 1)[0]})"
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        return f"{_shown(text)}: {e.strerror or e}"
    except ValueError:
        return f"{_shown(text)}: a path cannot hold a NUL character"
    return None


def file_error(text: str, what: str = "file") -> str | None:
    """None if ``text`` names an existing regular file, else the message to show under the prompt."""
    if not text:
        return f"(empty): no such {what}"
    path = expand(text)
    if (why := _problem(text, path)) is not None:
        return why
    return None if path.is_file() else f"{_shown(text)}: no such {what}"


def writable_error(text: str) -> str | None:
    """None if a file can be written at ``text`` (its folder exists and the name is one the system takes)."""
    if not text:
        return "(empty): give a file name"
    path = expand(text)
    if (why := _problem(text, path)) is not None:
        return why
    return None if path.parent.is_dir() else f"{_shown(str(path.parent))}: no such directory"
