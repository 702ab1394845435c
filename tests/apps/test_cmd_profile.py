"""``vpipe profile``: the per-node table, latency, a Chrome trace that Perfetto opens, a PNG."""

from __future__ import annotations

import json
import re
import math
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from apps.cmd_profile import chrome_trace, end_to_end, node_table
from tests.apps.conftest import GRAPHS, run_vpipe

# Required keys per phase of the Chrome trace event format (the JSON object form).
REQUIRED = {
    "X": {"name", "ph", "ts", "dur", "pid", "tid"},
    "M": {"name", "ph", "pid", "args"},
    "s": {"name", "cat", "ph", "id", "ts", "pid", "tid"},
    "t": {"name", "cat", "ph", "id", "ts", "pid", "tid"},
    "f": {"name", "cat", "ph", "id", "ts", "pid", "tid"},
}


def check_chrome_trace(trace: dict) -> dict:
    """Checks a trace against the format; returns facts about it for further checks."""
    assert isinstance(trace, dict) and isinstance(trace.get("traceEvents"), list)
    slices: dict[tuple, list[tuple[float, float]]] = defaultdict(list)
    thread_names: dict[tuple, str] = {}
    flows: dict[object, list[dict]] = defaultdict(list)
    for ev in trace["traceEvents"]:
        ph = ev.get("ph")
        assert ph in REQUIRED, f"unexpected phase in {ev}"
        missing = REQUIRED[ph] - set(ev)
        assert not missing, f"{ph} event lacks {missing}: {ev}"
        assert isinstance(ev["pid"], int)
        if ph == "M":
            assert ev["name"] in ("process_name", "thread_name", "thread_sort_index"), ev
            if ev["name"] == "thread_name":
                assert isinstance(ev["args"]["name"], str) and isinstance(ev["tid"], int)
                assert (ev["pid"], ev["tid"]) not in thread_names, f"two names for one thread: {ev}"
                thread_names[(ev["pid"], ev["tid"])] = ev["args"]["name"]
        elif ph == "X":
            assert isinstance(ev["ts"], (int, float)) and isinstance(ev["dur"], (int, float))
            assert ev["dur"] >= 0 and math.isfinite(ev["ts"])
            slices[(ev["pid"], ev["tid"])].append((ev["ts"], ev["ts"] + ev["dur"], ev["name"]))
        else:
            flows[ev["id"]].append(ev)
    for track, evs in slices.items():
        assert track in thread_names, f"track {track} has slices but no thread_name"
        assert len({name for *_, name in evs}) == 1, f"track {track} mixes nodes"
    for fid, evs in flows.items():
        phases = [e["ph"] for e in evs]
        assert phases[0] == "s" and phases[-1] == "f" and set(phases[1:-1]) <= {"t"}, (fid, phases)
        assert [e["ts"] for e in evs] == sorted(e["ts"] for e in evs), f"flow {fid} goes back in time"
        for e in evs:  # each flow event binds to a slice on its own track
            assert any(a <= e["ts"] <= b for a, b, _ in slices[(e["pid"], e["tid"])]), f"unbound flow event {e}"
    return {"slices": slices, "thread_names": thread_names, "flows": flows}


def test_profile_writes_a_valid_trace_a_table_and_a_plot(tmp_path: Path):
    import cv2

    trace_path = tmp_path / "trace.json"
    r = run_vpipe("profile", str(GRAPHS / "limited.yaml"), "--set", "count=60", "-o", str(trace_path))
    assert r.rc == 0, r.err
    trace = json.loads(trace_path.read_text())
    facts = check_chrome_trace(trace)
    by_node = Counter()
    for (pid, tid), evs in facts["slices"].items():
        node = evs[0][2]
        assert facts["thread_names"][(pid, tid)].startswith(f"{node} [")
        by_node[node] += len(evs)
    assert by_node["numbers"] == 60  # one event per call that emitted (not the call that says STOP)
    assert by_node["work"] + _drops(r.out, "limiter") == 60
    # One flow per timestamp that more than one node handled, linking source to the end.
    stamps = {ev["args"]["timestamp"] for ev in trace["traceEvents"] if ev["ph"] == "X" and ev["name"] == "work"}
    assert stamps and stamps <= set(facts["flows"])
    assert trace["otherData"]["frames"] == 60
    e2e = trace["otherData"]["end_to_end_ms"]
    # percentiles of real latencies: positive, in order, within the run, and as the table prints them
    assert 0 < e2e["p50"] <= e2e["p90"] <= e2e["p99"] <= e2e["max"] <= trace["otherData"]["wall_s"] * 1e3, e2e
    assert "end-to-end latency over 60 timestamps (ms)" in r.out
    table = r.out[r.out.index("end-to-end latency over 60"):]
    row = next(line for line in table.splitlines() if line.count(".") >= 4)
    assert [float(v) for v in re.findall(r"\d+\.\d+", row)] == [round(e2e[k], 3) for k in ("p50", "p90", "p99", "max")]
    plot = trace_path.with_suffix(".png")
    image = cv2.imread(str(plot))
    assert image is not None and image.shape[:2] == (700, 1000) and image.std() > 10


