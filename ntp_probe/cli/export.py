"""``ntp-probe export``: a model in another library's format (TransformerLens)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import err, handle_errors


@handle_errors
def export(
    model: Annotated[str, typer.Argument(help="A .safetensors file, a run directory, or a shipped model name (GPT).")],
    out_file: Annotated[Path, typer.Option("--out", "-o", help="Write the exported model here (safetensors).")],
    to: Annotated[str, typer.Option("--to", help="Target format: transformer-lens.")] = "transformer-lens",
) -> None:
    """Export a GPT to TransformerLens (a HookedTransformer with our weights; needs [bold]pip install ntp-probe\\[interp][/])."""
    from ..checkpoint import load
    from ..export import export as do_export

    path = do_export(load(model), to, out_file)
    err.print(f"exported {model} → {path} (load it with ntp_probe.export.load_hooked)", highlight=False)
