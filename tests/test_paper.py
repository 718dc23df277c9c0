"""docs/paper/: the published recipes parse with the sweep engine (every run checked as train checks it), carry the
papers' settings into train's configuration, and one step of each runs on the CPU at a shrunken size."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer

from ntp_probe import checkpoint as ckpt
from ntp_probe.cli.sweep import load_runs
from ntp_probe.cli.train import train as train_cmd
from ntp_probe.cli.train import train_config
from ntp_probe.runfiles import STATE_FILE
from ntp_probe.task import format_lines, generate
from ntp_probe.train import train

PAPER = Path(__file__).resolve().parent.parent / "docs" / "paper"
RECIPES = sorted(PAPER.glob("*.toml"))
SHRINK = {"layers": 1, "d-model": 48, "batch-size": 8, "steps": 1, "eval-every": 1, "eval-count": 8}  # heads kept


def _runs(recipe: Path, out: Path):
    runs, schema = load_runs(recipe, out)
    return runs, schema


def _config(run, schema, **override):
    options = {**run.options, **override}
    run = type(run)(run.name, options, run.out, run.after)
    one = typer.Typer()  # train's own command, as the sweep checks a run
    one.command()(train_cmd)
    ctx = typer.main.get_command(one).make_context("train", run.argv(schema))
    return train_config(ctx.params)


def test_the_recipes_are_there():
    assert {p.name for p in RECIPES} == {"bachmann-nagarajan.toml", "nextlat-benchmark.toml"}
    readme = (PAPER / "README.md").read_text()
    for p in RECIPES:
        assert p.name in readme


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_every_recipe_parses_with_the_papers_settings(recipe, tmp_path):
    runs, schema = _runs(recipe, tmp_path)
    text = recipe.read_text()
    if recipe.stem == "bachmann-nagarajan":
        assert {r.name for r in runs} == {f"g{d}-5-{o}" for d in (2, 5) for o in ("next-token", "reverse", "teacherless")}
        want = dict(nodes=50, layers=6, d_model=240, heads=6, batch_size=64, lr=5e-4, min_lr=5e-4, weight_decay=0.0,
                    beta2=0.999, grad_clip=0.0, steps=312_500, file_order="epochs", dropout=0.0)
    else:
        assert {r.name for r in runs} == {f"{s}-{o}" for s in ("g2-10", "g5-5", "g7-7")
                                          for o in ("next-token", "multi-token", "bst")}
        want = dict(nodes=100, layers=12, d_model=384, heads=6, batch_size=512, lr=5e-4, min_lr=5e-4, weight_decay=0.1,
                    beta2=0.95, steps=20_000, file_order="epochs")
    for run in runs:
        cfg = _config(run, schema)
        assert {k: getattr(cfg, k) for k in want} == want, run.name
        assert cfg.train_file and cfg.train_file.startswith("data/paper/")
        # the one generate command that makes the run's training file is written in the recipe's header
        d, l = cfg.degree, cfg.path_len
        line = (f"ntp-probe generate --degree {d} --path-len {l} --nodes {cfg.nodes} --count 200000 --seed "
                rf"\d+ --out {re.escape(cfg.train_file)}")
        assert re.search(line, text), (run.name, line)


def _cases():
    for recipe in RECIPES:
        runs, _ = load_runs(recipe, Path("/nonexistent-sweep"))
        for run in runs:
            yield pytest.param(recipe, run.name, id=f"{recipe.stem}-{run.name}")


@pytest.mark.slow
@pytest.mark.parametrize("recipe,name", list(_cases()))
def test_one_step_of_each_run_at_a_shrunken_size(recipe, name, tmp_path):
    runs, schema = _runs(recipe, tmp_path / "sweep")
    run = next(r for r in runs if r.name == name)
    d, l = int(run.options["degree"]), int(run.options["path-len"])
    nodes = d * (l - 1) + 6  # the smallest vocabulary that holds the shape, with a little room
    data = tmp_path / "train.txt"
    data.write_text("".join(x + "\n" for x in format_lines(generate(d, l, nodes, 24, seed=1))))
    cfg = _config(run, schema, **SHRINK, nodes=nodes, **{"train-file": str(data)})
    assert (cfg.layers, cfg.d_model, cfg.steps) == (1, 48, 1)
    summary = train(cfg, tmp_path / "run")
    assert summary["step"] == 1 and not summary["interrupted"]
    lm = ckpt.load(tmp_path / "run")
    assert lm.objective.name == run.options["objective"]
    saved = ckpt.read_state_meta(tmp_path / "run" / STATE_FILE)["train"]
    for key in ("beta2", "weight_decay", "grad_clip", "file_order", "min_lr", "lr", "heads"):  # the rest kept
        assert saved[key] == getattr(_config(run, schema), key), key