def _drops(out: str, node: str) -> int:
    for line in out.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if cells and cells[0] == node:
            return int(cells[7])
    raise AssertionError(f"no row for {node} in:\n{out}")


def test_profile_of_a_failing_run_is_an_error(tmp_path: Path):
    r = run_vpipe("profile", str(GRAPHS / "ticker.yaml"), "--set", "fail_at=0", "-o", str(tmp_path / "t.json"))
    assert r.rc == 1
    assert r.first_err_line.startswith("error: node 'FailAt' (FailAt) failed in process at timestamp 0")
    assert not (tmp_path / "t.json").exists()


def test_profile_wants_a_json_path(tmp_path: Path):
    r = run_vpipe("profile", str(GRAPHS / "ticker.yaml"), "-o", str(tmp_path / "t.txt"))
    assert r.rc == 2 and r.first_err_line == f"error: cannot write '{tmp_path / 't.txt'}': the trace is a .json file"


# --- the trace and the statistics from known events -------------------------------------------------

# (node, thread, timestamp, start_ns, end_ns): a source and two stages, two timestamps.
EVENTS = [
    ("src", "s", 0, 1_000_000, 2_000_000),
    ("a", "w0", 0, 2_500_000, 3_000_000),
    ("b", "w1", 0, 3_100_000, 4_000_000),
    ("src", "s", 10, 2_000_000, 5_000_000),
    ("a", "w0", 10, 5_200_000, 5_700_000),
    ("b", "w0", 10, 6_000_000, 6_100_000),
    ("src", "s", 10, 5_000_000, 5_000_100),  # the call that says STOP
]


def test_chrome_trace_from_known_events():
    trace = chrome_trace(EVENTS, "demo", ["src", "a", "b"])
    facts = check_chrome_trace(trace)
    assert sorted(facts["thread_names"].values()) == ["a [w0]", "b [w0]", "b [w1]", "src [s]"]
    flow0 = [(e["ph"], e["ts"]) for e in facts["flows"][0]]
    assert flow0 == [("s", 0.0), ("t", 1500.0), ("f", 2100.0)]
    assert [e["ph"] for e in facts["flows"][10]] == ["s", "t", "t", "f"]
    x = [e for e in trace["traceEvents"] if e["ph"] == "X" and e["name"] == "b"]
    assert sorted((e["ts"], e["dur"]) for e in x) == [(2100.0, 900.0), (5000.0, 100.0)]


def test_latency_counts_from_the_packet_birth():
    lat = end_to_end(EVENTS, sources=["src"])
    assert lat == {0: pytest.approx(2.0), 10: pytest.approx(1.1)}
    rows = node_table(EVENTS, {"a": {"calculator": "A", "queue_peak": 3, "drops": 1}}, wall_s=0.01,
                      order=["src", "a", "ghost", "b"])  # ghost: in the graph file, left out of the run
    a = next(r for r in rows if r["node"] == "a")
    assert a["count"] == 2 and a["p50_ms"] == pytest.approx(0.5) and a["queue_peak"] == 3 and a["drops"] == 1
    assert a["share"] == pytest.approx(1.0 / 10)
    assert [r["node"] for r in rows] == ["src", "a", "b"]
    src = rows[0]
    assert src["p99_ms"] == pytest.approx(float(np.percentile([1.0, 3.0, 0.0001], 99)))
