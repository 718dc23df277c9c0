"""The app's one-line prompts, each with its validator: force a node by id, load a data file's line, save and open
a session. Each builder returns the ``Prompt`` screen; the app pushes it with what to do with the answer."""

from __future__ import annotations

import re

from ..paths import file_error, writable_error
from .modals import Prompt


def force_prompt(label: str, nodes: int) -> Prompt:
    def validate(text: str) -> str | None:
        from ...errors import GraphError
        from ...task import parse_node_id  # torch is loaded by now (the model is)

        try:
            parse_node_id(text, "node", nodes)
        except GraphError as e:
            return str(e)
        return None

    return Prompt(f"force which node at {label}?", f"a node id, 0..{nodes - 1}", validate=validate)


def split_line(text: str) -> tuple[str, str]:
    """``path:line`` → (path, line); a bare path is its line 1."""
    path, _, line = text.rpartition(":") if ":" in text else (text, "", "1")
    return path, line


def line_prompt(last: str) -> Prompt:
    def validate(text: str) -> str | None:
        path, line = split_line(text)
        if (why := file_error(path)) is not None:
            return why
        if not re.fullmatch(r"\s*[0-9]{1,9}\s*", line) or int(line) < 1:
            return f"line {line!r}: give a line number from 1, as path:line"
        return None

    return Prompt("load a graph from a data file", "path/to/file.txt:LINE", value=last, validate=validate)


def save_prompt(last: str) -> Prompt:
    def validate(text: str) -> str | None:
        return writable_error(text)

    return Prompt("save this session (model, graph, forced tokens, decoding) as", "session.json", value=last,
                  validate=validate)


def open_prompt(last: str) -> Prompt:
    def validate(text: str) -> str | None:
        return file_error(text)

    return Prompt("open a saved session", "session.json", value=last, validate=validate)
