"""What a new user meets in the first hour, each through the real entry point (``vpipe ...`` in a
subprocess, or the documented Python API): graphs found by name from anywhere, one ``source`` for
every kind of input, outputs named after their inputs, any engine from the graph file, and the
messages that say what to do instead of hanging or printing internals."""

from __future__ import annotations

from pathlib import Path

from tests.apps.conftest import REPO, run_vpipe


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


# --- graphs and subgraphs by name, from anywhere ------------------------------------------------

def _user_graphs(tmp_path: Path) -> tuple[Path, Path]:
    mine, lib = tmp_path / "mine", tmp_path / "lib"
    mine.mkdir()
    lib.mkdir()
    (lib / "relay.yaml").write_text(
        "name: relay\ninputs: [frames]\noutputs: [relayed]\nnodes:\n"
        "  - calculator: PassThrough\n    inputs: {IN: frames}\n    outputs: {OUT: relayed}\n")
    (mine / "faces.yaml").write_text(
        "name: faces\nside_packets: {source: 'sample:carphone'}\noutputs: [faces]\nnodes:\n"
        "  - calculator: VideoSource\n    outputs: {FRAMES: frames}\n    options: {uri: $source, stop_s: 0.2}\n"
        "  - subgraph: relay\n    inputs: {FRAMES: frames}\n    outputs: {RELAYED: relayed}\n"
        "  - subgraph: face_detector\n    inputs: {FRAMES: relayed}\n    outputs: {DETECTIONS: faces}\n")
    return mine, lib


def test_user_graph_names_builtin_and_graph_path_subgraphs(tmp_path: Path):
    mine, lib = _user_graphs(tmp_path)
    r = run_vpipe("validate", "faces", "--graph-path", str(mine), "--graph-path", str(lib))
    assert r.rc == 0, r.out + r.err
    assert f"{mine / 'faces.yaml'}: ok (7 nodes)" in r.err  # relay's 1 + face_detector's 5 + the source
    r = run_vpipe("run", str(mine / "faces.yaml"), "-q", env={"VPIPE_GRAPH_PATH": str(lib)})
    assert r.rc == 0, r.err
    assert "face_detector/ProjectDetections" in r.out


def test_missing_subgraph_says_where_it_looked(tmp_path: Path):
    mine, _lib = _user_graphs(tmp_path)
    r = run_vpipe("validate", str(mine / "faces.yaml"))
    assert r.rc == 1
    line = r.out.splitlines()[0]
    assert line == (f"{mine / 'faces.yaml'}:8: subgraph 'relay' not found (looked beside {mine} and in "
                    f"{REPO / 'graphs'})"), line


def test_graph_from_yaml_finds_builtin_graphs_by_name(tmp_path: Path):
    import subprocess
    import sys

    code = ("from pipeline import Graph, GraphConfigError\n"
            "g = Graph.from_yaml('face_detection')\n"
            "print(g.name, sorted(g.spec.side_packets)[:3])\n"
            "try:\n    Graph.from_yaml('face_detecton')\n"
            "except GraphConfigError as e:\n    print(e)\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                       env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0, r.stderr
    first, second = r.stdout.splitlines()[:2]
    assert first.startswith("face_detection [")
    assert second.startswith("face_detecton: no graph file of that name (looked in ") and \
        "did you mean 'face_detection'" in second, second
