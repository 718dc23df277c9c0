import itertools
import json

import pytest
import torch
from typer.testing import CliRunner

from ntp_probe.cli import app
from ntp_probe.decoding import Strategy, beam_search, decode_with, greedy, valid_paths
from ntp_probe.errors import NtpProbeError, UsageError
from ntp_probe.evaluate import evaluate
from ntp_probe.probing import ProbeSession, load_session, parse_for_model
from ntp_probe.task import GraphBatch, generate, parse

GRAPH = "1→2, 0→1, 0→3, 3→4 || find(0 → 2)"


def brute_force_scores(lm, q):
    """Log-probability of every possible answer (V^L of them) by teacher-forced passes."""
    V, L = lm.model.config.vocab_size, lm.task.path_len
    answers = torch.tensor(list(itertools.product(range(V), repeat=L)))
    x = lm.objective.inputs(q.expand(len(answers), -1), answers, lm.tokenizer.dollar)
    lp = lm.model(x).logits[:, q.shape[1] - 1 :].float().log_softmax(-1)
    return answers, lp.gather(2, answers[:, :, None]).squeeze(2).sum(1)


@pytest.mark.parametrize("objective", ["next-token", "teacherless"])
def test_beam_search_matches_brute_force(trained, objective):
    lm = trained(objective)
    q = lm.tokenizer.questions(generate(2, 3, 10, 1, seed=4))
    V = lm.model.config.vocab_size
    with torch.no_grad():
        answers, scores = brute_force_scores(lm, q)
        seqs, beam_scores = beam_search(lm, q, width=V * V)  # wide enough to be exact for L = 3
    best = scores.topk(5)
    assert seqs[0, :5].tolist() == answers[best.indices].tolist()
    assert torch.allclose(beam_scores[0, :5], best.values, atol=1e-4)
    # width 1 is greedy
    assert torch.equal(beam_search(lm, q, width=1)[0][:, 0], greedy(lm, q).tokens)


def test_verifier_accepts_exactly_the_valid_paths():
    g = parse(GRAPH)
    b = GraphBatch.from_graphs([g])
    candidates = list(itertools.product([0, 1, 2, 3, 4, 5], repeat=3))
    ok = valid_paths(b.edges, b.start, b.goal, torch.tensor([candidates]), nodes=10)[0]
    accepted = [c for c, v in zip(candidates, ok.tolist()) if v]
    assert accepted == [(0, 1, 2)]


def test_verify_strategy_finds_the_path_and_counts_tries(trained):
    lm = trained("next-token")
    b = generate(2, 3, 10, 20, seed=9)
    greedy_res = evaluate(lm, b)
    res = evaluate(lm, b, strategy=Strategy("verify", tries=lm.model.config.vocab_size ** 3))  # every answer
    assert res["decode"] == "verify" and res["tries_mean"] >= 1
    assert res["accuracy"] >= greedy_res["accuracy"]
    assert res["tokens_per_graph"] == pytest.approx(res["tries_mean"] * 3)
    # with enough tries a perfect verifier always finds the (unique) path
    assert res["accuracy"] == 1.0


def test_sampling_is_seeded(trained):
    lm = trained("next-token")
    b = generate(2, 3, 10, 50, seed=2)
    q = lm.tokenizer.questions(b)
    a, _ = decode_with(lm, q, Strategy("sample", seed=3))
    c, _ = decode_with(lm, q, Strategy("sample", seed=3))
    assert torch.equal(a, c)
    cold, _ = decode_with(lm, q, Strategy("sample", temperature=1e-4))
    assert torch.equal(cold, greedy(lm, q).tokens)
    with pytest.raises(UsageError):
        Strategy("ouija")


def test_logit_lens_last_layer_is_the_model_output(trained):
    for objective in ("next-token", "teacherless"):
        lm = trained(objective)
        s = ProbeSession(lm, parse_for_model(GRAPH, lm))
        s.force(1, 3)
        for p in range(3):
            rows = s.layers(p)
            assert [r["layer"] for r in rows] == [1]  # the tiny model has one layer
            last = rows[-1]
            assert last["correct_prob"] == pytest.approx(s.steps[p].correct_prob, abs=1e-5)
            assert last["top"] == str(int(s.steps[p].probs.argmax()))


