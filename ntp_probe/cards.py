"""Shipping a trained run as ``models/<name>/``: the weights (figures in the header), its learning
curve and a model card measured on a test file."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
from pathlib import Path

from . import checkpoint as ckpt
from .atomic import atomic_write, atomic_write_text
from .evaluate import evaluate
from .fmt import fmt
from .limits import check_file_name
from .errors import NtpProbeError
from .metrics import CH_FIGURES, clever_hans, clever_hans_sentence
from .task import format_values, generate_set, read_lines
from .runfiles import METRICS_FILE, MODEL_FILE


PER_SHAPE = 1000  # fresh graphs per shape on the card of a topology set's model


@contextlib.contextmanager
def ship_lock(dest: Path):
    """Hold ``models/NAME`` (an ``flock`` on the folder itself) while its files are written: two ships to one name
    write one after the other, so its model, card and metrics are always one run's."""
    dest.mkdir(parents=True, exist_ok=True)
    fd = os.open(dest, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield dest
    finally:
        os.close(fd)


def ship_model(run: str | Path, name: str, data: Path, models_dir: Path, seed: int = 0, note: str | None = None) -> Path:
    check_file_name(name, "--name", f"--models-dir {models_dir}")  # one folder inside models_dir, never outside
    lm = ckpt.load(run)
    graphs = read_lines(data, lm.task.nodes)
    ev = evaluate(lm, graphs)
    ev = {"model": name, "data": data.name, **ev}
    grid = None
    if lm.task.mixed:  # the whole set too: PER_SHAPE fresh graphs per shape
        shapes = lm.task.topologies
        fresh = generate_set(shapes, lm.task.nodes, PER_SHAPE * len(shapes.shapes), seed=12345)
        grid = evaluate(lm, fresh)
        if lm.objective.decision_step:
            _grid_clever_hans(lm, grid, fresh, seed)
    ch = None
    if lm.objective.decision_step:
        ch = {"model": name, "data": data.name, **clever_hans(lm, graphs, seed=seed)}
    dest = Path(models_dir) / name
    card = {k: ev[k] for k in ("accuracy", "decision_accuracy", "forced_accuracy", "forced_after_decision", "per_position",
                               "forced_per_position", "count")}
    card["data"] = data.name
    card.update({k: ch[k] if ch else None for k in CH_FIGURES})
    if grid is not None:
        card["by_topology"] = grid["by_topology"]
    meta = {**lm.meta, "card": card}
    readme = card_markdown(lm, ev, ch, note, name=name, grid=grid)
    src_metrics = lm.path.parent / METRICS_FILE
    with ship_lock(dest):
        ckpt.save(dest / MODEL_FILE, lm.model, meta)
        if src_metrics.is_file():
            atomic_write(dest / METRICS_FILE, lambda name: shutil.copyfile(src_metrics, name))
        else:  # not another run's curve beside this model
            (dest / METRICS_FILE).unlink(missing_ok=True)
        atomic_write_text(dest / "README.md", readme)
    return dest


def _grid_clever_hans(lm: ckpt.LoadedModel, grid: dict, fresh, seed: int) -> None:
    """A topology set's Clever Hans figures per shape, into ``grid["by_topology"]``."""
    for key, r in clever_hans(lm, fresh, seed=seed)["by_topology"].items():
        grid["by_topology"][key].update({k: r[k] for k in CH_FIGURES})
        grid["by_topology"][key].pop("clever_hans_rate", None)


def _section(text: str, heading: str) -> str | None:
    """The body of the card's ``## heading`` section (up to the next heading or the closing 'Reproduce' line)."""
    m = re.search(rf"^## {re.escape(heading)}\n\n(.*?)(?=\n\n## |\n\nReproduce these figures: |\Z)", text, re.S | re.M)
    return m.group(1).strip() if m else None


def _json_block(text: str, command: str) -> dict | None:
    m = re.search(rf"^`ntp-probe {re.escape(command)} --json`:\n\n```json\n(.*?)\n```", text, re.S | re.M)
    return json.loads(m.group(1)) if m else None


def rescore_clever_hans(dest: Path, data: Path, seed: int = 0) -> dict | None:
    """Re-measure a shipped model's Clever Hans figures (no retraining): ``clever_hans`` on the card's test file
    ``data`` (and, for a topology set, its fresh graphs per shape), written into the model's header (the tensors
    are kept byte for byte) and its card, whose other figures and notes are kept. Returns the new figures (None: a
    model with no arm to choose, left as it is)."""
    dest = Path(dest)
    lm = ckpt.load(dest)
    if not lm.objective.decision_step:
        return None
    readme = (dest / "README.md").read_text()
    ev = _json_block(readme, "eval")
    card = dict(lm.meta.get("card") or {})
    if ev is None or ev.get("data") != data.name or card.get("data") != data.name:
        raise NtpProbeError(f"{dest}: its card was measured on {card.get('data')!r}, not {data.name!r}")
    ch = {"model": dest.name, "data": data.name, **clever_hans(lm, read_lines(data, lm.task.nodes), seed=seed)}
    if abs(ch["decision_accuracy"] - ev["decision_accuracy"]) > 1e-9:  # the same graphs as the card's, or not at all
        raise NtpProbeError(f"{dest}: decision accuracy {ch['decision_accuracy']} on {data}, the card says "
                            f"{ev['decision_accuracy']}: not the card's test file")
    grid = None
    if "by_topology" in card:
        shapes = lm.task.topologies
        fresh = generate_set(shapes, lm.task.nodes, PER_SHAPE * len(shapes.shapes), seed=12345)
        grid = {"count": len(fresh), "by_topology": {k: dict(v) for k, v in card["by_topology"].items()}}
        _grid_clever_hans(lm, grid, fresh, seed)
        card["by_topology"] = grid["by_topology"]
    card.pop("clever_hans_rate", None)
    card.update({k: ch[k] for k in CH_FIGURES})
    meta = {**lm.meta, "card": card}
    note = _section(readme, "Notes")
    text = card_markdown(lm, ev, ch, note, name=dest.name, grid=grid)
    with ship_lock(dest):
        ckpt.replace_meta(dest / ckpt.MODEL_FILE, meta)
        atomic_write_text(dest / "README.md", text)
    return ch


def architecture(cfg: dict) -> str:
    """'2-layer, 128-wide, 4-head GPT' or '2-layer, 128-wide Mamba (SSM state 32, expand 1)'."""
    if cfg.get("arch", "gpt") == "mamba":
        return f"{cfg['n_layer']}-layer, {cfg['n_embd']}-wide Mamba (SSM state {cfg['d_state']}, expand {cfg['expand']})"
    gpt = f"{cfg['n_layer']}-layer, {cfg['n_embd']}-wide, {cfg['n_head']}-head GPT"
    if cfg.get("activation") == "gelu_tanh":  # imported from the paper's code or GPT-2: the tanh approximation
        gpt += " (tanh GELU)"
    return f"belief state transformer: two {gpt}s (forward and backward encoders) and an MLP head" if cfg.get("bst") else gpt


def model_card(lm: ckpt.LoadedModel) -> str:
    """A loaded model's card: the README shipped beside its file (written by ``card_markdown`` at ship time),
    else one built from its header (the app's ``i``)."""
    if lm.path is not None:
        readme = Path(lm.path).parent / "README.md"
        try:
            if lm.name and readme.is_file():
                return readme.read_text()
        except (OSError, UnicodeDecodeError):
            pass
    return card_markdown(lm)


def _cell(v) -> str:
    return fmt(v) if v is None or isinstance(v, (float, list)) else str(v)


def card_markdown(lm: ckpt.LoadedModel, ev: dict | None = None, ch: dict | None = None, note: str | None = None,
                  name: str | None = None, grid: dict | None = None) -> str:
    """The model card. With ``ev`` (and ``ch``), the evaluation and clever-hans JSON measured when shipping;
    without, the figures the model's header carries. ``grid``: a topology set's figures per shape (fresh graphs)."""
    name = name or lm.display_name
    tr = lm.meta.get("training") or {}
    cfg = lm.meta["config"]
    t = lm.task
    lines = [
        f"# {name}",
        "",
        f"A {architecture(cfg)} trained with the **{lm.objective.name}** objective on path-star graphs {t.label()} "
        f"({format_values(t.topologies.degrees)} arms, {format_values(t.topologies.path_lens)}-node paths, "
        f"answer in {lm.objective.answer_order} order).",
        "",
        "## Training",
        "",
        "```bash",
        str(tr.get("command") or "(command not recorded)"),
        "```",
        "",
        f"- steps: {tr.get('steps')} of {tr.get('target_steps')}, batch {tr.get('config', {}).get('batch_size')}, "
        f"fresh graphs every step",
        f"- wall time: {tr.get('wall_time_s')} s on {tr.get('device')} (world size {tr.get('world_size', 1)})",
        *([f"- warm start (curriculum): from `{tr['config']['init_from']}`, whose own training is on its card"]
          if tr.get("config", {}).get("init_from") else []),
        f"- parameters: {lm.model.num_params():,}",
    ]
    if ev is None:
        figures = {**(lm.meta.get("metrics") or {}), **(lm.meta.get("card") or {})}
        lines += ["", "## Figures in the model's header", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_cell(v)} |" for k, v in figures.items() if isinstance(v, (int, float, list, str)) or v is None]
        lines += ["", f"File: `{lm.path}`", ""]
        return "\n".join(lines)
    lines += [
        "",
        f"## Figures on `{ev['data']}` ({ev['count']:,} graphs)",
        "",
        f"- greedy accuracy (whole answer): **{ev['accuracy']:.4f}**",
        f"- decision accuracy (arm choice): **{ev['decision_accuracy']:.4f}** (chance {ev['chance']:.3f})",
        f"- teacher-forced accuracy: {ev['forced_accuracy']:.4f}; after the decision: {ev['forced_after_decision']:.4f}",
    ]
    if ch:
        follow = "— (no inner node after the decision)" if ch["follow_rate"] is None else f"**{ch['follow_rate']:.4f}**"
        lines.append(f"- Clever Hans: follow rate {follow}, goal-copy rate **{ch['goal_copy_rate']:.4f}**, wrong leaf "
                     f"{ch['wrong_leaf_rate']:.4f}. " + clever_hans_sentence(ch))
        lines.append(f"- decision entropy {ch['decision_entropy']:.3f} nats (log d = {ch['log_degree']:.3f}); mass on the "
                     f"start's children {ch['decision_mass_on_children']:.3f}")
    lines += ["", "`ntp-probe eval --json`:", "", "```json", json.dumps({k: v for k, v in ev.items() if k != "seconds"}), "```"]
    if ch:
        lines += ["", "`ntp-probe clever-hans --json`:", "", "```json", json.dumps(ch), "```"]
    if grid is not None:
        from .report import grid_markdown

        lines += ["", f"## Every shape: {grid['count']:,} fresh graphs, about {PER_SHAPE:,} per shape (seed 12345)", "",
                  *grid_markdown([{"name": name, **grid}]), "",
                  f"Reproduce: `ntp-probe eval {name} --count {grid['count']} --json` (figures under `by_topology`)."]
    if note:
        lines += ["", "## Notes", "", note]
    lines += ["", f"Reproduce these figures: `ntp-probe eval {name} --data {ev['data']} --json`.", ""]
    return "\n".join(lines)
