"""What a new user meets in the first hour, each through the real entry point (``vpipe ...`` in a
subprocess, or the documented Python API): graphs found by name from anywhere, one ``source`` for
every kind of input, outputs named after their inputs, any engine from the graph file, and the
messages that say what to do instead of hanging or printing internals."""

from __future__ import annotations

from pathlib import Path

from tests.apps.conftest import run_vpipe


def test_run_of_a_graph_with_unfed_inputs_says_what_it_needs():
    r = run_vpipe("run", "face_detector", timeout=60)
    assert r.rc == 1
    assert r.first_err_line.startswith(
        "error: graph 'face_detector' (") and "reads inputs that nothing feeds from the command line: frames; " \
        "use it as a node of another graph (`- subgraph: face_detector` with inputs: {FRAMES: ...})" in r.first_err_line


def test_option_errors_print_defaults_not_pydantic_internals(tmp_path: Path):
    graph = tmp_path / "bad.yaml"
    graph.write_text("inputs: [t]\nnodes:\n  - calculator: Inference\n    inputs: {TENSORS: t}\n"
                     "    outputs: {TENSORS: raw}\n    options: {model: zoo:centerface, batch_size: many}\n")
    r = run_vpipe("validate", str(graph))
    assert r.rc == 1
    assert f"{graph}:6: node 'Inference': option 'batch_size': Input should be a valid integer" in r.out
    assert "layouts: dict (default {})" in r.out and "engine_options: dict (default {})" in r.out
    assert "PydanticUndefined" not in r.out
