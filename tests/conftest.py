from __future__ import annotations

import asyncio
import functools
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)  # 2-core machine: one thread per test process is fastest under contention

FIXTURES = Path(__file__).parent / "fixtures"


def sync(fn):
    """Run an async test with asyncio (no pytest async plugin needed): ``from conftest import sync``."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return asyncio.run(fn(*args, **kwargs))

    return wrapper


def tiny_config(tmp: Path, objective: str = "next-token", steps: int = 30, **kw):
    from ntp_probe.train import TrainConfig

    base = dict(degree=2, path_len=3, nodes=10, objective=objective, layers=1, d_model=32, heads=2,
                steps=steps, batch_size=32, lr=3e-3, warmup=5, eval_every=10, eval_count=64, seed=0, device="cpu",
                amp="fp32")  # the same tiny models (and snapshot) on every CPU, native bf16 or not
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """Tiny real models, one per objective, trained for a few steps on G(2,3) N=10 (about a second each)."""
    from ntp_probe.checkpoint import load
    from ntp_probe.train import train

    cache: dict[str, object] = {}

    def get(objective: str = "next-token"):
        if objective not in cache:
            out = tmp_path_factory.mktemp(f"tiny-{objective}")
            train(tiny_config(out, objective), out)
            cache[objective] = load(out)
        return cache[objective]

    return get


@pytest.fixture
def wide_console():
    """The CLI's stdout console 200 columns wide for one test: it was built at import, so a COLUMNS passed to a
    CliRunner later is not read, and a table's cells would wrap at 80 (the test's text split over lines)."""
    from ntp_probe.cli._common import out

    wide = out._width
    out.width = 200
    yield out
    out._width = wide
