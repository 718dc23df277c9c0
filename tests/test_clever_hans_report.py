"""Clever Hans reported as what it is (issue 29, item 4): the walk along a forced wrong arm (follow rate) and the
goal copied from the query at the end (goal-copy rate) are two figures, in clever-hans, models, the cards, reproduce
and the app; G(d,3) has no inner step after the decision, so its follow rate is undefined, never 0."""

from __future__ import annotations

import asyncio
import json
import shutil

import pytest
from typer.testing import CliRunner

from ntp_probe.checkpoint import list_models, load, read_meta, replace_meta
from ntp_probe.cli import app
from ntp_probe.metrics import clever_hans, clever_hans_sentence
from ntp_probe.task import format_lines, generate

runner = CliRunner()


def shipped(name: str):
    if name not in dict(list_models()):
        pytest.skip(f"{name} is not shipped here")
    return load(name)


def test_g2_5_next_token_walks_the_arm_then_copies_the_goal():
    lm = shipped("g2-5-next-token")
    res = clever_hans(lm, generate(2, 5, 50, 200, seed=7))
    assert res["follow_rate"] > 0.95  # the walk: on the forced arm at every inner step
    assert res["goal_copy_rate"] > 0.95 and res["wrong_leaf_rate"] < 0.05  # then the goal from the query
    assert "clever_hans_rate" not in res and "follow_before_last_rate" not in res
    text = clever_hans_sentence(res)
    assert "every inner step" in text and "goal from the query" in text and "second shortcut" in text


def test_g_d_3_has_no_follow_rate(trained):
    res = clever_hans(trained("next-token"), generate(2, 3, 10, 100, seed=5))
    assert res["follow_rate"] is None and 0 <= res["goal_copy_rate"] <= 1
    assert "nothing to walk" in clever_hans_sentence(res)


def test_cli_json_and_table_carry_both_figures(trained, tmp_path):
    lm = shipped("g2-5-next-token")
    data = tmp_path / "g.txt"
    data.write_text("\n".join(format_lines(generate(2, 5, 50, 100, seed=3))) + "\n")
    r = runner.invoke(app, ["clever-hans", "g2-5-next-token", "--data", str(data), "--json"])
    assert r.exit_code == 0, r.output
    j = json.loads(r.stdout)
    assert j["follow_rate"] > 0.95 and j["goal_copy_rate"] > 0.95 and j["count"] == 100
    r = runner.invoke(app, ["clever-hans", "g2-5-next-token", "--data", str(data)], env={"COLUMNS": "120"})
    assert r.exit_code == 0 and "follow_rate" in r.stdout and "goal_copy_rate" in r.stdout
    assert "second shortcut" in r.stdout
    # a G(2,3) model: the follow rate is "—" with the reason, not 0
    r = runner.invoke(app, ["clever-hans", str(trained("next-token").path), "--count", "50"], env={"COLUMNS": "120"})
    assert r.exit_code == 0, r.output
    row = next(line for line in r.stdout.splitlines() if line.lstrip("│ ").startswith("follow_rate "))
    assert "—" in row and "0.000" not in row and "nothing to walk" in r.stdout


def test_models_shows_the_follow_figure():
    shipped("g2-5-next-token")
    rows = {r["name"]: r for r in json.loads(runner.invoke(app, ["models", "--json"]).stdout)}
    g25 = rows["g2-5-next-token"]
    assert g25["follow_rate"] > 0.95 and g25["goal_copy_rate"] > 0.95
    if "g2-3-next-token" in rows:
        assert rows["g2-3-next-token"]["follow_rate"] is None and rows["g2-3-next-token"]["goal_copy_rate"] is not None
    if "g2-5-reverse" in rows:
        assert rows["g2-5-reverse"]["follow_rate"] is None and rows["g2-5-reverse"]["goal_copy_rate"] is None
    r = runner.invoke(app, ["models"], env={"COLUMNS": "80"})
    head = next(line for line in r.stdout.splitlines() if line.startswith("name"))
    assert head.split()[-2:] == ["follow", "copy"]
    line = next(line for line in r.stdout.splitlines() if line.startswith("g2-5-next-token "))
    follow, copy = map(float, line.split()[-2:])
    assert follow > 0.95 and copy > 0.95


