"""Property-based input fuzzing (issue 7): graph text in both formats, data files, ``--force`` lists;
(issue 15) model-file headers and session files with random JSON shapes and values in every field, and the
path-star check of clever-hans against ``Graph.ood_reasons``.

Every generated input either parses or raises ``GraphError`` (the project's own error type) with a
one-line message that names the problem; nothing else may escape. Valid graphs round-trip exactly:
format -> parse -> format is the identity. The counts and outcomes are tallied in ``STATS`` and, with
NTP_FUZZ_STATS=FILE set, written as JSON for docs/reliability.md.
"""

import json
import os
import tempfile
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ntp_probe.checkpoint import TaskSpec
from ntp_probe.errors import GraphError
from ntp_probe.probing import parse_force
from ntp_probe.task import MAX_ID, MAX_TEXT, Graph, format_human, format_line, parse, parse_human, parse_line, read_lines

STATS: Counter = Counter()


def fuzz(n: int) -> settings:
    """``n`` examples a run (times NTP_FUZZ_SCALE, for a deeper run by hand)."""
    n *= int(os.environ.get("NTP_FUZZ_SCALE", "1"))
    return settings(max_examples=n, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module", autouse=True)
def _write_stats():
    yield
    if path := os.environ.get("NTP_FUZZ_STATS"):
        Path(path).write_text(json.dumps(dict(sorted(STATS.items())), indent=1) + "\n")


def check_outcome(kind: str, fn, *args):
    """Run ``fn``: a result, or a GraphError with a short one-line message. Anything else fails the test."""
    STATS[f"{kind}: inputs"] += 1
    try:
        result = fn(*args)
    except GraphError as e:
        msg = str(e)
        assert msg and "\n" not in msg and "\r" not in msg, repr(msg)
        assert len(msg) < 400, msg
        assert "Traceback" not in msg
        STATS[f"{kind}: GraphError"] += 1
        return None
    STATS[f"{kind}: parsed"] += 1
    return result


# ------------------------------------------------------------------------------------------------
# Strategies

small_ids = st.integers(0, 60)
any_ids = st.one_of(small_ids, st.integers(0, 10**6), st.integers(10**17, MAX_ID))


@st.composite
def graphs(draw, ids=any_ids):
    """A valid graph: a start->goal path of distinct ids plus extra edges (no self-loops or duplicates), shuffled."""
    n = draw(st.integers(2, 8))
    path = draw(st.lists(ids, min_size=n, max_size=n, unique=True))
    edges = list(zip(path, path[1:]))
    pool = path + draw(st.lists(ids, max_size=6))
    for u, v in draw(st.lists(st.tuples(st.sampled_from(pool), st.sampled_from(pool)), max_size=8)):
        if u != v and (u, v) not in edges:
            edges.append((u, v))
    draw(st.randoms(use_true_random=False)).shuffle(edges)
    g = Graph(tuple(edges), path[0], path[-1])
    return Graph(g.edges, g.start, g.goal, g.find_path())


STRAY = ["→", "->", "⟶", "⇒", "=>", "←", "↦", "-", "–", "—", "−", "‐", "|", "||", "/", "=", ",", ";", " ", "\t", "\n", "\n\n",
         "\r\n", "\x00", "find(", ")", "(", "٣", "²", "𝟘", "١٢", "-1", "-0", "9" * 30, "9" * 5000, "1e3", "0x1f", "+5", "1.5",
         "\u200b", "\u2028", "\ufeff", "é", "🙂", "'", '"', "\\", "$", "?", "nan", "None", "find", "FIND(0 → 1)"]


@st.composite
def mutated(draw):
    """A valid graph's text (either format), then 1-4 corruptions: cut, stray text, deletion, doubled or missing separators."""
    g = draw(graphs(ids=st.one_of(small_ids, st.integers(0, 10**20))))
    text = draw(st.sampled_from([format_line(g), format_line(g, with_answer=False), format_human(g)]))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["truncate", "insert", "delete", "double", "drop", "swap", "blank-lines", "replace"]))
        i = draw(st.integers(0, len(text)))
        if op == "truncate":
            text = text[:i]
        elif op == "insert":
            text = text[:i] + draw(st.one_of(st.sampled_from(STRAY), st.text(max_size=3))) + text[i:]
        elif op == "delete":
            text = text[:i] + text[i + draw(st.integers(1, 5)):]
        elif op in ("double", "drop"):
            sep = draw(st.sampled_from(["||", "|", "/", "=", ",", "→", "find("]))
            text = text.replace(sep, sep * 2 if op == "double" else "", draw(st.integers(1, 3)))
        elif op == "swap":
            a, b = draw(st.sampled_from([("→", "—"), ("→", "–"), ("->", "−>"), (",", "，"), ("|", "¦"), ("/", "⁄"), ("0", "٠"),
                                         ("1", "¹"), ("2", "２"), ("||", "| |"), ("→", "<-"), (",", "-")]))
            text = text.replace(a, b)
        elif op == "blank-lines":
            text = text[:i] + "\n \n\t\n" + text[i:]
        else:  # replace a number with a negative, huge or odd one
            odd = draw(st.sampled_from(["-3", "-0", "9" * 25, "9" * 4400, "", " ", "0" * 50 + "7"]))
            text = text.replace(str(g.start), odd, 1)
    return text


