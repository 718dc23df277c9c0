"""Models in and out: checkpoints of the paper's own code (ntp_probe/interop/ntf.py) and Hugging Face GPT-2 folders
(ntp_probe/interop/hf.py). The paper's checkpoint is the kept fixture (tests/fixtures/next-token-failures-ckpt/,
made once by the original repository's own GPT class); the transformers checks run where it is installed."""

from __future__ import annotations

import json
import pickle
from argparse import Namespace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from ntp_probe.checkpoint import MODEL_FILE, load
from ntp_probe.cli import app
from ntp_probe.interop import hf, ntf
from ntp_probe.task import generate, parse_line
from ntp_probe.tokenizer import Tokenizer

FIXTURE = Path(__file__).parent / "fixtures" / "next-token-failures-ckpt"
CKPT = FIXTURE / "checkpoint.pt"
TOL = 1e-5  # absolute, on logits of magnitude up to ~6; float32 sums in another order differ by ~3e-6
runner = CliRunner()


def one_line_error(r) -> str:
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.output
    return lines[0]


def logits(lm, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return lm.model(x).logits


def inputs(lm, count: int = 32, seed: int = 7) -> torch.Tensor:
    b = generate(lm.task.degree, lm.task.path_len, lm.task.nodes, count, seed=seed)
    return lm.objective.inputs(lm.tokenizer.questions(b), lm.objective.answer(b.path), lm.tokenizer.dollar)


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ntf") / "ntf-g2-3"
    ntf.import_checkpoint(CKPT, out, heads=2)
    return out


# ------------------------------------------------------------------------------------------------
# The paper's code


def test_original_tokenizer_numbering_is_ours():
    """The ids the original's NumeralTokenizer gave the fixture's lines (tokens.json) are ours, '$' included."""
    kept = json.loads((FIXTURE / "tokens.json").read_text())
    tok = Tokenizer(kept["nodes"])
    assert kept["specials"] == {"|": tok.pipe, "=": tok.eq, "/": tok.slash, "$": tok.dollar}
    for line, ids in zip(kept["lines"], kept["ids"], strict=True):
        g = parse_line(line, kept["nodes"])
        assert tok.question(g) + list(g.path) == ids


def test_imported_checkpoint_reproduces_the_original_logits(imported):
    """Logits of the original's own GPT (expected.safetensors, every position of 4 sequences) within 1e-5."""
    lm = load(imported)
    kept = load_file(str(FIXTURE / "expected.safetensors"))
    assert (lm.task.degree, lm.task.path_len, lm.task.nodes) == (2, 3, 10)  # read from its context and vocabulary
    assert lm.model.config.activation == "gelu_tanh" and lm.objective.name == "next-token"
    got = logits(lm, kept["input_ids"])
    assert got.shape == kept["logits"].shape == (4, 18, 14)
    assert torch.allclose(got, kept["logits"], rtol=0, atol=TOL), (got - kept["logits"]).abs().max()
    for block in lm.model.blocks:  # the tolerance is tight enough to tell the two GELUs apart
        block.mlp.approximate = "none"
    assert (logits(lm, kept["input_ids"]) - kept["logits"]).abs().max() > 10 * TOL
    assert lm.meta["imported"]["sha256"] and "Next-Token-Failures" in (imported / "README.md").read_text()


def test_cli_import_then_eval(tmp_path):
    out = tmp_path / "m"
    r = runner.invoke(app, ["import", str(CKPT), "--from", "next-token-failures", "--heads", "2", "--layers", "1",
                            "--d-model", "16", "-N", "10", "--objective", "teacherless", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert (out / MODEL_FILE).is_file() and (out / "README.md").is_file()
    r = runner.invoke(app, ["eval", str(out), "--count", "50", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["count"] == 50 and res["objective"] == "teacherless" and 0.0 <= res["accuracy"] <= 1.0
    r = runner.invoke(app, ["import", str(CKPT), "--heads", "2", "--out", str(out)])
    assert "--force" in one_line_error(r)  # a folder holding a model is replaced only with --force
    r = runner.invoke(app, ["import", str(CKPT), "--heads", "2", "-d", "2", "-l", "3", "--objective", "reverse",
                            "--out", str(out), "--force"])
    assert r.exit_code == 0, r.output
    assert load(out).objective.name == "reverse"


def test_the_app_opens_an_imported_model(imported):
    import asyncio

    from ntp_probe.tui.app import ProbeApp

    async def run():
        app_ = ProbeApp([str(imported)], graph="1→2, 0→1, 0→3, 3→4 || find(0 → 2)")
        async with app_.run_test(size=(100, 32)) as pilot:
            await app_.wait_idle()
            s = app_.session
            assert s is not None and s.length == 3 and len(s.tokens) == 3
            await pilot.press("i")  # the card: the README written at import
            await app_.wait_idle()

    asyncio.run(run())


def _save(obj, path: Path) -> Path:
    torch.save(obj, path)
    return path


def _original_sd() -> dict:
    return torch.load(CKPT, weights_only=True)


@pytest.mark.parametrize("case, args, expect", [
    ("not-a-state-dict", [], "holds a list, not a state dict"),
    ("needs-code", [], "refused: it needs more than tensors"),
    ("not-torch", [], "not a torch checkpoint"),
    ("other-architecture", [], "not a state dict of the paper's GPT"),
    ("missing-keys", [], "missing keys of the paper's GPT: layers.0.attn.keys_linear.weight"),
    ("vocabulary-too-small", [], "needs 5 distinct nodes but only 4 ids exist"),
    ("vocabulary-not-N", ["-N", "50"], "N=10 nodes + 4 specials, not -N 50"),
    ("no-heads", None, "give --heads"),
    ("wrong-layers", ["--layers", "3"], "holds 1 layers"),
    ("objective", ["--objective", "mlm-u"], "trains next-token, teacherless, reverse only"),
])
def test_bad_checkpoints_are_one_line_and_write_nothing(tmp_path, case, args, expect):
    path = tmp_path / "ckpt.pt"
    sd = _original_sd()
    if case == "not-a-state-dict":
        _save([1, 2, 3], path)
    elif case == "needs-code":
        _save({"args": Namespace(n_layer=1), **sd}, path)  # pickles a class: weights_only refuses it
    elif case == "not-torch":
        path.write_bytes(b"these are not the weights you are looking for")
    elif case == "other-architecture":
        from ntp_probe.model import GPT, GPTConfig

        _save(GPT(GPTConfig(vocab_size=14, block_size=18, n_layer=1, n_head=2, n_embd=16)).state_dict(), path)
    elif case == "missing-keys":
        del sd["layers.0.attn.keys_linear.weight"]
        _save(sd, path)
    elif case == "vocabulary-too-small":  # 8 tokens: N=4 node ids, too few for the G(2,3) its context says
        sd["embed_tokens.weight"] = sd["lm_head.weight"] = sd["embed_tokens.weight"][:8].clone()
        _save(sd, path)
    else:
        path = CKPT
    out = tmp_path / "out"
    argv = ["import", str(path), "--out", str(out)] + (["--heads", "2"] if args is not None else []) + (args or [])
    msg = one_line_error(runner.invoke(app, argv))
    assert expect in msg, msg
    assert not out.exists()


def test_a_pickle_that_runs_code_never_runs(tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"x": Evil()}, protocol=2))
    msg = one_line_error(runner.invoke(app, ["import", str(path), "--heads", "2", "--out", str(tmp_path / "o")]))
    assert "refused" in msg or "not a torch checkpoint" in msg
    assert not marker.exists() and not (tmp_path / "o").exists()


# ------------------------------------------------------------------------------------------------
# Hugging Face


def test_hf_round_trip_gives_identical_logits(trained, imported, tmp_path):
    """export --to hf, then import --from hf: the same model, bit for bit (a trained one, and a tanh-GELU one)."""
    for lm in (trained("next-token"), load(imported)):
        folder, back = tmp_path / f"hf-{lm.model.config.activation}", tmp_path / f"back-{lm.model.config.activation}"
        hf.export_hf(lm, folder)
        assert {p.name for p in folder.iterdir()} == set(hf.EXPORT_FILES)
        cfg = json.loads((folder / "config.json").read_text())
        assert cfg["model_type"] == "gpt2" and cfg["activation_function"] == hf.GELU_OUT[lm.model.config.activation]
        hf.import_hf(folder, back)
        lb = load(back)
        x = inputs(lm)
        assert torch.equal(logits(lm, x), logits(lb, x))
        assert lb.task == lm.task and lb.objective == lm.objective and lb.model.config == lm.model.config


@pytest.mark.slow  # two evaluations of 2,000 graphs (~25 s on 2 busy cores)
def test_hf_round_trip_eval_equals_the_shipped_models(tmp_path):
    """eval on 2,000 graphs of the shipped g2-5-next-token: the round-tripped model's figures are the original's."""
    from ntp_probe.evaluate import evaluate
    from ntp_probe.task import generate_set

    lm = load("g2-5-next-token")
    hf.export_hf(lm, tmp_path / "hf")
    hf.import_hf(tmp_path / "hf", tmp_path / "back")
    lb = load(tmp_path / "back")
    assert lb.meta["card"] == lm.meta["card"] and lb.meta["training"] == lm.meta["training"]
    graphs = generate_set(lm.task.topologies, lm.task.nodes, 2000, seed=12345)
    a, b = evaluate(lm, graphs), evaluate(lb, graphs)
    a.pop("seconds"), b.pop("seconds")
    assert a == b and a["count"] == 2000


def test_transformers_reads_the_export(trained, imported, tmp_path):
    transformers = pytest.importorskip("transformers")
    for lm in (trained("next-token"), trained("reverse"), load(imported)):
        folder = tmp_path / lm.objective.name / lm.model.config.activation
        hf.export_hf(lm, folder)
        model = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
        x = inputs(lm)
        with torch.no_grad():
            theirs = model(x).logits
        assert torch.allclose(theirs, logits(lm, x), rtol=0, atol=TOL), (theirs - logits(lm, x)).abs().max()
    tok = transformers.AutoTokenizer.from_pretrained(folder)  # the tokenizer description: the original's text, our ids
    kept = json.loads((FIXTURE / "tokens.json").read_text())
    assert [tok(line)["input_ids"] for line in kept["lines"]] == kept["ids"]


def test_a_gpt2_trained_elsewhere_imports(tmp_path):
    """A GPT2LMHeadModel made by transformers on path-star ids (its tanh GELU, its context 18 = G(2,3)) imports with
    nothing asked, and gives its logits."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=14, n_positions=18, n_embd=16, n_layer=2, n_head=2)
    theirs = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for p in theirs.parameters():
            p.normal_(0, 0.3)
    theirs.save_pretrained(tmp_path / "gpt2")
    r = runner.invoke(app, ["import", str(tmp_path / "gpt2"), "--from", "hf", "--out", str(tmp_path / "m")])
    assert r.exit_code == 0, r.output
    lm = load(tmp_path / "m")
    assert (lm.task.degree, lm.task.path_len, lm.task.nodes) == (2, 3, 10) and lm.model.config.activation == "gelu_tanh"
    x = inputs(lm)
    with torch.no_grad():
        want = theirs(x).logits
    assert torch.allclose(logits(lm, x), want, rtol=0, atol=TOL), (logits(lm, x) - want).abs().max()


def _folder(tmp_path: Path, lm) -> Path:
    folder = tmp_path / "hf"
    hf.export_hf(lm, folder)
    return folder


@pytest.mark.parametrize("case, expect", [
    ("other-architecture", "describes a 'llama' model ('LlamaForCausalLM'); only the GPT-2 architecture"),
    ("garbage-config", "config.json: not valid JSON"),
    ("config-not-object", "holds list, not a JSON object"),
    ("config-bad-size", "n_embd is 'wide', not a whole number"),
    ("other-activation", "activation_function 'relu'"),
    ("no-weights", "no model.safetensors"),
    ("garbage-weights", "not a readable safetensors file"),
    ("missing-tensor", "missing GPT-2 tensors: h.0.attn.c_attn.weight"),
    ("tokenizer-numbering", "numbers '3' as 10"),
    ("not-a-folder", "no such folder"),
    ("vocabulary-not-N", "not -N 50"),
])
def test_bad_hf_folders_are_one_line_and_write_nothing(trained, tmp_path, case, expect):
    folder = _folder(tmp_path, trained("next-token"))
    cfg = json.loads((folder / "config.json").read_text())
    extra = []
    if case == "other-architecture":
        cfg.update(model_type="llama", architectures=["LlamaForCausalLM"])
    elif case == "config-bad-size":
        cfg["n_embd"] = "wide"
    elif case == "other-activation":
        cfg["activation_function"] = "relu"
    elif case == "vocabulary-not-N":
        del cfg[hf.META_KEY]
        extra = ["-N", "50", "-d", "2", "-l", "3"]
    if case == "garbage-config":
        (folder / "config.json").write_text("{'model_type': gpt2")
    elif case == "config-not-object":
        (folder / "config.json").write_text("[1, 2]")
    else:
        (folder / "config.json").write_text(json.dumps(cfg))
    if case == "no-weights":
        (folder / "model.safetensors").unlink()
    elif case == "garbage-weights":
        (folder / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}")
    elif case == "missing-tensor":
        sd = load_file(str(folder / "model.safetensors"))
        del sd["transformer.h.0.attn.c_attn.weight"]
        save_file(sd, str(folder / "model.safetensors"))
    elif case == "tokenizer-numbering":
        tj = json.loads((folder / "tokenizer.json").read_text())
        tj["model"]["vocab"]["|"], tj["model"]["vocab"]["3"] = 3, 10
        (folder / "tokenizer.json").write_text(json.dumps(tj))
    src = tmp_path / "nowhere" if case == "not-a-folder" else folder
    out = tmp_path / "out"
    msg = one_line_error(runner.invoke(app, ["import", str(src), "--from", "hf", "--out", str(out), *extra]))
    assert expect in msg, msg
    assert not out.exists()


@pytest.mark.parametrize("name, expect", [
    ("g2-5-mamba-next-token", "is a mamba model"),
    ("g2-5-bst", "belief state transformer"),
    ("g2-5-multi-token", "has 4 output heads"),
    ("g2-5-mlm-u", "attends both ways"),
])
def test_what_gpt2_cannot_hold_is_refused(tmp_path, name, expect):
    out = tmp_path / "hf"
    msg = one_line_error(runner.invoke(app, ["export", name, "--to", "hf", "--out", str(out)]))
    assert expect in msg and not out.exists()


def test_readme_transformers_example_runs(tmp_path, monkeypatch, capsys):
    """The README's "Your own models" Python example, as written, on the folder its bash block exports."""
    pytest.importorskip("transformers")
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme[readme.index("## Your own models"):]
    code = section[section.index("```python\n") + len("```python\n"):]
    code = code[: code.index("```")]
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["export", "g2-5-next-token", "--to", "hf", "--out", "hf/g2-5-next-token"])
    assert r.exit_code == 0, r.output
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert printed[-2:] == ["32 3 19 47 12", "3 (1, 31, 128)"]  # ntp-probe's own greedy answer for that graph
    from ntp_probe.probing import ProbeSession, parse_for_model

    lm = load("g2-5-next-token")
    s = ProbeSession(lm, parse_for_model("32,3|16,12|3,19|32,34|34,6|6,16|19,47|47,28/32,12=32,34,6,16,12", lm))
    assert " ".join(map(str, s.tokens)) == printed[-2]


def test_transformer_lens_export_of_a_tanh_gelu_model(imported):
    pytest.importorskip("transformer_lens")
    from ntp_probe.export import to_hooked_transformer

    lm = load(imported)
    hooked = to_hooked_transformer(lm)
    assert hooked.cfg.act_fn == "gelu_new"
    x = inputs(lm)
    with torch.no_grad():
        # TransformerLens sums in its own order (einsums per head): up to 1.3e-5 apart on these large random weights
        assert torch.allclose(hooked(x), logits(lm, x), rtol=0, atol=5 * TOL)


def test_out_is_never_the_source(trained, imported, tmp_path):
    lm = trained("next-token")
    folder = _folder(tmp_path, lm)
    for where, argv in ((folder, ["import", str(folder), "--from", "hf"]), (imported, ["export", str(imported), "--to", "hf"])):
        before = {p.name: p.read_bytes() for p in where.iterdir()}
        r = runner.invoke(app, [*argv, "--out", str(where), "--force"])
        assert "is where the model is read from" in one_line_error(r)
        assert {p.name: p.read_bytes() for p in where.iterdir()} == before
    (tmp_path / "file").write_text("x")
    r = runner.invoke(app, ["export", str(lm.path), "--to", "hf", "--out", str(tmp_path / "file")])
    assert "is a file, not a directory" in one_line_error(r)


def test_no_warm_start_from_a_tanh_gelu_model(imported, tmp_path):
    """train --init-from an imported (tanh-GELU) model would silently change its function: refused in one line."""
    r = runner.invoke(app, ["train", "-d", "2", "-l", "3", "-n", "10", "--layers", "1", "--d-model", "16", "--heads", "2",
                            "--steps", "2", "--init-from", str(imported), "--out", str(tmp_path / "run")])
    assert "its MLP's GELU is gelu_tanh" in one_line_error(r)
    assert not (tmp_path / "run" / MODEL_FILE).exists()
