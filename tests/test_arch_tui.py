"""The app on the new architecture and objective: a Mamba model and an mlm-u model step, force and show
"attention: not available" instead of an attention view."""

import asyncio
import json

import pytest

from conftest import tiny_config
from ntp_probe.checkpoint import load
from ntp_probe.tui.app import ProbeApp

GRAPH = "1→2, 0→1, 0→3, 3→4 || find(0 → 2)"


@pytest.fixture(scope="module", params=["mamba", "mlm-u"])
def lm(request, tmp_path_factory):
    from ntp_probe.train import train

    out = tmp_path_factory.mktemp(request.param)
    kw = {"arch": "mamba", "d_state": 4} if request.param == "mamba" else {"objective": "mlm-u"}
    train(tiny_config(out, **{"steps": 10, **kw}), out)
    return load(out)


def test_app_steps_forces_and_says_no_attention(lm):
    async def run():
        app = ProbeApp([lm], graph=GRAPH)
        async with app.run_test(size=(100, 32)) as pilot:
            await app.wait_idle()
            s = app.session
            assert s is not None and s.length == 3
            await pilot.press("0", "right")
            await app.wait_idle()
            assert app.session.cursor == 1
            await pilot.press("w")
            await app.wait_idle()
            assert app.session.steps[1].forced
            text = app.query_one("#attention").render()
            why = "Mamba" if lm.arch == "mamba" else "the mlm-u objective"
            assert f"attention: not available for {why}" in str(getattr(text, "plain", text))

    asyncio.run(run())
    json.dumps(session_json(lm))  # probe --json with the logit lens works too


def session_json(lm):
    from ntp_probe.probing import ProbeSession, parse_for_model

    return ProbeSession(lm, parse_for_model(GRAPH, lm)).to_json(layers=True)