# ------------------------------------------------------------------------------------------------
# Valid graphs round-trip


@fuzz(300)
@given(graphs())
def test_valid_graphs_round_trip_both_formats(g):
    line = format_line(g)
    assert parse(line) == g and parse_line(line) == g
    assert format_line(parse(line)) == line
    q = format_line(g, with_answer=False)
    assert format_line(parse(q), with_answer=False) == q
    human = format_human(g)
    h = parse(human)
    assert h == Graph(g.edges, g.start, g.goal) and format_human(h) == human
    assert parse_human(human) == h
    STATS["valid graphs: round-tripped (3 texts each)"] += 1


@fuzz(100)
@given(graphs(ids=small_ids), st.sampled_from(["", " ", "  ", "\t"]), st.sampled_from([",", ", ", ";", "\n", ",\n\n"]),
       st.sampled_from(["→", "->", "⟶", "⇒", "=>"]))
def test_valid_human_variants_parse_to_the_same_graph(g, blank, sep, arrow):
    edges = sep.join(f"{blank}{u}{blank}{arrow}{blank}{v}{blank}" for u, v in g.edges)
    for query in (f"|| find({g.start} {arrow} {g.goal})", f"\n{g.start} {g.goal}", f"\nFIND( {g.start},{g.goal} )"):
        assert parse(edges + query) == Graph(g.edges, g.start, g.goal)
    STATS["valid graphs: human-format spellings"] += 3


# ------------------------------------------------------------------------------------------------
# Malformed graph text


def _check_parse(kind: str, text: str, nodes: int | None = None) -> None:
    g = check_outcome(kind, parse, text, nodes)
    if g is not None:  # whatever parses is a sound graph that round-trips
        assert all(u != v for u, v in g.edges) and len(set(g.edges)) == len(g.edges)
        path = g.path
        edges = set(g.edges)
        assert path[0] == g.start and path[-1] == g.goal and all(e in edges for e in zip(path, path[1:]))
        assert all(0 <= x <= MAX_ID for e in g.edges for x in e)
        if nodes is not None:
            assert all(x < nodes for e in g.edges for x in e)
        assert parse_line(format_line(g)) == Graph(g.edges, g.start, g.goal, path)


@fuzz(900)
@given(mutated(), st.sampled_from([None, 50]))
def test_mutated_graph_text(text, nodes):
    _check_parse("mutated graph text", text, nodes)


@fuzz(300)
@given(st.text(alphabet=st.sampled_from(list("0123456789,|/= →->find()\n\t-٣²—–")) | st.characters(), max_size=80))
def test_random_text(text):
    _check_parse("random text", text)


