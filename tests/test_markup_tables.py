"""A model's name in a table is text, never Rich markup (issue 30: no text from a file or a path is read as markup)."""

import shutil
from pathlib import Path

from typer.testing import CliRunner

from ntp_probe.cli import app

MODELS = Path(__file__).resolve().parents[1] / "models"


def test_models_lists_a_bracketed_name_as_written(tmp_path, monkeypatch):
    d = tmp_path / "models" / "[bold]x"
    d.mkdir(parents=True)
    shutil.copy(MODELS / "g2-3-next-token" / "model.safetensors", d / "model.safetensors")
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["models"], env={"COLUMNS": "120"})
    assert res.exit_code == 0, res.output
    assert "[bold]x " in res.output


def test_help_texts_show_their_brackets():
    """Issue 30 item 18: `sweep run --help` said "A recipe file (TOML: , , [])", the sections eaten as markup."""
    for cmd in (["sweep", "run", "--help"], ["sweep", "list", "--help"]):
        res = CliRunner().invoke(app, cmd, env={"COLUMNS": "200"})
        assert res.exit_code == 0 and "[train], [grid], [[run]]" in res.output, res.output
