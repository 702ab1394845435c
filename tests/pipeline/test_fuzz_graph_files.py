"""Fuzzing graph files: whatever the bytes, loading one gives a graph or a ``GraphConfigError``, never
another exception, and quickly.

Three sources of input: documents shaped like graphs (the graph's and nodes' keys with any values),
a ready graph's text mutated character by character, and raw bytes. The examples are derived from
the test's name (``derandomize``), so every run checks the same ones; the deadline catches a
slow path before it becomes a hang.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import Graph, GraphConfigError, registry
from pipeline.config import GRAPH_KEYS, NODE_KEYS

# The mutated graph is face_detection.yaml: its calculators' modules (OpenCV's among them) are
# imported before the first example, so the deadline never counts an import.
pytestmark = pytest.mark.vision


@pytest.fixture(scope="module", autouse=True)
def builtins_imported():
    registry.load_builtins()


READY = (Path(__file__).resolve().parents[2] / "graphs" / "face_detection.yaml").read_text()
FUZZ = settings(max_examples=80, deadline=3000, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

names = st.sampled_from(["Counter", "PassThrough", "FlowLimiter", "VideoSource", "Collector", "IN", "OUT",
                         "IN:0", "OUT:1", "FINISHED", "frames", "$source", "$x", "stream", "back_edge",
                         "capacity", "overflow", "latest", "sync", "threads", "no", "off", "~", "<<"])
scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(10 ** 30), max_value=10 ** 30),
                    st.floats(allow_nan=True), names, st.text(max_size=20))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.one_of(names, st.text(max_size=8)), inner, max_size=4)),
    max_leaves=12)
node = st.dictionaries(st.one_of(st.sampled_from(NODE_KEYS), names), values, max_size=6)
graph_doc = st.fixed_dictionaries({"nodes": st.lists(st.one_of(node, values), max_size=5)},
                                  optional={k: values for k in GRAPH_KEYS if k != "nodes"})

YAML_CHARS = "[]{}:,-&*!|>'\"#%@?`\\\n\t <0a9$~"


def load(text) -> None:
    try:
        Graph.from_yaml(text if isinstance(text, bytes) else text + ("\n" if "\n" not in text else ""))
    except GraphConfigError as e:
        assert e.problems, "a GraphConfigError lists its problems"
        for p in e.problems:
            assert "\n" not in p.message


@FUZZ
@given(graph_doc)
def test_documents_shaped_like_graphs(doc):
    load(yaml.safe_dump(doc, allow_unicode=True))


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(READY)), st.integers(0, 3), st.text(YAML_CHARS, max_size=3)),
                min_size=1, max_size=8))
def test_a_ready_graph_mutated(edits):
    text = READY
    for pos, cut, insert in edits:
        pos = min(pos, len(text))
        text = text[:pos] + insert + text[pos + cut:]
    load(text)


@FUZZ
@given(st.binary(max_size=400))
def test_raw_bytes(data):
    load(data)