@fuzz(40)
@given(st.sampled_from(["edges", "blanks", "digits", "arrows", "pipes", "over", "chain"]), st.integers(1_000, MAX_TEXT))
def test_enormous_inputs_are_fast(kind, size):
    unit = {"edges": "0,1|", "blanks": " ", "digits": "7", "arrows": "→", "pipes": "|", "over": "x", "chain": ""}[kind]
    body = unit * (size // len(unit)) if unit else ""
    if kind == "chain":  # a valid 100k-character graph: one long path
        k = size // 12
        body = "|".join(f"{i},{i + 1}" for i in range(k)) + f"/0,{k}"
    text = {"edges": body + "0,1/0,1", "blanks": "0→1" + body + "1 || find(0" + body + "x)", "digits": "0," + body + "/0,1",
            "arrows": "0" + body + "1 || find(0 → 1)", "pipes": body, "over": body * 2 + "y", "chain": body}[kind]
    t0 = time.perf_counter()
    try:
        parse(text)
    except GraphError:
        pass
    assert time.perf_counter() - t0 < 5.0, "parsing must stay linear in the input length (quadratic took 45 s and more)"
    _check_parse("enormous text (1k-200k characters)", text)


@fuzz(100)
@given(st.lists(st.one_of(mutated(), st.builds(format_line, graphs(ids=small_ids))), min_size=1, max_size=5),
       st.binary(max_size=64), st.sampled_from(["text", "bytes", "mixed"]))
def test_data_files(lines, junk, kind):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "graphs.txt"
        if kind == "text":
            p.write_bytes("\n".join(lines).encode("utf-8", "surrogatepass"))  # lone surrogates: invalid UTF-8
        elif kind == "bytes":
            p.write_bytes(junk)
        else:
            p.write_bytes("\n".join(lines).encode("utf-8", "surrogatepass") + b"\n" + junk)
        check_outcome("data file (read_lines)", read_lines, p, 50)


def test_unreadable_data_files(tmp_path):
    (tmp_path / "dir.txt").mkdir()
    (tmp_path / "bin.txt").write_bytes(bytes(range(256)))
    (tmp_path / "empty.txt").write_text("\n\n")
    for name, fragment in (("dir.txt", "cannot read graphs"), ("bin.txt", "not a text file"), ("empty.txt", "no graphs"),
                           ("missing.txt", "no such file")):
        with pytest.raises(GraphError, match=fragment):
            read_lines(tmp_path / name)
    STATS["data file (read_lines): unreadable files"] += 4
    # line numbers count '\n' only, as editors do (a U+2028 inside a line is that line's problem)
    (tmp_path / "ls.txt").write_text("0,1|1,2/0,2\n0,1\u20281,2/0,2\n")
    with pytest.raises(GraphError, match=r"ls.txt:2: "):
        read_lines(tmp_path / "ls.txt")


# ------------------------------------------------------------------------------------------------
# --force lists

FAKE = SimpleNamespace(task=TaskSpec(2, 3, 10))
FORCE_GRAPH = parse("0→1, 1→2, 0→3, 3→4 || find(0 → 4)")


@fuzz(300)
@given(st.one_of(
    st.text(alphabet=st.sampled_from(list("0123456789, -\t٣²—|/=x")), max_size=20),
    st.lists(st.one_of(st.integers(-5, 15).map(str), st.sampled_from(STRAY)), max_size=6).map(",".join),
    st.text(max_size=20),
))
def test_force_lists(text):
    out = check_outcome("--force list", parse_force, text, FAKE, FORCE_GRAPH)
    if out is not None:
        assert 1 <= len(out) <= 3 and all(x in FORCE_GRAPH.nodes for x in out)


def test_force_list_specific_cases():
    for text, fragment in (("٣", "ASCII digits"), ("²", "ASCII digits"), ("--1", "not a node id"), ("-1", "negative"),
                           ("9" * 5000, "too large"), ("1" * (MAX_TEXT + 1), "characters"), ("", "empty"), (" , ,", "empty"),
                           ("0,1,2,3", "only 3 positions"), ("10", "out of range"), ("5", "not in the graph"),
                           ("0x1", "not a node id")):
        with pytest.raises(GraphError, match=fragment):
            parse_force(text, FAKE, FORCE_GRAPH)
    assert parse_force("0 1\t2", FAKE, FORCE_GRAPH) == [0, 1, 2]
    STATS["--force list: specific cases"] += 13


def test_specific_parse_cases():
    """The cases fuzzing found (each was a traceback, a wrong parse, or minutes of CPU before the fix)."""
    cases = {
        "٣,1|1,2/٣,2": "ASCII digits",  # was parsed as 3
        "0→1, 1→2 || find(0 → ٢)": "ASCII digits",  # was parsed as 2
        "𝟘,1|1,2/𝟘,2": "ASCII digits",  # was parsed as 0
        "9" * 5000 + ",1|1,2/0,2": "too large",  # was ValueError (int() digit limit)
        "0,1|1,2/0,2=" + "9" * 5000: "too large",
        "0," + "9" * 30 + "|1,2/0,2": "too large",
        "0,-" + "9" * 5000 + "|1,2/0,2": "negative",
        "0,1|1,2/0,2=5,6,7": "begins at 5",  # a wrong answer was accepted as is
        "0,1|1,2/0,2=0,1": "ends at 1",
        "0,1|1,0|1,2/0,2=0,1,0,1,2": "visits a node twice",
        "0,1|1,2|0,3/0,2=0,3,2": "3→2",
    }
    for text, fragment in cases.items():
        with pytest.raises(GraphError, match=fragment):
            parse(text)
    # quadratic regexes: these took 45 s and more before the fix
    for text in ("0→1" + " " * 90_000 + "1 || find(0 → 1)", "1 " + " " * 90_000 + "|| find(0" + " " * 9000 + "x)",
                 "find(" + " " * 99_000, "0 → 1\n" + " " * 99_000 + "7"):
        t0 = time.perf_counter()
        with pytest.raises(GraphError):
            parse(text)
        assert time.perf_counter() - t0 < 1.0
    STATS["specific parse cases"] += len(cases) + 4


# ------------------------------------------------------------------------------------------------
# Model headers and session files (issue 15): random JSON shapes and values in every field

from hypothesis import assume  # noqa: E402

from hostile import GRAPH as TINY_GRAPH  # noqa: E402
from hostile import good_meta, session_data, tiny_gpt, write_model  # noqa: E402
from ntp_probe import checkpoint as ckpt  # noqa: E402
from ntp_probe.errors import NtpProbeError  # noqa: E402
from ntp_probe.metrics import path_star_mask  # noqa: E402
from ntp_probe.probing import load_session  # noqa: E402
from ntp_probe.task import GraphBatch, generate  # noqa: E402

ODD_INTS = [0, 1, -1, 2, 3, 4, 10, 14, 17, 18, 32, 4096, 10**6, 2**31, 2**63, 2**64, 10**30, -(2**63)]
ODD_FLOATS = [0.0, 0.5, 1.5, 4.5, -0.0, 1e-45, 1e999, -1e999, float("nan"), 1e300]
scalars = (st.none() | st.booleans() | st.sampled_from(ODD_INTS) | st.integers(-(2**70), 2**70) | st.sampled_from(ODD_FLOATS)
           | st.floats() | st.text(max_size=6) | st.sampled_from(["gpt", "mamba", "mlm-u", "multi-token", "next-token", "1"]))
json_values = st.recursive(scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=3),
                           max_leaves=6)


