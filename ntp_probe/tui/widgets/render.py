"""Rich renderings of a probe session: the star, the answer, the confidence strip, the story line, and
the app's one number format (``num``).

Pure functions of a session (no model calls), so the app can render from the main thread while the
model works in a thread worker. Answer positions are named 1-based, "answer token k of n", everywhere.
"""

from __future__ import annotations

from rich.style import Style
from rich.text import Text

from ...fmt import fmt

FORCED = "bold magenta"
GOOD = "bold green"
LEGAL = "bold yellow"
BAD = "bold red"
DIM = "dim"
GOAL = "bold yellow"


def graph_key(g) -> tuple:
    return (tuple(g.edges), g.start, g.goal)


def token_class(step, token: int) -> str:
    """'correct', 'legal' (legal but wrong) or 'illegal' for a token at this step."""
    if step.correct is not None and token == step.correct:
        return "correct"
    if token in step.legal:
        return "legal"
    return "illegal"


CLASS_STYLE = {"correct": GOOD, "legal": LEGAL, "illegal": BAD}


def decoded_style(step) -> str:
    if step.forced:
        return FORCED
    return CLASS_STYLE[token_class(step, step.token)]


def star(s) -> Text:
    """The star as its arms: the start at the left, one arm a row, the goal marked, the decoded path coloured."""
    g = s.graph
    arms = g.arms()
    revealed = {}
    for st in s.steps:
        if st.position < s.cursor and st.token not in revealed:
            revealed[st.token] = st
    true = set(s.true_path)
    nodes = g.nodes
    w = max(len(s.token_str(n)) for n in nodes)

    def node(n: int) -> Text:
        label = s.token_str(n).rjust(w)
        st = revealed.get(n)
        if st is not None:
            style = FORCED + " reverse" if st.forced else (GOOD if n in true else BAD)
        else:
            style = "" if n in true else DIM
        t = Text(label, style=style)
        if st is not None and st.forced:
            t.append("*", style=FORCED)
        else:
            t.append(" ")
        return t

    rows = len(arms) if len(arms) % 2 else len(arms) + 1
    mid = rows // 2
    arm_rows = [r for r in range(rows) if not (len(arms) % 2 == 0 and r == mid)]
    lines = []
    start = node(g.start)
    pad = " " * (len(start.plain) + 1)
    for r in range(rows):
        line = Text()
        if r == mid:
            line.append_text(start)
            line.append("─")
        else:
            line.append(pad)
        if r in arm_rows:
            i = arm_rows.index(r)
            arm = arms[i]
            if rows == 1:
                conn = "─"
            elif r == 0:
                conn = "┌"
            elif r == rows - 1:
                conn = "└"
            elif r == mid:
                conn = "┼"
            else:
                conn = "├"
            line.append(conn + "─▶ ", style=DIM)
            for j, n in enumerate(arm):
                if j:
                    line.append("→ ", style=DIM)
                line.append_text(node(n))
            if g.goal in arm:
                line.append(" ◎ goal", style=GOAL)
        else:
            line.append("┤", style=DIM)
        lines.append(line)
    out = Text("\n").join(lines)
    if s.ood:
        out.append("\n⚠ " + "; ".join(s.ood), style="yellow")
    return out


def answer(s) -> Text:
    """The answer so far, in the model's order, with forced tokens marked ``*``."""
    t = Text()
    t.append(f"answer ({s.objective.answer_direction}) ", style=DIM)
    for st in s.steps:
        if st.position:
            t.append(" → ", style=DIM)
        if st.position < s.cursor:
            t.append(s.token_str(st.token) + ("*" if st.forced else ""), style=decoded_style(st))
        elif st.position == s.cursor:
            t.append("▮", style="reverse")
        else:
            t.append("·", style=DIM)
    t.append("   ")
    if s.cursor < s.length:
        t.append(f"{s.cursor} of {s.length} revealed", style=DIM)
    elif s.correct:
        t.append("✓ reaches the goal", style=GOOD)
    else:
        t.append("✗ wrong path", style=BAD)
    return t


def num(x, digits: int = 2, short: bool = False, signed: bool = False) -> str:
    """The app's one number format: probabilities and scores to ``digits`` places, None as "—";
    ``short`` drops the leading zero for the narrow confidence strip (".93", "1.0"); ``signed`` for gaps.
    Plain figures are the engine's ``fmt`` (tables and reports) with two decimals."""
    if x is None or isinstance(x, bool) or not isinstance(x, float):
        return fmt(None) if x is None else str(x)
    if short:
        return f"{x:.{digits}f}"[1:] if 0 <= x < 0.995 else "1.0"
    return f"{x:+.{digits}f}" if signed else fmt(x, digits)


BLOCKS = " ▏▎▍▌▋▊▉█"


def bar(p: float, width: int) -> str:
    cells = max(0.0, min(1.0, p)) * width
    full = int(cells)
    part = BLOCKS[int((cells - full) * 8)] if full < width else ""
    return ("█" * full + part).ljust(width)


def conf_style(p: float) -> str:
    return "green" if p >= 0.9 else ("yellow" if p >= 0.6 else "red")


