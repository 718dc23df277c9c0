"""Builders of hostile files for the tests (issue 15): model files with a crafted header, session files."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from ntp_probe import checkpoint as ckpt
from ntp_probe.checkpoint import TaskSpec
from ntp_probe.model import GPT, GPTConfig
from ntp_probe.objectives import make_objective

GRAPH = "0,1|1,2|0,3|3,4/0,4"  # G(2,3) over N=10 ids: the tiny models' task


def tiny_gpt(**kw) -> GPT:
    torch.manual_seed(0)
    cfg = dict(vocab_size=14, block_size=17, n_layer=1, n_head=2, n_embd=32)
    cfg.update(kw)
    return GPT(GPTConfig(**cfg))


def good_meta(model: GPT | None = None, objective: str = "next-token") -> dict:
    model = model or tiny_gpt()
    return ckpt.make_meta(model, TaskSpec(2, 3, 10), make_objective(objective))


def write_model(path: Path, meta: dict | str, model: GPT | None = None) -> Path:
    """A safetensors file with valid tensors (a tiny GPT) and ``meta`` (a dict, or raw text) as its ntp-probe header."""
    model = model or tiny_gpt()
    tensors = {k: v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}  # tied to wte
    text = meta if isinstance(meta, str) else json.dumps(meta)
    save_file(tensors, str(path), metadata={ckpt.META_KEY: text})
    return path


def meta_with(objective: str = "next-token", model: GPT | None = None, config=None, task=None, obj=None) -> dict:
    meta = copy.deepcopy(good_meta(model, objective))
    meta["config"].update(config or {})
    meta["task"].update(task or {})
    meta["objective"].update(obj or {})
    return meta


def hostile_models(d: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, fragment of the one-line error): issue 15 item 2, each a traceback or a hang before."""
    mlmu = tiny_gpt(block_size=18, causal=False)  # an mlm-u model holds one token more than the task's seq_len
    cases = {
        "n_future-a-million": (meta_with(config={"n_future": 10**6}, obj={"name": "multi-token", "n_future": 10**6}),
                               "n_future 1000000, the file holds 1 output heads"),
        "n_head-negative": (meta_with(config={"n_head": -4}), "n_head -4"),
        "n_head-fraction": (meta_with(config={"n_head": 4.5}), "n_head 4.5"),
        "dropout-nan": ('{"format": "ntp-probe/1", "config": {"vocab_size": 14, "block_size": 17, "n_layer": 1, "n_head": 2, '
                        '"n_embd": 32, "dropout": NaN}, "task": {"degree": 2, "path_len": 3, "nodes": 10}, '
                        '"objective": {"name": "next-token", "n_future": 1}}', "dropout nan"),
        "mlm-u-says-causal": (meta_with("mlm-u", mlmu, config={"causal": True}), "needs bidirectional attention"),
        "hidden_token-past-the-vocabulary": (meta_with("mlm-u", mlmu, config={"hidden_token": 99}), "hidden_token 99"),
        "drop_masked-a-string": (meta_with("mlm-u", mlmu, obj={"drop_masked": "yes"}), "drop_masked 'yes'"),
        "drop_masked-without-the-hidden-token": (meta_with("mlm-u", mlmu, obj={"drop_masked": True}),
                                                 "hidden_token=-1, but the mlm-u objective needs 13"),
        "d_model-zero": (meta_with(config={"n_embd": 0}), "n_embd 0"),
        "metadata-nested-100k-objects": ('{"a":' * 100_000 + "1" + "}" * 100_000, "nested more than"),
        "metadata-nested-100k-lists": ("[" * 100_000 + "]" * 100_000, "nested more than"),
        "no-task-nodes": (meta_with(), "task has no 'nodes'"),
        "n_layer-bool": (meta_with(config={"n_layer": True}), "n_layer True"),
        "bias-a-string": (meta_with(config={"bias": "yes"}), "bias 'yes'"),
        "vocab-a-list": (meta_with(config={"vocab_size": [14]}), "vocab_size [14]"),
        "N-a-float": (meta_with(task={"nodes": 10.0}), "nodes 10.0"),
        "N-huge": (meta_with(task={"nodes": 10**30}), "nodes 1000000000000"),
        "objective-n_future-a-string": (meta_with(obj={"n_future": "4"}), "n_future '4'"),
        "hybrid-mix-a-string": (meta_with("teacherless", obj={"name": "hybrid", "mix": "half"}), "mix 'half'"),
        "objective-without-name": (meta_with(obj={"name": None}), "objective has no name"),
        "d_state-negative": (meta_with(config={"d_state": -1}), "d_state -1"),
        "expand-a-billion": (meta_with(config={"expand": 10**9}), "expand 1000000000"),
        "block_size-a-billion": (meta_with(config={"block_size": 10**9}), "block_size 1000000000"),
        "config-missing-n_embd": (meta_with(), "config has no 'n_embd'"),
        "card-a-list": ({**meta_with(), "card": [1]}, "card is [1], not an object"),  # was: `models` AttributeError
        "card-accuracy-a-string": ({**meta_with(), "card": {"accuracy": "x"}}, "card is wrong (accuracy 'x'"),  # was: ValueError
        "metadata-5000-digit-number": ('{"format": "ntp-probe/1", "n": ' + "9" * 5000 + "}", "not valid JSON"),
    }
    out = {}
    for name, (meta, fragment) in cases.items():
        if name == "no-task-nodes":
            del meta["task"]["nodes"]
        if name == "config-missing-n_embd":
            del meta["config"]["n_embd"]
        model = mlmu if name.startswith(("mlm-u", "hidden_token", "drop_masked")) else None
        out[name] = (write_model(d / f"{name}.safetensors", meta, model), fragment)
    return out


