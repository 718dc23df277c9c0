"""What every command pays before it works: checking a model file's shapes and a training's size builds a meta-device
skeleton (model.skeleton) whose initialisers are skipped; run on meta, the first of them imported torch._dynamo,
about 1.2 s of CPU in every `eval`, `probe`, `patch`, … (the README's test runs 40 such commands)."""

import subprocess
import sys

import torch

from conftest import tiny_config
from ntp_probe.checkpoint import build_model
from ntp_probe.model import skeleton
from ntp_probe.train import model_config, validate


def test_a_skeleton_has_the_real_models_shapes(tmp_path):
    for objective, kw in (("next-token", {}), ("multi-token", {}), ("bst", {}), ("mlm-u", {}), ("reverse", {"arch": "mamba"})):
        cfg = tiny_config(tmp_path, objective, **kw)
        mc = model_config(cfg, validate(cfg))
        with skeleton():
            shell = build_model(mc)
        real = build_model(mc)
        assert {k: (t.shape, t.dtype) for k, t in shell.state_dict().items()} == \
               {k: (t.shape, t.dtype) for k, t in real.state_dict().items()}
        assert all(t.is_meta for t in shell.state_dict().values())
        assert not any(t.is_meta for t in real.state_dict().values()) and torch.device("meta") != real.lm_head.weight.device


def test_loading_a_model_does_not_import_dynamo():
    code = ("import sys; from ntp_probe.checkpoint import load; load('g2-5-next-token'); load('g2-3-bst'); "
            "print('torch._dynamo' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stderr[-2000:]