def strip(s, label: bool = True) -> Text:
    """Each position's confidence, so 'coin flip, then certain' shows at a glance: the probability of the token
    written there (the top one when decoded, the model's own probability of the forced token when forced)."""
    t = Text()
    if label:
        t.append("confidence ", style=DIM)
    for st in s.steps:
        p = float(st.probs[st.token]) if st.forced else float(st.probs.max())
        cur = st.position == s.current
        mark = "◆" if st.position == s.decision_position else " "
        t.append(f"{st.position + 1}{mark}", style=("bold reverse" if cur else DIM) + (" magenta" if st.forced else ""))
        t.append(bar(p, 4), style=conf_style(p))
        t.append(" " + num(p, short=True), style=conf_style(p))
        t.append("  ")
    return t


def decision_note(s) -> tuple[str, float, bool]:
    """(text, top probability, correct) of the decision step."""
    st = s.steps[s.decision_position]
    options = st.legal or [t for t, _ in st.top(2)]
    probs = sorted(((float(st.probs[o]), o) for o in set(options)), reverse=True)
    shown = " vs ".join(f"{s.token_str(o)}:{num(p)}" for p, o in probs[:3])
    return shown, float(st.probs.max()), st.token == st.correct


def story(s) -> Text:
    """One or two sentences saying what the screen shows, for someone who has never read the paper."""
    t = Text()
    dp = s.decision_position
    dstep = s.steps[dp]
    forward = s.objective.decision_step  # a forward answer: the arm is chosen at the decision step
    shown, top, ok = decision_note(s)
    walk = s.wrong_arm_walk()
    if walk is not None:
        clever_hans_story(t, s, walk)
        return t
    if s.forced:
        t.append("Forced tokens (*) are kept; everything after them is re-decoded. ", style="magenta")
    if forward:
        t.append(f"Decision step (which arm?): {shown}. ")
        if top < 0.8:
            t.append("A coin flip: ", style="bold red")
            t.append(s.objective.coin_flip)
        else:
            t.append("Confident: ", style="bold green")
            t.append("this model picks the goal's arm. " if ok else "confidently wrong. ")
        if dp not in s.forced:
            t.append("Press w to force the wrong arm.", style="bold")
    else:
        t.append("Reverse order (goal→start): each token is the unique parent of the previous node, so there is "
                 f"no arm to guess (decision {shown}). ")
        if dp not in s.forced:
            t.append("Press w to force a wrong node.", style="bold")
    return t


def clever_hans_story(t: Text, s, walk: dict) -> None:
    """The w message, short enough for three lines: the walk along the forced arm (the Clever Hans cheat) and the
    last token (the goal copied from the query: a second shortcut), each said on its own; on a shape whose arm has
    no inner node after the decision, that there is nothing to walk and where there is."""
    from ...task import shape_of

    goal, node = s.token_str(s.graph.goal), walk["wrong_node"]
    leaf = next((a[-1] for a in s.graph.arms() if a and a[0] == node), None)
    t.append("Clever Hans: ", style="bold magenta")
    t.append(f"forced onto arm {s.token_str(node)}, ")
    if walk["inner"] == 0:
        d, l = shape_of(s.graph) or (len(s.graph.arms()), s.length)
        t.append(f"but G({d},{l}) has no inner node after the decision: nothing to walk. ", style="bold")
    elif walk["followed"] == walk["inner"]:
        t.append(f"the model walks it at every inner step ({walk['inner']} of {walk['inner']}, p ≥ {num(walk['min_p'])})",
                 style="bold")
        dstep = s.steps[s.decision_position]  # the model's own distribution at the decision, forced or not
        top, ok = float(dstep.probs.max()), int(dstep.probs.argmax()) == dstep.correct
        t.append("; its own decision is a coin flip. " if top < 0.8 else
                 f"; its own decision is {'right' if ok else 'wrong'} (p {num(top)}). ")
    else:
        t.append(f"the model follows it for {walk['followed']} of {walk['inner']} inner steps, then leaves it. ")
    if walk["goal_copied"]:
        t.append("Then it writes " if walk["inner"] else "Its last token is ")
        t.append(f"the goal {goal} from the query" + (f", not the leaf {s.token_str(leaf)}" if walk["inner"] and leaf is not None
                                                     else "") + ": a second shortcut. ", style="bold")
    elif walk["wrong_leaf"]:
        t.append(f"It ends on the arm's leaf {s.token_str(walk['last'])}, not the goal {goal}. ")
    else:
        t.append(f"It ends on {s.token_str(walk['last'])}, neither the goal {goal} nor the arm's leaf. ")
    if walk["inner"] == 0:
        longer = any(sh[1] > 3 for sh in s.lm.task.topologies.shapes)
        t.append("Press t for a longer shape." if longer else "See the walk: ntp-probe tui g2-5-next-token")
    t.rstrip()
    t.append("  u: undo", style=DIM)


def heat(w: float) -> Style:
    """Background colour for an attention weight in [0, 1]."""
    w = max(0.0, min(1.0, w))
    r, g, b = int(30 + 225 * w), int(30 + 170 * w), int(60 - 40 * w)
    return Style(bgcolor=f"rgb({r},{g},{b})", color="black" if w > 0.5 else "white")
