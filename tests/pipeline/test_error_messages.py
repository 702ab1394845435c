"""The words of vpipe's errors (pipeline/errors.py): a problem's ``file:line: message``, a failed
node's one line and its original traceback, a stuck node's report, the closest-name suggestion, and
what survives a trip to another process."""

from __future__ import annotations

import pickle
import threading
import traceback

from pipeline import GraphConfigError, GraphRunError, NodeStuckError, Problem, Timestamp
from pipeline.errors import RemoteCause, StuckCall, closest, did_you_mean, portable


def _raised(exc):
    try:
        raise exc
    except BaseException as e:  # noqa: BLE001
        return e


def test_a_problem_reads_file_line_message():
    assert str(Problem("g.yaml", 12, "unknown calculator")) == "g.yaml:12: unknown calculator"
    assert str(Problem("g.yaml", None, "graph file not found")) == "g.yaml: graph file not found"
    assert str(Problem("g.yaml", 0, "x")) == "g.yaml:0: x"


def test_a_config_error_lists_every_problem_one_per_line():
    problems = [Problem("a.yaml", 1, "first"), Problem("b.yaml", None, "second")]
    err = GraphConfigError(problems)
    assert str(err) == "a.yaml:1: first\nb.yaml: second"
    problems.append(Problem("c", 3, "later"))
    assert len(err.problems) == 2  # its own list


def test_a_run_error_names_node_calculator_phase_and_timestamp():
    cause = _raised(ValueError("bad tensor"))
    err = GraphRunError("detector", "Inference", "process", 33_366, cause)
    assert err.args[0] == "node 'detector' (Inference) failed in process at timestamp 33366: ValueError: bad tensor"
    assert (err.node, err.calculator, err.phase, err.timestamp, err.cause) == (
        "detector", "Inference", "process", 33_366, cause)
    assert err.cause_traceback == "".join(traceback.format_exception(ValueError, cause, cause.__traceback__))
    assert err.cause_traceback.rstrip().endswith("ValueError: bad tensor")
    assert str(err) == f"{err.args[0]}\n\nOriginal traceback:\n{err.cause_traceback}"
    special = GraphRunError("n", "C", "close", Timestamp.POSTSTREAM, cause)
    assert special.args[0] == "node 'n' (C) failed in close at timestamp PostStream: ValueError: bad tensor"
    untimed = GraphRunError("n", "C", "open", None, cause)
    assert untimed.args[0] == "node 'n' (C) failed in open: ValueError: bad tensor"


def test_a_run_error_crosses_processes_with_its_fields():
    err = GraphRunError("n", "C", "process", 5, _raised(KeyError("k")))
    err.extra = "set later"
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is GraphRunError and back.args[0] == err.args[0] and str(back) == str(err)
    assert (back.node, back.calculator, back.phase, back.timestamp) == ("n", "C", "process", 5)
    assert type(back.cause) is KeyError and back.__cause__ is back.cause
    assert back.cause_traceback == err.cause_traceback


def test_a_config_error_keeps_what_was_set_on_it_after_construction():
    err = GraphConfigError([Problem("f", 1, "m")])
    err.hint = "run vpipe validate"
    back = pickle.loads(pickle.dumps(err))
    assert back.problems == err.problems and back.hint == "run vpipe validate" and str(back) == str(err)


def test_a_stuck_node_report():
    err = NodeStuckError("reader", "VideoSource", "process", 1_000, 0.5, stack='  File "x.py", line 3, in read\n')
    assert err.args[0] == ("node 'reader' (VideoSource) is stuck in process at timestamp 1000: it did not return "
                           "within 0.5 s of the stop; abandoned (its thread is left running, the node is not closed)")
    assert str(err) == f"{err.args[0]}\n\nWhere it is stuck:\n  File \"x.py\", line 3, in read\n"
    assert type(err.cause) is StuckCall and str(err.cause) == "no return within 0.5 s of the stop"
    assert err.bound_s == 0.5 and isinstance(err, GraphRunError)
    plain = NodeStuckError("n", "C", "open", None, 2.0)
    assert plain.args[0].startswith("node 'n' (C) is stuck in open: it did not return within 2 s of the stop")
    assert "StuckCall: no return within 2 s of the stop" in plain.cause_traceback
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is NodeStuckError and str(back) == str(err) and back.bound_s == 0.5
    assert (back.node, back.calculator, back.phase, back.timestamp) == ("reader", "VideoSource", "process", 1_000)


def test_closest_names_best_first_and_ignores_case_only_when_needed():
    assert closest("IMAGE", ["IMAGES", "IMAGE", "MASK"]) == ["IMAGE", "IMAGES"]
    # matched as written first: a name that differs from another only in case is not replaced by it
    assert closest("Image", ["Image", "IMAGE"]) == ["Image"]
    # nothing close as written: compared ignoring case, answered as written in the candidates
    assert closest("imag", ["IMAGE", "MASK"]) == ["IMAGE"]
    assert closest("ABCDEF", ["abcdxy", "abcdex"], n=1) == ["abcdex"]
    assert closest("ABCD", ["abxy"], cutoff=0.5) == ["abxy"] and closest("ABCD", ["abxy"]) == []
    assert closest("abcdef", ["abcdxy", "abcdex", "abcdex", "abcxyz"]) == ["abcdex", "abcdxy"]  # once each
    assert len(closest("abc", ["abd", "abe", "abf", "abg"])) == 3  # at most 3
    assert closest("abcdef", ["abcdxy", "abcdex"], n=1) == ["abcdex"]
    assert closest("abcd", ["abxy"]) == [] and closest("abcd", ["abxy"], cutoff=0.5) == ["abxy"]
    # the cutoff holds as written too: a match there keeps the case-only one out
    assert closest("abcd", ["abxy", "ABCD"], cutoff=0.5) == ["abxy"]
    assert did_you_mean("Passes", ["Passe", "Pass"]) == "; did you mean 'Passe', 'Pass'?"
    assert did_you_mean("abc", ["abd", "abe", "abf", "abg"]).count("'") == 6  # three names
    assert did_you_mean("abcd", ["abxy"], cutoff=0.5) == "; did you mean 'abxy'?"
    assert did_you_mean("abcdef", ["abcdxy", "abcdex"], n=1) == "; did you mean 'abcdex'?"
    assert did_you_mean("zzz", []) == ""


def test_a_remote_cause_without_a_traceback():
    cause = RemoteCause("pkg.Weird", "it broke")
    assert cause.traceback_text == "" and str(cause) == "pkg.Weird: it broke"


def test_a_cause_that_cannot_cross_is_named_with_its_traceback():
    class Holder(Exception):
        def __init__(self, message):
            super().__init__(message)
            self.lock = threading.Lock()

    cause = _raised(Holder("held"))
    stand_in = portable(cause)
    assert type(stand_in) is RemoteCause
    assert stand_in.type_name == f"{__name__}.test_a_cause_that_cannot_cross_is_named_with_its_traceback.<locals>.Holder"
    assert stand_in.message == "held" and str(stand_in) == f"{stand_in.type_name}: held"
    assert stand_in.traceback_text == "".join(traceback.format_exception(Holder, cause, cause.__traceback__))
    assert "Holder: held" in stand_in.traceback_text
    fine = ValueError("x")
    assert portable(fine) is fine
    back = pickle.loads(pickle.dumps(stand_in))
    assert (back.type_name, back.message, back.traceback_text) == (
        stand_in.type_name, "held", stand_in.traceback_text)