# ------------------------------------------------------------------------------------------------
# Session files


def session_data(model_path: Path) -> dict:
    return {"format": "ntp-probe-session/1", "model": str(model_path), "graph": GRAPH, "forced": {"1": 3}, "cursor": 2,
            "strategy": {"kind": "greedy", "temperature": 1.0, "top_k": 0, "beam": 4, "tries": 8, "seed": 0}}


def hostile_sessions(model_path: Path) -> dict[str, tuple[str, str]]:
    """name -> (file text, fragment of the one-line error): issue 15 item 7 (20 were tracebacks) and more."""
    def var(fragment, top=None, strategy=None, drop=()):
        d = session_data(model_path)
        d["strategy"].update(strategy or {})
        d.update(top or {})
        for k in drop:
            d.pop(k)
        return json.dumps(d), fragment

    return {
        "forced-a-list": var("forced is [1, 2]", {"forced": [1, 2]}),
        "forced-a-string": var("forced is 'x'", {"forced": "x"}),
        "forced-null": var("forced is None", {"forced": None}),
        "graph-a-list": var("graph is [1]", {"graph": [1]}),
        "graph-an-object": var("graph is {}", {"graph": {}}),
        "cursor-1e999": (json.dumps(session_data(model_path)).replace('"cursor": 2', '"cursor": 1e999'), "cursor is inf"),
        "forced-value-1e999": (json.dumps(session_data(model_path)).replace('{"1": 3}', '{"1": 1e999}'), "forced['1'] is inf"),
        "seed-10^20": var("strategy.seed", strategy={"seed": 10**20}),
        "seed-1.5": var("strategy.seed is 1.5", strategy={"seed": 1.5}),
        "seed-a-string": var("strategy.seed is 'x'", strategy={"seed": "x", "kind": "sample"}),
        "top_k-2.5": var("strategy.top_k is 2.5", strategy={"top_k": 2.5, "kind": "sample"}),
        "beam-2.5": var("strategy.beam is 2.5", strategy={"beam": 2.5, "kind": "beam"}),
        "temperature-NaN": (json.dumps(session_data(model_path)).replace('"temperature": 1.0', '"temperature": NaN')
                            .replace('"greedy"', '"sample"'), "strategy.temperature is nan"),
        "temperature-0": var("strategy.temperature is 0", strategy={"temperature": 0, "kind": "sample"}),
        "temperature-1e-45": var("strategy.temperature is 1e-45", strategy={"temperature": 1e-45, "kind": "sample"}),
        "nested-100k": ("[" * 100_000 + "]" * 100_000, "nested more than"),
        "nested-100k-in-a-field": (json.dumps(session_data(model_path)).replace('"forced": {"1": 3}', '"forced": '
                                   + '{"a":' * 100_000 + "1" + "}" * 100_000), "nested more than"),
        "beam-10^9": var("strategy.beam is 1000000000", strategy={"beam": 10**9, "kind": "beam"}),
        "tries-10^9": var("strategy.tries is 1000000000", strategy={"tries": 10**9, "kind": "verify"}),
        "cursor-negative": var("cursor is -5", {"cursor": -5}),
        "cursor-true": var("cursor is True", {"cursor": True}),
        "cursor-past-the-answer": var("cursor is 9, past the answer", {"cursor": 9}),
        "strategy-a-list": var("strategy is [1]", {"strategy": [1]}),
        "strategy-unknown-field": var("unknown field 'width'", strategy={"width": 3}),
        "strategy-kind-unknown": var("strategy.kind is 'ouija'", strategy={"kind": "ouija"}),
        "forced-key-not-a-position": var("forced is 'x'", {"forced": {"x": 3}}),
        "forced-key-negative": var("forced is '-1'", {"forced": {"-1": 3}}),
        "forced-position-past-the-answer": var("forced['7'] is outside the answer", {"forced": {"7": 3}}),
        "forced-node-out-of-range": var("node 12, out of range", {"forced": {"1": 12}}),
        "forced-node-a-string": var("forced['1'] is '3'", {"forced": {"1": "3"}}),
        "model-a-number": var("model is 5", {"model": 5}),
        "model-missing": var("lacks 'model'", drop=("model",)),
        "model-with-a-NUL": var("model is 'a\\x00b'", {"model": "a\x00b"}),  # was: ValueError (embedded null byte)
        "model-of-an-unknown-user": var("stale session", {"model": "~no-such-user-here/m"}),  # was: RuntimeError
        "model-name-too-long": var("cannot be opened (File name too long)", {"model": "x" * 4000}),  # was: OSError
        "graph-missing": var("lacks 'graph'", drop=("graph",)),
        "a-list": ("[]", "not an ntp-probe session file"),
        "not-json": ("{oops", "not a session file"),
        "not-utf8": ("\udcff", "not a text file (not UTF-8)"),
        "over-1-MiB": (json.dumps({**session_data(model_path), "pad": "x" * 1_100_000}), "a file of sessions is at most"),
    }


class WrappedFile:
    """A real open file behind a context manager, for tests that make one of its methods fail (subclass and
    override ``read`` or ``write``); every other call goes to the file."""

    def __init__(self, f):
        self.f = f

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()

    def __getattr__(self, name):
        return getattr(self.f, name)
