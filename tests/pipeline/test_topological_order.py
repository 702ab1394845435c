"""The node order a graph runs in comes from the standard library's graphlib (loading and running a
graph import no networkx): it must be the order networkx's ``topological_sort`` gives on the same
graph, and a cycle must still be named the way networkx names it."""

import random

import networkx as nx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import Graph, GraphConfigError
from pipeline.config import graph_names


@st.composite
def shuffled_dags(draw):
    """A random DAG of PassThrough nodes (several inputs from one producer: parallel edges; some
    back edges), its nodes listed in a random order, not the order they depend on each other."""
    n_nodes = draw(st.integers(1, 9))
    streams = [("in", None)]
    nodes = []
    for i in range(n_nodes):
        k = draw(st.integers(1, min(4, len(streams))))
        ins = draw(st.lists(st.sampled_from([s for s, _ in streams]), min_size=k, max_size=k, unique=True))
        nodes.append({"calculator": "PassThrough", "name": f"n{i}",
                      "inputs": {f"IN:{j}": s for j, s in enumerate(ins)},
                      "outputs": {f"OUT:{j}": f"n{i}_{j}" for j in range(k)}})
        streams += [(f"n{i}_{j}", i) for j in range(k)]
    # Back edges: an extra input of an early node from a later node's output.
    for _ in range(draw(st.integers(0, 2))):
        late = [(s, i) for s, i in streams if i is not None]
        if not late:
            break
        s, producer = draw(st.sampled_from(late))
        consumer = nodes[draw(st.integers(0, producer))]
        j = len(consumer["inputs"])
        consumer["inputs"][f"IN:{j}"] = {"stream": s, "back_edge": True}
        consumer["outputs"][f"OUT:{j}"] = f"{consumer['name']}_back{j}"
    order = draw(st.permutations(nodes))
    return {"inputs": ["in"], "nodes": list(order)}


def networkx_order(spec) -> list[str]:
    return list(nx.topological_sort(spec.nx_graph(include_back_edges=False)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dag=shuffled_dags())
def test_the_order_is_networkx_topological_sort(dag):
    spec = Graph.from_dict(dag).spec
    assert spec.topological_order() == networkx_order(spec)


@pytest.mark.vision  # the ready graphs' calculators need OpenCV (skipped under tests.import_blocker)
@pytest.mark.parametrize("name", graph_names([]))
def test_every_ready_graph_keeps_its_networkx_order(name):
    spec = Graph.from_yaml(name).spec
    assert spec.topological_order() == networkx_order(spec)


def test_node_depths_follow_the_order():
    # a -> b -> d and a -> c -> d: d is two hops down, whichever branch is listed first.
    g = Graph.from_dict({"inputs": ["in"], "nodes": [
        {"calculator": "PassThrough", "name": "d", "inputs": ["b", "c"], "outputs": ["d1", "d2"]},
        {"calculator": "PassThrough", "name": "c", "inputs": ["a"], "outputs": ["c"]},
        {"calculator": "PassThrough", "name": "b", "inputs": ["a"], "outputs": ["b"]},
        {"calculator": "PassThrough", "name": "a", "inputs": ["in"], "outputs": ["a"]},
    ]})
    assert g.spec.topological_order() == ["a", "c", "b", "d"]
    g.observe("d1", lambda p: None)
    with g:
        g.start()
        assert {n.name: n.depth for n in g._nodes} == {"a": 0, "b": 1, "c": 1, "d": 2}
        assert [n.name for n in g._nodes] == ["a", "c", "b", "d"]
        g.close_all_inputs()
        g.wait(timeout=30)


def test_a_long_cycle_is_named_as_networkx_finds_it():
    rng = random.Random(7)
    names = [f"n{i}" for i in range(6)]
    nodes = [{"calculator": "PassThrough", "name": n, "inputs": [f"s{(i - 1) % 6}"], "outputs": [f"s{i}"]}
             for i, n in enumerate(names)]
    rng.shuffle(nodes)
    with pytest.raises(GraphConfigError) as e:
        Graph.from_dict({"nodes": nodes})
    cycle = [p.message for p in e.value.problems if "cycle" in p.message]
    assert len(cycle) == 1 and cycle[0].startswith("cycle without a back edge: ")
    path = cycle[0].split(": ", 1)[1].split(";")[0].split(" -> ")
    assert path[0] == path[-1] and sorted(path[:-1]) == names
