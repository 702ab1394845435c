"""Test helpers: one way to build, feed and collect a graph (``GraphRun``), and one node run on
timestamped packets in the manner of MediaPipe's CalculatorRunner (``run_calculator``).

    with GraphRun(yaml_text, collect=["out"]) as r:
        r.start()
        r.feed("in", [(0, "a"), (10, "b")])
        r.finish()
    assert r.out["out"] == [(0, "a"), (10, "b")]

    out = run_calculator("PassThrough", inputs={"IN:0": [(0, "a"), (10, "b")]})
    assert out["OUT:0"] == [(0, "a"), (10, "b")]

A ``GraphRun`` never leaves a run going: leaving the ``with`` block cancels a run that has not
ended and waits for it (bounded by ``timeout``), so a failing assertion leaves no thread behind.
Coordination with calculators under test goes through side packets (an event, a list), never
through module globals.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from . import registry
from .graph import Graph


class GraphRun:
    """A graph under test: built from YAML text, a path, a dict or a ``Graph``; the packets of each
    stream in ``collect`` gathered as ``(timestamp, value)`` in ``out[stream]``."""

    def __init__(self, graph, collect: Iterable[str] = (), threads: int | None = None, timeout: float = 30.0):
        if isinstance(graph, Graph):
            self.graph = graph
        elif isinstance(graph, dict):
            self.graph = Graph.from_dict(graph, threads=threads)
        else:
            self.graph = Graph.from_yaml(Path(graph) if isinstance(graph, Path) else graph, threads=threads)
        self.timeout = timeout
        self.out: dict[str, list[tuple[int, object]]] = {}
        for s in collect:
            self.collect(s)

    def collect(self, stream: str) -> list[tuple[int, object]]:
        """Gathers ``stream``'s packets (call before ``start``); returns the list it fills."""
        got = self.out.setdefault(stream, [])
        self.graph.observe(stream, lambda p: got.append((p.timestamp, p.value)))
        return got

    def start(self, side_packets: dict | None = None) -> "GraphRun":
        self.graph.start(side_packets)
        return self

    def feed(self, stream: str, packets: Iterable[tuple[int, object]], idle: bool = False) -> None:
        """Feeds ``(timestamp, value)`` packets to graph input ``stream``; with ``idle``, waits
        after each until the graph is idle (each packet goes as far as it can before the next)."""
        for t, v in packets:
            self.graph.add_packet(stream, v, t)
            if idle:
                self.graph.wait_until_idle(self.timeout)

    def feed_merged(self, inputs: dict[str, Iterable[tuple[int, object]]]) -> None:
        """Feeds several inputs in timestamp order across them (ties: in the order given)."""
        merged = sorted(((t, i, s, v) for s, pkts in inputs.items() for i, (t, v) in enumerate(pkts)),
                        key=lambda r: (r[0], r[1]))
        for t, _, s, v in merged:
            self.graph.add_packet(s, v, t)

    def finish(self) -> dict[str, list[tuple[int, object]]]:
        """Closes the graph inputs and waits for the end; raises the run's error."""
        self.graph.close_all_inputs()
        self.graph.wait(self.timeout)
        return self.out

    def run(self, inputs: dict | None = None, side_packets: dict | None = None) -> dict[str, list]:
        """start, feed_merged, finish."""
        self.start(side_packets)
        self.feed_merged(inputs or {})
        return self.finish()

    def __enter__(self) -> "GraphRun":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        g = self.graph
        if g._started and g._end_time is None:
            g.cancel()
            try:
                g.wait(self.timeout)
            except Exception:  # noqa: BLE001 - the test's own failure is the one to report
                if exc_type is None:
                    raise


def _stream(tag: str, prefix: str) -> str:
    return f"{prefix}_{tag.replace(':', '_').lower()}"


def run_calculator(
    calculator,
    inputs: dict[str, Iterable[tuple[int, object]]] | None = None,
    options: dict | None = None,
    side_packets: dict | None = None,
    outputs: list[str] | None = None,
    policy=None,
    max_in_flight: int | None = None,
    threads: int | None = None,
    capacity: int | None = None,
    timeout: float = 60.0,
) -> dict[str, list[tuple[int, object]]]:
    """Builds a one-node graph, feeds each input's ``(timestamp, value)`` packets in timestamp
    order across inputs, closes the inputs and returns ``{output_tag: [(timestamp, value), ...]}``
    for every connected output (all declared non-indexed outputs unless ``outputs`` is given).
    Errors raise exactly as in a real graph (``GraphRunError``)."""
    cls = registry.get(calculator) if isinstance(calculator, str) else calculator
    name = getattr(cls, "name", "")
    if not name or registry.find(name) is not cls:  # a class made with register=False is registered here
        registry.register(cls, name=name or None)
    inputs = {k: list(v) for k, v in (inputs or {}).items()}
    if outputs is None:
        n_indexed = max([sum(1 for k in inputs if k.split(":")[0] == t) for t, p in cls.inputs.items()
                         if p.multiple] + [1])
        outputs = []
        for t, port in cls.outputs.items():
            outputs += [f"{t}:{i}" for i in range(n_indexed)] if port.multiple else [t]
    side_packets = dict(side_packets or {})
    node = {
        "calculator": cls.name,
        "inputs": {},
        "outputs": {t: _stream(t, "out") for t in outputs},
        "options": options or {},
    }
    for tag in inputs:
        spec = {"stream": _stream(tag, "in")}
        if capacity is not None:
            spec["capacity"] = capacity
        node["inputs"][tag] = spec
    if side_packets:
        node["side_inputs"] = {t: f"side_{t.lower()}" for t in side_packets}
    if policy is not None:
        node["policy"] = policy
    if max_in_flight is not None:
        node["max_in_flight"] = max_in_flight
    graph = Graph.from_dict({
        "name": f"test_{cls.name}",
        "inputs": [_stream(t, "in") for t in inputs],
        "side_packets": {f"side_{t.lower()}": None for t in side_packets},
        "nodes": [node],
    }, threads=threads)
    with GraphRun(graph, collect=[_stream(t, "out") for t in outputs], timeout=timeout) as r:
        out = r.run({_stream(t, "in"): pkts for t, pkts in inputs.items()},
                    {f"side_{t.lower()}": v for t, v in side_packets.items()})
    return {t: out[_stream(t, "out")] for t in outputs}