def _deep(depth: int, kind: str) -> str:
    return "[" * depth + "]" * depth if kind == "list" else '{"a":' * depth + "1" + "}" * depth


def _dumps(x) -> str:
    return json.dumps(x)  # NaN and Infinity written as Python's json does (and reads back)


def check_loads(kind: str, fn, *args):
    """``fn`` returns, or raises NtpProbeError with a short one-line message, in seconds (no hang); nothing else."""
    STATS[f"{kind}: inputs"] += 1
    t0 = time.perf_counter()
    try:
        result = fn(*args)
    except NtpProbeError as e:
        msg = str(e)
        assert msg and "\n" not in msg and "\r" not in msg and len(msg) < 400, repr(msg)
        STATS[f"{kind}: NtpProbeError"] += 1
        result = None
    else:
        STATS[f"{kind}: loaded"] += 1
    assert time.perf_counter() - t0 < 10.0, f"{kind}: took {time.perf_counter() - t0:.1f} s on {str(args)[:300]}"
    return result


BASE_META = json.dumps(good_meta())
CONFIG_KEYS = ["vocab_size", "block_size", "n_layer", "n_head", "n_embd", "dropout", "bias", "n_future", "arch", "causal",
               "d_state", "d_conv", "expand"]


@st.composite
def model_headers(draw):
    meta = json.loads(BASE_META)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["config", "config", "config", "task", "objective", "drop", "section", "whole", "deep"]))
        sec = {"config": "config", "task": "task", "objective": "objective"}.get(op)
        if sec and not isinstance(meta.get(sec), dict):
            continue
        if op == "config":
            meta["config"][draw(st.sampled_from(CONFIG_KEYS))] = draw(json_values)
        elif op == "task":
            meta["task"][draw(st.sampled_from(["degree", "path_len", "nodes"]))] = draw(json_values)
        elif op == "objective":
            meta["objective"][draw(st.sampled_from(["name", "n_future", "mix"]))] = draw(json_values)
        elif op == "drop":
            sec = draw(st.sampled_from(["config", "task", "objective"]))
            if isinstance(meta.get(sec), dict) and meta[sec]:
                meta[sec].pop(draw(st.sampled_from(sorted(meta[sec]))))
        elif op == "section":
            meta[draw(st.sampled_from(["config", "task", "objective", "format", "card", "metrics", "training"]))] = draw(json_values)
        elif op == "whole":
            return _dumps(draw(json_values))
        else:
            return _deep(draw(st.sampled_from([65, 1000, 100_000])), draw(st.sampled_from(["list", "dict"])))
    return _dumps(meta)


