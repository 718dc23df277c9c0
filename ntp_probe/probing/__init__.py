"""The probing API: a session over (model, graph) that a UI drives without knowing model internals
(``session.ProbeSession``), session files (``files``), checking a graph against a model (``fit``), and the
causal probes — activation patching, edge knock-out, direct logit attribution (``patching``).

Callers import from the package: ``from ntp_probe.probing import ProbeSession, load_session``.
"""

from .files import SESSION_FORMAT, SessionFileError, check_session_data, model_ref, read_session_file
from .fit import answer_length, check_fits, parse_for_model, parse_force
from .session import AttentionView, ProbeSession, Step, load_session

__all__ = ["ProbeSession", "Step", "AttentionView", "parse_for_model", "parse_force", "check_fits", "load_session",
           "check_session_data", "SessionFileError", "SESSION_FORMAT", "model_ref", "read_session_file", "answer_length"]
