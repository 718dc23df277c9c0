"""``ntp-probe export`` and ``ntp-probe import``: models out to other libraries' formats (TransformerLens, a Hugging
Face GPT-2 folder) and in from other code (the paper's Next-Token-Failures checkpoints, Hugging Face GPT-2 folders).
The engine is ``export.py`` (TransformerLens) and ``interop/`` (the rest)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import UsageError
from ._common import err, handle_errors


@handle_errors
def export(
    model: Annotated[str, typer.Argument(help="A .safetensors file, a run directory, or a shipped model name (GPT).")],
    out_file: Annotated[Path, typer.Option("--out", "-o", help="Write the exported model here (transformer-lens: a safetensors file; hf: a folder).")],
    to: Annotated[str, typer.Option("--to", help="Target format: transformer-lens or hf (a Hugging Face GPT-2 folder).")] = "transformer-lens",
    force: Annotated[bool, typer.Option("--force", help="hf: replace the model the folder already holds.")] = False,
) -> None:
    """Export a GPT to TransformerLens (a HookedTransformer with our weights; needs [bold]pip install ntp-probe\\[interp][/]) or as a Hugging Face GPT-2 folder (--to hf)."""
    from ..checkpoint import load

    if to == "hf":
        from ..interop.hf import export_hf

        path = export_hf(load(model), out_file, force)
        err.print(f"exported {model} → {path}/ (transformers.AutoModelForCausalLM.from_pretrained reads it)",
                  highlight=False, markup=False)
        return
    from ..export import FORMATS
    from ..export import export as do_export

    if to not in FORMATS:
        raise UsageError(f"--to {to}: choose one of {', '.join((*FORMATS, 'hf'))}")
    path = do_export(load(model), to, out_file)
    err.print(f"exported {model} → {path} (load it with ntp_probe.export.load_hooked)", highlight=False)


@handle_errors
def import_cmd(
    source: Annotated[str, typer.Argument(help="next-token-failures: a checkpoint file of the paper's train.py; hf: a Hugging Face GPT-2 folder.")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Write the ntp-probe model into this folder (models/NAME: open it by NAME).")],
    source_kind: Annotated[str, typer.Option("--from", help="next-token-failures (gregorbachmann/Next-Token-Failures) or hf.")] = "next-token-failures",
    heads: Annotated[Optional[int], typer.Option("--heads", help="Attention heads (a state dict does not record them; train.py's --n_head).", rich_help_panel="Model")] = None,
    layers: Annotated[Optional[int], typer.Option("--layers", help="Check: the layers the checkpoint holds.", rich_help_panel="Model")] = None,
    d_model: Annotated[Optional[int], typer.Option("--d-model", help="Check: the checkpoint's width.", rich_help_panel="Model")] = None,
    degree: Annotated[Optional[int], typer.Option("--degree", "-d", help="Arms (d); default: read from the model's context.", rich_help_panel="Task")] = None,
    path_len: Annotated[Optional[int], typer.Option("--path-len", "-l", help="Path nodes (l); default: read from the model's context.", rich_help_panel="Task")] = None,
    nodes: Annotated[Optional[int], typer.Option("--nodes", "-n", "-N", help="Check: node ids (the vocabulary is N+4).", rich_help_panel="Task")] = None,
    objective: Annotated[Optional[str], typer.Option("--objective", help="next-token (default), teacherless or reverse; an ntp-probe export brings its own.", rich_help_panel="Task")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace the model --out already holds.")] = False,
) -> None:
    """Import a model trained elsewhere: a checkpoint of the paper's code, or a Hugging Face GPT-2 folder."""
    argv = ["import", *sys.argv[2:]] if len(sys.argv) > 1 and sys.argv[1] == "import" else None  # for its card
    if source_kind == "next-token-failures":
        from ..interop.ntf import import_checkpoint

        path = import_checkpoint(source, out_dir, heads, degree, path_len, nodes, objective or "next-token", layers,
                                 d_model, force, argv)
    elif source_kind == "hf":
        for flag, v in (("--heads", heads), ("--layers", layers), ("--d-model", d_model)):
            if v is not None:
                raise UsageError(f"{flag}: a Hugging Face folder's config.json says it; it is for --from next-token-failures")
        from ..interop.hf import import_hf

        path = import_hf(source, out_dir, degree, path_len, nodes, objective, force, argv)
    else:
        raise UsageError(f"--from {source_kind}: choose next-token-failures or hf")
    err.print(f"imported {source} → {path.parent}/ (open it with ntp-probe tui {path.parent}; measure it with "
              f"ntp-probe eval {path.parent})", highlight=False, markup=False)