def test_session_round_trip(trained, tmp_path):
    lm = trained("next-token")
    s = ProbeSession(lm, parse_for_model(GRAPH, lm), strategy=Strategy("beam", beam=3))
    s.force(1, 3)
    s.back()
    s.save(tmp_path / "s.json")
    r = load_session(tmp_path / "s.json")
    assert r.forced == s.forced and r.cursor == s.cursor and r.graph == s.graph
    assert r.strategy == s.strategy and r.tokens == s.tokens
    # stale or bad files are clear errors
    data = json.loads((tmp_path / "s.json").read_text())
    data["model"] = "no-such-model"
    (tmp_path / "stale.json").write_text(json.dumps(data))
    with pytest.raises(NtpProbeError, match="stale session"):
        load_session(tmp_path / "stale.json")
    data = json.loads((tmp_path / "s.json").read_text())
    data["graph"] = "0,1|1,42/0,42"
    (tmp_path / "graph.json").write_text(json.dumps(data))
    with pytest.raises(NtpProbeError, match="out of range"):
        load_session(tmp_path / "graph.json")
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(NtpProbeError, match="not a session file"):
        load_session(tmp_path / "junk.json")


runner = CliRunner()


def test_cli_decode_options_and_session_files(trained, tmp_path):
    lm = trained("next-token")
    r = runner.invoke(app, ["eval", str(lm.path), "--count", "50", "--decode", "verify", "--tries", "4", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["decode"] == "verify" and {"tries_mean", "tokens_per_graph"} <= set(res)
    f = tmp_path / "s.json"
    r = runner.invoke(app, ["probe", str(lm.path), "--graph", GRAPH, "--force", "0,3", "--save", str(f), "--json", "--layers"])
    assert r.exit_code == 0, r.output
    first = json.loads(r.stdout)
    assert "layers" in first["steps"][0]
    r = runner.invoke(app, ["probe", "--load", str(f), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["tokens"] == first["tokens"]
    r = runner.invoke(app, ["probe", "--load", str(tmp_path / "missing.json")])
    assert r.exit_code == 2 and "no such session file" in r.stderr
    r = runner.invoke(app, ["eval", str(lm.path), "--decode", "psychic"])
    assert r.exit_code == 2 and "choose one of" in r.stderr


def test_inference_fixes_cli(trained):
    r = runner.invoke(app, ["inference-fixes", str(trained("next-token").path), str(trained("reverse").path),
                            "--count", "40", "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert [x["decode"] for x in rows] == ["greedy", "sample", "beam", "verify"] * 2


def test_reproduce_scores_models_with_inference_fixes(trained, tmp_path):
    nt, rev = trained("next-token").path, trained("reverse").path
    r = runner.invoke(app, ["reproduce", "--models", f"{nt},{rev}", "--count", "40", "--out", str(tmp_path),
                            "--report", "results.md", "--inference-fixes"], env={"COLUMNS": "80"})
    assert r.exit_code == 0, r.output
    tables = [line for line in r.output.splitlines()
              if not line.startswith(("scoring ", "report: ")) and "per position over" not in line]
    assert max(map(len, tables)) <= 80 and not any("…" in line for line in tables)  # long model paths fold, not cut
    text = (tmp_path / "results.md").read_text()
    fixes = text.split("## Inference-time fixes")[1].split("## Learning curves")[0]
    table = [line for line in fixes.splitlines() if line.startswith("| ") and "strategy" not in line]
    assert len(table) == 8  # 2 models × greedy, sample, beam, verify
    cells = [[c.strip() for c in line.split("|")[1:-1]] for line in table]
    assert [c[2].split()[0] for c in cells] == ["greedy", "sample", "beam", "verifier,"] * 2
    beam = cells[2]
    assert float(beam[6]) == 4 * 3  # W·L answer tokens per graph on G(2,3)
    assert (tmp_path / "curve-tiny-next-token0.png").stat().st_size > 1000
    assert "wrong arm: follows | then copies the goal" in text
