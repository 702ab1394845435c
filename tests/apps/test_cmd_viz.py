"""``vpipe viz``: Graphviz pictures (when dot is installed), Mermaid text, HTML page."""

from __future__ import annotations

import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from apps.cmd_viz import to_mermaid, wiring
from tests.apps.conftest import GRAPHS, run_vpipe

needs_dot = pytest.mark.skipif(shutil.which("dot") is None,
                               reason="Graphviz 'dot' is not installed (Debian package graphviz)")
LIMITED = str(GRAPHS / "limited.yaml")
NODES = ("numbers", "limiter", "work")


def _svg_texts(root: ET.Element) -> list[str]:
    return [t.text for t in root.iter("{http://www.w3.org/2000/svg}text") if t.text]


def _viz(tmp_path: Path, suffix: str, graph: str = LIMITED) -> Path:
    """Runs ``vpipe viz GRAPH -o tmp/limited.SUFFIX``; returns the written picture."""
    out = tmp_path / f"limited{suffix}"
    r = run_vpipe("viz", graph, "-o", str(out))
    assert r.rc == 0, r.err
    assert r.out.strip() == f"wrote {out}"
    return out


@needs_dot
def test_svg_is_drawn_by_dot_with_ports_back_edge_and_executor(tmp_path: Path):
    out = _viz(tmp_path, ".svg")
    root = ET.parse(out).getroot()  # a well-formed SVG document
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    texts = _svg_texts(root)
    for expected in (*NODES, "Counter", "FlowLimiter", "PassThrough", "IN", "FINISHED", "OUT", "IN:0",
                     "OUT:0", "frames", "throttled", "done (back edge)", "cap 4, drop_oldest", "worker"):
        assert expected in texts, f"{expected!r} not drawn; texts: {texts}"
    # The back edge is drawn dashed.
    dashed = [p for p in root.iter("{http://www.w3.org/2000/svg}path") if p.get("stroke-dasharray")]
    assert dashed, "no dashed edge in the picture"


@needs_dot
def test_png_is_a_real_image(tmp_path: Path):
    import cv2

    out = _viz(tmp_path, ".png")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape[0] > 100 and image.shape[1] > 100
    assert image.std() > 10, "the picture is blank"


def test_mermaid_text(tmp_path: Path):
    out = _viz(tmp_path, ".mmd")
    text = out.read_text()
    assert "flowchart TB" in text
    assert 'subgraph ex0["executor worker"]' in text
    assert 'n0 -- "frames<br/>OUT → IN" --> n1' in text
    assert 'n2 -. "done<br/>OUT:0 → FINISHED (back edge)" .-> n1' in text
    assert 'n1 -- "throttled<br/>OUT → IN:0<br/>cap 4, drop_oldest" --> n2' in text


@needs_dot
def test_html_embeds_svg_and_mermaid(tmp_path: Path):
    out = _viz(tmp_path, ".html")
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and '<pre class="mermaid">' in page
    assert "flowchart TB" in page


def test_nodes_switched_by_when_say_so(tmp_path: Path):
    text = _viz(tmp_path, ".mmd", "face_detection").read_text()
    notes = dict(re.findall(r'<b>([^<]+)</b><br/>[^<]*<br/><small>([^<]*)</small>', text))
    assert len(notes) == 12, notes
    assert [notes[n] for n in ("MediaWriter", "JsonlWriter", "Display", "WebPreview")] == [
        "sync · when $output", "sync · executor inference · when $detections", "sync · when $display",
        "sync · when $preview"]
    assert notes["Annotate"] == "sync" and notes["detector/Inference"] == "sync · executor inference"


def test_unknown_picture_format_and_unknown_graph(tmp_path: Path):
    r = run_vpipe("viz", LIMITED, "-o", str(tmp_path / "x.jpg"))
    assert r.rc == 2
    assert r.first_err_line == (f"error: cannot write '{tmp_path / 'x.jpg'}': unknown picture format '.jpg'; "
                                "use one of .svg, .png, .html, .mmd, .dot")
    assert not (tmp_path / "x.jpg").exists()
    r = run_vpipe("viz", "limitd", "-o", str(tmp_path / "x.svg"), env={"VPIPE_GRAPH_PATH": str(GRAPHS)})
    assert r.rc == 2 and "did you mean 'limited'?" in r.first_err_line


TOPOLOGY = {"nodes": [
    {"name": "feed_user", "calculator": "PassThrough", "policy": "latest(2)", "executor": "default",
     "max_in_flight": 3, "inputs": {"IN:0": {"stream": "in", "back_edge": False, "capacity": 2,
                                              "overflow": "reject"}},
     "outputs": {"OUT:0": "out"}},
], "outputs": ["out"]}


@pytest.mark.parametrize("topology, inputs, edges, outputs", [
    (TOPOLOGY, [("in", "feed_user", "IN:0")], [], [("feed_user", "OUT:0", "out")]),
])
def test_wiring_finds_graph_inputs_and_outputs(topology, inputs, edges, outputs):
    w = wiring(topology, topology["outputs"])
    assert [(s, n, t) for s, n, t, _ in w["graph_inputs"]] == inputs
    assert w["edges"] == edges
    assert w["graph_outputs"] == outputs
    text = to_mermaid(topology, "feed", topology["outputs"])
    assert 'gi0 -- "→ IN:0<br/>cap 2, reject" --> n0' in text
    assert "latest(2) · in flight 3" in text


def test_without_dot_svg_is_refused_and_html_keeps_the_mermaid(tmp_path: Path):
    bare = {"PATH": str(tmp_path)}  # a PATH on which no 'dot' is found
    r = run_vpipe("viz", LIMITED, "-o", str(tmp_path / "x.svg"), env=bare)
    assert r.rc == 1
    assert r.first_err_line == ("error: Graphviz 'dot' is not installed (Debian package graphviz); "
                                "write a .mmd or .html file instead")
    assert not (tmp_path / "x.svg").exists()
    r = run_vpipe("viz", LIMITED, "-o", str(tmp_path / "x.html"), env=bare)
    assert r.rc == 0, r.err
    page = (tmp_path / "x.html").read_text()
    assert "<svg" not in page and "Graphviz <code>dot</code> is not installed" in page
    assert "flowchart TB" in page
