import pytest

from conftest import FIXTURES
from ntp_probe.errors import GraphError
from ntp_probe.task import Graph, format_human, format_line, format_lines, generate, parse, parse_line, read_lines
from ntp_probe.tokenizer import Tokenizer

EXAMPLE = "32,3|16,12|3,19|32,34|34,6|6,16|19,47|47,28/32,12=32,34,6,16,12"


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("deg_*.txt")))
def test_fixture_lines_round_trip_byte_exact(name):
    raw = (FIXTURES / name).read_text()
    graphs = read_lines(FIXTURES / name)
    assert "\n".join(format_line(g) for g in graphs) + "\n" == raw
    for g in graphs:  # the published answer is the path found in the graph, and the graphs are path-stars
        assert g.find_path() == g.answer
        assert g.ood_reasons() == []


def test_example_tokens_and_lengths():
    g = parse(EXAMPLE)
    tok = Tokenizer(50)
    q = tok.question(g)
    assert q[:6] == [32, 3, 50, 16, 12, 50]
    assert q[-4:] == [52, 32, 12, 51]
    assert len(q) == 27 and len(q) + len(g.path) == 32
    assert g.path == (32, 34, 6, 16, 12)
    assert g.topology() == (2, 5)


def test_human_format_example_and_round_trip():
    g = parse("2→1, 0→10, 9→3, 5→4, 4→6, 3→0, 1→7, 9→2, 9→5 || find(9 → 7)")
    assert (g.start, g.goal) == (9, 7)
    assert g.path == (9, 2, 1, 7)
    assert parse(format_human(g)) == g
    # ASCII arrows, newlines, and the bare "s g" query
    g2 = parse("2->1\n0 -> 10\n9->3, 5->4, 4->6\n3->0, 1->7, 9->2, 9->5\n9 7")
    assert g2.edges == g.edges and (g2.start, g2.goal) == (9, 7)
    assert parse("2 → 1, 9 → 2 || find( 9 -> 1 )").path == (9, 2, 1)


def test_question_only_line():
    g = parse_line("1,2|0,1/0,2")
    assert g.answer is None and g.path == (0, 1, 2)
    assert format_line(g, with_answer=False) == "1,2|0,1/0,2"


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("0,1|1,x/0,1", "'x' is not a node id"),
        ("0,1|1,2/0,2", None),
        ("0,1|1,60/0,60", "out of range"),
        ("0,1|1,1/0,1", "self-loop"),
        ("0,1|0,1/0,1", "duplicate edge"),
        ("0,1|1,2/0,7", "goal 7 is not in the graph"),
        ("0,1|1,2/7,2", "start 7 is not in the graph"),
        ("0,1|1,2", "missing '/'"),
        ("0,1|1,2/0", "expected 's,g'"),
        ("0,1|1;2/0,2", "expected 'u,v'"),
        ("0→1, 1→2 || find(0 → ?)", "'?' is not a node id"),
        ("0→1, 1→2, 1 2 || find(0 → 2)", "edge 3"),
        ("0→1, 1→2", "missing the query"),
        ("0→1, 2→3 || find(0 → 3)", "not reachable"),
        ("0→-1 || find(0 → -1)", "negative"),
        ("", "empty"),
    ],
)
def test_parse_errors_name_the_problem(text, fragment):
    if fragment is None:
        assert parse(text, nodes=50).path == (0, 1, 2)
        return
    with pytest.raises(GraphError) as e:
        parse(text, nodes=50)
    assert fragment in str(e.value)
    assert "\n" not in str(e.value)


def test_error_names_the_edge():
    with pytest.raises(GraphError, match=r"edge 2 \('1→x'\)"):
        parse("0→1, 1→x || find(0 → 1)")


def test_generation_is_seeded_and_well_formed():
    a = format_lines(generate(2, 5, 50, 500, seed=7))
    b = format_lines(generate(2, 5, 50, 500, seed=7))
    c = format_lines(generate(2, 5, 50, 500, seed=8))
    assert a == b and a != c
    for line in a:
        g = parse_line(line, nodes=50)
        assert g.find_path() == g.answer
        assert g.ood_reasons(2, 5) == []
        assert len(g.nodes) == 2 * 4 + 1
        assert len(g.path) == 5 and g.goal == g.path[-1]


def test_goal_arm_is_uniform():
    batch = generate(3, 4, 30, 3000, seed=0)
    counts = [0, 0, 0]
    for g in batch.graphs():
        first = g.path[1]
        counts[sorted(g.children(g.start)).index(first)] += 1
    assert all(800 < c < 1200 for c in counts)


def test_ood_reasons():
    unequal = parse("0→1, 1→2, 0→3 || find(0 → 2)")
    assert any("unequal" in r for r in unequal.ood_reasons())
    cycle = parse("0→1, 1→2, 2→0, 0→3, 3→4 || find(0 → 4)")
    assert cycle.ood_reasons()
    assert parse("0→1, 1→2, 0→3, 3→4 || find(0 → 4)").ood_reasons(2, 3) == []
    assert any("degree 2" in r for r in parse("0→1, 1→2, 0→3, 3→4 || find(0 → 4)").ood_reasons(5, 3))


def test_read_lines_errors(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("0,1|1,2/0,2=0,1,2\n0,1|1,2/0,9=0,1,2\n")
    with pytest.raises(GraphError, match=r"bad.txt:2: query: goal 9"):
        read_lines(bad)
    with pytest.raises(GraphError, match="no such file"):
        read_lines(tmp_path / "missing.txt")


def test_graph_helpers():
    g = Graph(((0, 1), (1, 2), (0, 3), (3, 4)), 0, 4)
    assert g.children(0) == [1, 3] and g.parents(4) == [3]
    assert g.arms() == [[1, 2], [3, 4]] and g.goal_arm() == 1


def test_graph_batch_slices_indexes_and_moves():
    import torch

    from ntp_probe.task import GraphBatch

    b = generate(2, 3, 10, 6, seed=2)
    sub = b[1:4]
    assert isinstance(sub, GraphBatch) and len(sub) == 3 and list(sub.graphs()) == list(b.graphs())[1:4]
    picked = b[torch.tensor([5, 0])]
    assert picked.path.tolist() == [b.path[5].tolist(), b.path[0].tolist()]
    moved = b.to("cpu")
    assert all(torch.equal(getattr(moved, k), getattr(b, k)) for k in ("edges", "start", "goal", "path"))
