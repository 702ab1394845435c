"""``vpipe run`` and ``vpipe validate`` end to end, through the real entry point."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from apps.common import CliError, parse_set_value, parse_sets
from tests.apps.conftest import GRAPHS, REPO, run_vpipe


def _summary_frames(out: str) -> int:
    m = re.search(r"summary: (\d+) frames in", out)
    assert m, f"no summary line in:\n{out}"
    return int(m.group(1))


def _row(out: str, node: str) -> list[str]:
    """The cells of a node's row in a rich table printed to stdout."""
    for line in out.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if cells and cells[0] == node:
            return cells
    raise AssertionError(f"no row for node {node!r} in:\n{out}")


# --- --set parsing (table-driven) ---------------------------------------------------------------

@pytest.mark.parametrize("raw, expected", [
    ("3", 3), ("-7", -7), ("0.5", 0.5), ("1e-3", 0.001), ("true", True), ("False", False),
    ("null", None), ("~", None), ("", None), ("clip.mp4", "clip.mp4"), ("'3'", "3"),
    ('"true"', "true"), ("2024-01-01", "2024-01-01"), ("rtsp://h:8554/cam", "rtsp://h:8554/cam"),
    ("sample:carphone", "sample:carphone"),
    # YAML 1.2, as graph files are read: only true/false are booleans; no octal, no sexagesimal.
    ("off", "off"), ("no", "no"), ("yes", "yes"), ("010", 10), ("1:30", "1:30"), ("0x10", 16),
])
def test_set_values_are_yaml_scalars(raw, expected):
    value = parse_set_value(raw)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("item, message", [
    ("count", r"bad --set 'count': expected key=value"),
    ("=3", r"bad --set '=3': '' is not a side packet name"),
    ("1x=3", r"bad --set '1x=3': '1x' is not a side packet name"),
    ("count=[1, 2]", r"bad --set 'count=\[1, 2\]': value must be a scalar .*got a list"),
    ("count={a: 1}", r"value must be a scalar .*got a mapping"),
    ("count=[1", r"bad --set 'count=\[1': value not a YAML scalar"),
])
def test_bad_set_items_name_the_item(item, message):
    with pytest.raises(CliError, match=message):
        parse_sets([item])


def test_later_set_wins():
    assert parse_sets(["a=1", "b=x", "a=2"]) == {"a": 2, "b": "x"}


# --- vpipe run -------------------------------------------------------------------------------------

def test_run_video_graph_counts_every_frame(sample_video: Path):
    import av

    with av.open(str(sample_video)) as c:
        expected = sum(1 for _ in c.decode(video=0))
    r = run_vpipe("run", str(GRAPHS / "video_passthrough.yaml"), "--set", f"source={sample_video}")
    assert r.rc == 0, r.err
    assert _summary_frames(r.out) == expected
    source = _row(r.out, "VideoSource")
    assert source[1] == "VideoSource" and int(source[2]) == expected + 1  # the last call says STOP
    work = _row(r.out, "PassThrough")
    # Every frame is either processed by the work node or dropped by the limiter, never both.
    limiter = _row(r.out, "FlowLimiter")
    assert int(work[2]) + int(limiter[7]) + int(work[7]) == expected


def test_run_by_name_from_graph_path_with_set_override():
    r = run_vpipe("run", "ticker", "--set", "count=7", env={"VPIPE_GRAPH_PATH": str(GRAPHS)})
    assert r.rc == 0, r.err
    assert _summary_frames(r.out) == 7
    assert int(_row(r.out, "FailAt")[2]) == 7


def test_unknown_graph_offers_closest_names():
    r = run_vpipe("run", "tikcer", env={"VPIPE_GRAPH_PATH": str(GRAPHS)})
    assert r.rc == 2
    assert r.first_err_line.startswith("error: unknown graph 'tikcer': no such file and no graph of that name")
    assert "did you mean 'ticker'?" in r.first_err_line


def test_unknown_side_packet_offers_declared_ones():
    r = run_vpipe("run", str(GRAPHS / "ticker.yaml"), "--set", "cuont=3")
    assert r.rc == 2
    assert r.first_err_line == (f"error: bad --set 'cuont': {GRAPHS / 'ticker.yaml'} declares no side packet "
                                "'cuont'; did you mean 'count'?")


def test_bad_set_on_the_command_line():
    r = run_vpipe("run", str(GRAPHS / "ticker.yaml"), "--set", "count=[1, 2]")
    assert r.rc == 2
    assert r.first_err_line.startswith("error: bad --set 'count=[1, 2]': value must be a scalar")


def test_failed_run_reports_the_cause_first():
    r = run_vpipe("run", str(GRAPHS / "ticker.yaml"), "--set", "fail_at=3000")
    assert r.rc == 1
    assert r.first_err_line == ("error: node 'FailAt' (FailAt) failed in process at timestamp 3000: "
                                "ValueError: refusing packet 3")
    assert "Original traceback:" in r.err and "vpipe_test_plugin.py" in r.err
    assert "summary:" not in r.out


