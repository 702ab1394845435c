"""Every vpipe exception crosses a process boundary as itself: pickled and unpickled it keeps its
type, message and fields (a ``--jobs`` worker or a Ray actor raises it to the caller)."""

from __future__ import annotations

import importlib
import inspect
import pickle
import pkgutil
import threading

import pytest

from pipeline import Graph, GraphConfigError, GraphRunError, Problem, QueueFullError, TimestampError, VpipeError
from pipeline.errors import RemoteCause, UserError, portable
from pipeline.plugins import PluginError


def roundtrip(exc: BaseException) -> BaseException:
    return pickle.loads(pickle.dumps(exc))


def _conversion_report():
    from models.convert import ConversionReport

    return ConversionReport(source="a.onnx", source_sha256="0" * 64, source_format="onnx", target="openvino",
                            fp16=False, path="a.xml", files={"a.xml": "1" * 64}, input_shapes={"x": [1, 3]},
                            output_names={"y": "y"}, tolerance={"atol": 1e-4}, checks=[], max_abs_error=0.5,
                            reference="onnxruntime", seconds=0.1)


def examples() -> list[tuple[BaseException, dict]]:
    """(exception, fields that must survive) for every vpipe exception class."""
    from apps.cluster.batch import BatchError
    from apps.cluster.cli import Terminated
    from apps.cluster.live import StreamsError
    from apps.cluster.plan import PlanError
    from apps.common import CliError
    from models.catalog import CatalogError, ChecksumError, FetchError
    from calculators.inference import engine as base
    from models.convert import ConversionCheckError, ConversionError
    from models.task_bundle import TaskBundleError
    from calculators.sources.common import MediaError
    from pipeline.streams import ObserverFailed

    report = _conversion_report()
    problems = [Problem("g.yaml", 3, "unknown calculator 'Foo'"), Problem("g.yaml", None, "no outputs")]
    import signal

    from apps.progress import Interrupted
    from calculators.sources.video import Stopped
    from pipeline.errors import NodeStuckError, StuckCall
    from pipeline.signals import StopSignal

    return [
        (NodeStuckError("n", "Calc", "process", 5, 5.0, "  File x, line 1"),
         {"node": "n", "calculator": "Calc", "phase": "process", "timestamp": 5, "bound_s": 5.0}),
        (StuckCall("no return within 5 s of the stop"), {}),
        (StopSignal(signal.SIGTERM), {"signum": signal.SIGTERM}),
        (Stopped("stopped while waiting for the network"), {}),
        (Interrupted(signal.SIGINT, []), {"signum": signal.SIGINT, "errors": []}),
        (VpipeError("base"), {}),
        (UserError("fix it from the message"), {}),
        (PluginError("cannot import plugin 'x'"), {}),
        (GraphConfigError(problems), {"problems": problems}),
        (TimestampError("stream 'a': 5 is not above bound 6"), {}),
        (QueueFullError("input 'in' is full"), {}),
        (GraphRunError("detector", "Inference", "process", 33_366, ValueError("bad tensor")),
         {"node": "detector", "calculator": "Inference", "phase": "process", "timestamp": 33_366}),
        (RemoteCause("pkg.Weird", "it broke", "Traceback ..."), {"type_name": "pkg.Weird", "message": "it broke"}),
        (CliError("bad --set 'x'", 2), {"code": 2}),
        (CliError("run failed", 1), {"code": 1}),
        (base.InferenceError("no engine"), {}),
        (base.EngineNotInstalledError("install vpipe[onnx]"), {}),
        (base.ModelFormatError("not onnx"), {}),
        (base.ModelLoadError("corrupt"), {}),
        (base.DeviceError("no GPU"), {}),
        (base.TensorMismatchError("shape (1, 3) != (1, 4)"), {}),
        (TaskBundleError("not a zip"), {}),
        (ConversionError("no converter"), {}),
        (ConversionCheckError("outputs differ by 0.5", report), {"report": report}),
        (MediaError("cannot open 'x.mp4'"), {}),
        (ObserverFailed("observer of 'faces' failed"), {}),
        (BatchError("no Ray worker could be placed"), {}),
        (Terminated(), {}),
        (PlanError("--inputs 'x/*.mp4' matches no file"), {}),
        (StreamsError("s.yaml: stream 'a': no side packet 'x'"), {}),
        (CatalogError("unknown"), {}),
        (ChecksumError("sha256 mismatch"), {}),
        (FetchError("unreachable"), {}),
    ]


@pytest.mark.parametrize("exc,fields", examples(), ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else "")
def test_exception_roundtrips_with_message_and_fields(exc, fields):
    back = roundtrip(exc)
    assert type(back) is type(exc)
    assert str(back) == str(exc)
    assert back.args == exc.args
    for name, value in fields.items():
        assert getattr(back, name) == value, name


def _defined_exceptions() -> set[type]:
    found = set()
    for pkg_name in ("pipeline", "calculators", "models", "apps"):
        pkg = importlib.import_module(pkg_name)
        for info in pkgutil.walk_packages(pkg.__path__, f"{pkg_name}."):
            try:
                mod = importlib.import_module(info.name)
            except ImportError:  # an engine that is not installed: its module has no exception of its own
                continue
            for _, obj in inspect.getmembers(mod, inspect.isclass):
                if issubclass(obj, BaseException) and obj.__module__ == mod.__name__ and not obj.__name__.startswith("_"):
                    found.add(obj)
    return found


def test_every_exception_class_is_covered():
    covered = {type(e) for e, _ in examples()}
    missing = sorted(c.__qualname__ for c in _defined_exceptions() - covered)
    assert not missing, f"exceptions without a pickle round-trip case: {missing}"


def _failing_run() -> GraphRunError:
    from tests.pipeline import calcs  # noqa: F401 - registers TestFail

    g = Graph.from_dict({"inputs": ["in"], "nodes": [
        {"calculator": "TestFail", "name": "failer", "inputs": ["in"], "outputs": ["out"],
         "options": {"phase": "process", "at": 2}}]})
    g.start()
    for t in range(4):
        try:
            g.add_packet("in", t, t)
        except GraphRunError:
            break
    g.close_all_inputs()
    with pytest.raises(GraphRunError) as info:
        g.wait(timeout=30)
    return info.value


def test_graph_run_error_from_a_real_run_roundtrips():
    err = _failing_run()
    back = roundtrip(err)
    assert type(back) is GraphRunError
    assert (back.node, back.calculator, back.phase, back.timestamp) == ("failer", "TestFail", "process", 2)
    assert str(back) == str(err)  # the message and the original traceback text
    assert "Original traceback:" in str(back) and "Traceback" in back.cause_traceback
    assert type(back.cause) is type(err.cause) and str(back.cause) == str(err.cause)
    assert back.__cause__ is back.cause


class _Unpicklable(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.lock = threading.Lock()  # a lock does not pickle


def test_a_cause_that_cannot_pickle_travels_as_remote_cause():
    try:
        raise _Unpicklable("held a lock")
    except _Unpicklable as e:
        cause = e
    err = GraphRunError("n", "Calc", "process", 7, cause)
    with pytest.raises(TypeError):
        pickle.dumps(cause)
    back = roundtrip(err)
    assert isinstance(back.cause, RemoteCause)
    assert back.cause.type_name.endswith("_Unpicklable") and back.cause.message == "held a lock"
    assert "held a lock" in back.cause.traceback_text
    assert str(back) == str(err)
    assert portable(ValueError("x")).__class__ is ValueError