def test_replace_meta_keeps_the_tensors(trained, tmp_path):
    src = trained("next-token").path
    f = tmp_path / "model.safetensors"
    shutil.copyfile(src, f)
    before = f.read_bytes()
    meta = read_meta(f)
    meta["card"] = {"follow_rate": None, "goal_copy_rate": 0.5}
    replace_meta(f, meta)
    after = f.read_bytes()
    n0, n1 = (int.from_bytes(b[:8], "little") for b in (before, after))
    assert before[8 + n0 :] == after[8 + n1 :]  # the weights byte for byte
    assert read_meta(f)["card"]["goal_copy_rate"] == 0.5
    a, b = load(src), load(f)
    assert all(x.equal(y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))


def test_ship_and_rescore_write_both_figures(trained, tmp_path):
    from ntp_probe.cards import rescore_clever_hans, ship_model

    lm = trained("next-token")
    data = tmp_path / "deg_2_path_3_nodes_10_test.txt"
    data.write_text("\n".join(format_lines(generate(2, 3, 10, 60, seed=9))) + "\n")
    dest = ship_model(lm.path.parent, "tiny", data, tmp_path / "models", note="A note kept by rescoring.")
    card = read_meta(dest / "model.safetensors")["card"]
    assert card["follow_rate"] is None and 0 <= card["goal_copy_rate"] <= 1 and "clever_hans_rate" not in card
    readme = (dest / "README.md").read_text()
    assert "follow rate — (no inner node after the decision)" in readme and "goal-copy rate" in readme and "nothing to walk" in readme
    # an old card (clever_hans_rate only) re-measured: figures in the header and the card, the rest kept
    meta = read_meta(dest / "model.safetensors")
    old = {k: v for k, v in meta["card"].items() if k not in ("follow_rate", "goal_copy_rate", "wrong_leaf_rate")}
    replace_meta(dest / "model.safetensors", {**meta, "card": {**old, "clever_hans_rate": 0.0}})
    ch = rescore_clever_hans(dest, data)
    card = read_meta(dest / "model.safetensors")["card"]
    assert "clever_hans_rate" not in card and card["goal_copy_rate"] == ch["goal_copy_rate"]
    assert card["accuracy"] == old["accuracy"]
    text = (dest / "README.md").read_text()
    assert "A note kept by rescoring." in text and "goal-copy rate" in text and '"goal_copy_rate"' in text
    other = tmp_path / "other.txt"
    other.write_text(data.read_text())
    with pytest.raises(Exception, match="measured on"):
        rescore_clever_hans(dest, other)


def _story_after_w(models: list[str]) -> str:
    from ntp_probe.tui.app import ProbeApp

    async def go():
        app = ProbeApp(models, seed=3)
        async with app.run_test(size=(80, 24)) as pilot:
            await app.wait_idle()
            await pilot.press("w")
            await app.wait_idle()
            from ntp_probe.tui.widgets.render import story

            return story(app.session).plain, str(app.query_one("#story").render())

    return asyncio.run(go())


def test_app_w_says_the_walk_and_the_goal_copy():
    shipped("g2-5-next-token")
    text, shown = _story_after_w(["g2-5-next-token"])
    assert "walks it at every inner step (2 of 2" in text and "coin flip" in text
    assert "the goal" in text and "from the query" in text and "second shortcut" in text
    assert "walks it at every inner step" in shown


def test_app_w_on_g2_3_says_there_is_nothing_to_walk():
    shipped("g2-3-next-token")
    text, _ = _story_after_w(["g2-3-next-token"])
    assert "G(2,3) has no inner node after the decision: nothing to walk" in text
    assert "0 of" not in text and "g2-5-next-token" in text  # where the walk shows