def test_missing_plugin_is_a_clear_error():
    r = run_vpipe("run", str(GRAPHS / "limited.yaml"), "--plugin", "no_such_vpipe_plugin")
    assert r.rc == 2
    assert r.first_err_line == ("error: cannot load plugin 'no_such_vpipe_plugin': tried it as a module name, and no "
                                "module named 'no_such_vpipe_plugin' is on the import path; a plugin file is named "
                                "by its path, e.g. ./my_calcs.py")


def test_run_of_a_wrong_graph_lists_problems_and_runs_nothing():
    r = run_vpipe("run", str(GRAPHS / "broken.yaml"))
    assert r.rc == 1
    assert r.first_err_line == "error: 4 problems in the graph"
    assert f"{GRAPHS / 'broken.yaml'}:5: unknown calculator 'PasThrough'" in r.err


# --- vpipe validate --------------------------------------------------------------------------------

def test_validate_reports_every_problem_with_file_and_line():
    broken = GRAPHS / "broken.yaml"
    r = run_vpipe("validate", str(broken), str(GRAPHS / "limited.yaml"))
    assert r.rc == 1
    lines = r.out.splitlines()
    assert len(lines) == 4, r.out
    expected = [
        (5, "unknown calculator 'PasThrough'; did you mean 'PassThrough'?"),
        (11, "node 'Counter': option 'count': Input should be a valid integer"),
        (13, "node 'PassThrough': input IN:0 reads stream 'missing_stream', which has no producer"),
        (16, "cycle without a back edge: loop_a -> loop_b -> loop_a"),
    ]
    for line, (number, message) in zip(lines, expected):
        assert line.startswith(f"{broken}:{number}: {message}"), line
    assert f"{GRAPHS / 'limited.yaml'}: ok (3 nodes)" in r.err
    assert "4 problem(s) found" in r.err


def test_validate_unknown_graph_and_good_graphs():
    r = run_vpipe("validate", str(GRAPHS / "limited.yaml"), "limitd", env={"VPIPE_GRAPH_PATH": str(GRAPHS)})
    assert r.rc == 1
    assert "limitd: unknown graph 'limitd'" in r.out and "did you mean 'limited'?" in r.out
    r = run_vpipe("validate", "limited", "ticker", env={"VPIPE_GRAPH_PATH": str(GRAPHS)})
    assert r.rc == 0, r.out + r.err
    assert r.out == ""


SHIPPED = sorted((REPO / "graphs").glob("*.yaml"))


@pytest.mark.skipif(not SHIPPED, reason="no graphs in graphs/ yet")
def test_shipped_graphs_validate():
    r = run_vpipe("validate", *map(str, SHIPPED))
    assert r.rc == 0, f"shipped graphs have problems:\n{r.out}{r.err}"


def test_side_packet_of_the_wrong_type_fails_before_running():
    r = run_vpipe("run", str(GRAPHS / "ticker.yaml"), "--set", "count=abc")
    assert r.rc == 1
    assert r.first_err_line.startswith(f"error: {GRAPHS / 'ticker.yaml'}:9: node 'Ticker': option 'count': "
                                       "Input should be a valid integer")
    assert "summary:" not in r.out


def test_ctrl_c_stops_the_run_cleanly(tmp_path: Path):
    """SIGINT during a run: calculators are closed, the exit status is 130, the cause comes first."""
    import os
    import select
    import signal
    import subprocess
    import sys
    import time

    from tests.apps.conftest import HERE, USER_CONFIG

    fifo = tmp_path / "ticker.fifo"
    os.mkfifo(fifo)
    graph = tmp_path / "live.yaml"
    graph.write_text(
        "name: live\nplugins: [vpipe_test_plugin]\nnodes:\n"
        "  - calculator: Ticker\n    outputs: {OUT: numbers}\n"
        f"    options: {{count: 1000000, period_us: 10000, realtime: true, fifo: '{fifo}'}}\n"
        "  - calculator: PassThrough\n    inputs: {IN:0: numbers}\n    outputs: {OUT:0: out}\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(HERE)]), "VPIPE_CONFIG": str(USER_CONFIG)}
    proc = subprocess.Popen([sys.executable, "-m", "apps.cli", "run", str(graph)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Our own writer end keeps the pipe from reading as ended before the Ticker opens it.
    rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    wfd = os.open(fifo, os.O_WRONLY)
    received = b""

    def wait_for(word: str, timeout: float) -> None:
        nonlocal received
        deadline = time.monotonic() + timeout
        while word.encode() + b"\n" not in received:
            assert proc.poll() is None or word == "closed", f"vpipe ended early: {proc.communicate()}"
            left = deadline - time.monotonic()
            assert left > 0, f"the Ticker did not say {word!r} within {timeout} s (got {received!r})"
            ready, _, _ = select.select([rfd], [], [], min(left, 0.5))
            if ready:
                received += os.read(rfd, 4096)

    try:
        wait_for("running", 60)
        proc.send_signal(signal.SIGINT)
        wait_for("closed", 30)
        out, err = proc.communicate(timeout=30)
    finally:
        os.close(rfd)
        os.close(wfd)
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert err.splitlines()[0] == "error: interrupted (Ctrl-C): the run was stopped"
