"""``ntp-probe generate``: path-star graphs in the original line format."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import UsageError
from ._common import DegreeOpt, PathLenOpt, err, handle_errors, one_or_set


@handle_errors
def generate(
    degree: DegreeOpt = "2",
    path_len: PathLenOpt = "5",
    nodes: Annotated[int, typer.Option("--nodes", "-n", help="Node ids are drawn from 0..N-1.")] = 50,
    count: Annotated[int, typer.Option("--count", "-c", help="How many graphs.", min=1)] = 10,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same lines).")] = 0,
    out_file: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write here (atomically) instead of stdout.")] = None,
    question_only: Annotated[bool, typer.Option("--no-answer", help="Leave out the '=s,…,g' answers.")] = False,
    one_batch: Annotated[bool, typer.Option("--one-batch", help="All graphs as one batch from one generator: the "
                                            "output of versions before the stream (e.g. the G(5,5) test files).")] = False,
) -> None:
    """Generate path-star graphs G(d, l) in the original line format [dim]u,v|…/s,g=s,…,g[/].

    A seed names one endless stream of graphs: [bold]--count 3[/] is the first 3 lines of [bold]--count 100000[/].
    Written in chunks, so any count runs in bounded memory. A topology set ([bold]--degree 2-5 --path-len 3-6[/])
    draws each graph's shape uniformly."""
    from ..atomic import atomic_write_chunks
    from ..limits import check_count, check_seed, check_task_size
    from ..task import Topologies, format_lines, generate_set, generate_text, stream_chunk_size

    shapes = Topologies.parse(one_or_set(degree), one_or_set(path_len), nodes)  # one shape: check_topology as always
    degree, path_len = shapes.max_degree, shapes.max_path_len
    check_task_size(degree, path_len, nodes)
    check_seed(seed)
    if one_batch:  # not a stream: --count 3 is not a prefix of --count 4; in memory, so bounded like eval --count
        check_count(count, nodes, edges=degree * (path_len - 1))
        batch = generate_set(shapes, nodes, count, seed=seed)
        size = stream_chunk_size(nodes)  # formatted a chunk at a time: a million lines' Python ints took GBs
        chunks = ("\n".join(format_lines(batch[lo : lo + size], with_answer=not question_only)) + "\n"
                  for lo in range(0, count, size))
    else:
        chunks = generate_text(degree, path_len, nodes, count, seed, with_answer=not question_only, shapes=shapes)
    if out_file is None:
        for chunk in chunks:
            sys.stdout.write(chunk)
    else:
        try:
            atomic_write_chunks(out_file, chunks)
        except OSError as e:
            raise UsageError(f"--out {out_file}: cannot write ({e.strerror or e})") from None
        err.print(f"wrote {count:,} graphs to {out_file}")
