"""The app's keys: each binding's description is the footer's label, its tooltip the help screen's line and the
command palette's "title: help" (both built from them)."""

from __future__ import annotations

from textual.binding import Binding

# description: the footer's label; tooltip: the help screen's line and the palette's "title: help"
KEYS = [
    Binding("right,n,space", "step", "Step", tooltip="Step: reveal the next answer token"),
    Binding("left,p", "back", "Back", tooltip="Back: hide the last revealed answer token"),
    Binding("g", "run_to_end", "To end", show=False, tooltip="Run to end: reveal the whole answer"),
    Binding("0", "reset", "Reset", show=False, tooltip="Reset: back to answer token 1, nothing revealed"),
    Binding("w", "wrong_arm", "Wrong arm!", key_display="w",
            tooltip="Force the wrong arm (Clever Hans demo): the first node of another arm at the decision step"),
    Binding("f", "force_typed", "Force id", show=False,
            tooltip="Force a node by id: type the node to force at the answer token on show"),
    Binding("u", "unforce", "Undo", tooltip="Undo force: remove the last forced token"),
    Binding("x", "clear_forced", "Clear forced", show=False, tooltip="Clear forced tokens: remove every forced token"),
    Binding("r", "random_graph", "Random", tooltip="Random graph: a fresh random graph of the model's topology"),
    Binding("e", "edit_graph", "Edit", tooltip="Edit graph: type a graph (either format), validated as you type; "
            "G(3,4) asks for a random graph of that shape"),
    Binding("t", "next_shape", "Shape", show=False,
            tooltip="Next shape: a random graph of the next shape G(d,l) of the model's topology set"),
    Binding("escape", "leave_editor", "Leave editor", show=False, tooltip="Leave the editor: keys drive the app again"),
    Binding("o", "open_line", "Open line", show=False, tooltip="Load a line from a data file: give path:line"),
    Binding("c", "compare_next", "Compare", show=False,
            tooltip="Compare with next model: cycle the model shown side by side"),
    Binding("right_square_bracket", "head(1)", "Next head", show=False, tooltip="Next attention head: cycle layer·head"),
    Binding("left_square_bracket", "head(-1)", "Prev head", show=False, tooltip="Previous attention head"),
    Binding("i", "card", "Card", show=False, tooltip="Model card: objective, topology, training figures"),
    Binding("y", "toggle_why", "Why", show=False,
            tooltip="Why: goal-pair activation patching (layer × token) and edge knock-out at the answer token on "
                    "show (y again: back)"),
    Binding("d", "next_strategy", "Decoding", show=False,
            tooltip="Next decoding strategy: greedy → sampling → beam search → perfect verifier (both models on show)"),
    Binding("l", "toggle_lens", "Logit lens", show=False,
            tooltip="Logit lens / attention: the answer token on show read out of every layer "
                    "(p of the correct node vs the best wrong move)"),
    Binding("comma", "prev_checkpoint", "Prev checkpoint", show=False, key_display=",",
            tooltip="Previous checkpoint: the run's kept checkpoint before the one on show (replay its training)"),
    Binding("full_stop", "next_checkpoint", "Next checkpoint", show=False, key_display=".",
            tooltip="Next checkpoint: the run's next kept checkpoint; past the last, its newest (followed again)"),
    Binding("question_mark,f1", "help", "Help", tooltip="Help: keys and what the screen shows"),
    Binding("ctrl+s", "save_session", "Save session", show=False,
            tooltip="Save session: model, graph, forced tokens and decoding as JSON (the file probe --save writes)"),
    Binding("ctrl+o", "open_session", "Open session", show=False, tooltip="Open session: load a saved session file"),
    Binding("s", "screenshot", "Screenshot", show=False, tooltip="Save screenshot: SVG in the current directory"),
    Binding("ctrl+q", "quit", "Quit", priority=True, tooltip="Quit"),
]