@fuzz(150)
@given(model_headers())
def test_model_headers(header):
    with tempfile.TemporaryDirectory() as d:
        path = write_model(Path(d) / "m.safetensors", header)
        lm = check_loads("model header", ckpt.load, path)
    if lm is not None:  # whatever loads, runs: one greedy decode of a graph of its task
        from ntp_probe.decoding import greedy

        b = generate(lm.task.degree, lm.task.path_len, lm.task.nodes, 2, seed=0)
        assert greedy(lm, lm.tokenizer.questions(b)).tokens.shape == (2, lm.task.path_len)


SESSION_KEYS = ["format", "model", "graph", "forced", "cursor", "strategy", "extra"]
STRATEGY_KEYS = ["kind", "temperature", "top_k", "beam", "tries", "seed", "width"]


@st.composite
def session_files(draw, model_path):
    d = session_data(model_path)
    kinds = st.sampled_from(["greedy", "sample", "beam", "verify"])
    d["strategy"]["kind"] = draw(kinds)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["top", "strategy", "strategy", "forced", "forced", "whole", "deep"]))
        if op == "top":
            d[draw(st.sampled_from(SESSION_KEYS))] = draw(json_values)
        elif op == "strategy" and isinstance(d.get("strategy"), dict):
            d["strategy"][draw(st.sampled_from(STRATEGY_KEYS))] = draw(st.one_of(json_values, st.integers(0, 2000)))
        elif op == "forced" and isinstance(d.get("forced"), dict):
            key = draw(st.one_of(st.sampled_from(["0", "1", "2", "3", "01", "-1", "x", "", "٣", "9" * 30]), st.text(max_size=3)))
            d["forced"][key] = draw(st.one_of(st.integers(-2, 12), json_values))
        elif op == "whole":
            return _dumps(draw(json_values))
        elif op == "deep":
            return _deep(draw(st.sampled_from([9, 1000, 100_000])), draw(st.sampled_from(["list", "dict"])))
    return _dumps(d)


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    """A tiny real model (untrained weights: what a session decodes does not matter here, only how its file is read)."""
    d = tmp_path_factory.mktemp("fuzz-model")
    m = tiny_gpt()
    ckpt.save(d / "model.safetensors", m, good_meta(m))
    return ckpt.load(d / "model.safetensors")


@fuzz(150)
@given(data=st.data())
def test_session_files(tiny_lm, data):
    text = data.draw(session_files(tiny_lm.path))
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "s.json"
        f.write_text(text)
        s = check_loads("session file", load_session, f, None, [tiny_lm])
    if s is not None:
        assert s.graph.nodes == {0, 1, 2, 3, 4} and 0 <= s.cursor <= 3 and len(s.tokens) == 3
        assert all(0 <= p < 3 and 0 <= t < 10 for p, t in s.forced.items())


@st.composite
def near_path_stars(draw):
    """A G(d, l) path-star with 0-3 edges rewired (any id of N=12): sometimes still a path-star, mostly not."""
    d, l = draw(st.sampled_from([(2, 3), (2, 4), (3, 3)]))
    g = next(generate(d, l, 12, 1, seed=draw(st.integers(0, 10**6))).graphs())
    edges = list(g.edges)
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.integers(0, len(edges) - 1))
        u, v = edges[i]
        if draw(st.booleans()):
            u = draw(st.integers(0, 11))
        else:
            v = draw(st.integers(0, 11))
        edges[i] = (u, v)
    goal = draw(st.sampled_from([g.goal, *(v for _, v in edges)]))
    assume(len(set(edges)) == len(edges) and all(u != v for u, v in edges))
    h = Graph(tuple(edges), g.start, goal)
    path = h.find_path()
    assume(path is not None and len(path) == l)
    return Graph(h.edges, h.start, h.goal, path), d, l


@fuzz(200)
@given(near_path_stars())
def test_path_star_mask_agrees_with_ood_reasons(case):
    g, d, l = case
    in_dist = not g.ood_reasons(d, l)
    assert bool(path_star_mask(GraphBatch.from_graphs([g]), d, l, 12)[0]) == in_dist, (g, g.ood_reasons(d, l))
    STATS[f"path-star check: {'in' if in_dist else 'out of'} distribution"] += 1
