"""Run one calculator on timestamped packets, in the manner of MediaPipe's CalculatorRunner.

    out = run_calculator("PassThrough", inputs={"IN:0": [(0, "a"), (10, "b")]})
    assert out["OUT:0"] == [(0, "a"), (10, "b")]
"""

from __future__ import annotations

from typing import Iterable

from . import registry
from .graph import Graph


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
    if not getattr(cls, "name", ""):
        registry.register(cls)
    inputs = {k: list(v) for k, v in (inputs or {}).items()}
    if outputs is None:
        n_indexed = max([sum(1 for k in inputs if k.split(":")[0] == t) for t, p in cls.inputs.items()
                         if p.multiple] + [1])
        outputs = []
        for t, port in cls.outputs.items():
            outputs += [f"{t}:{i}" for i in range(n_indexed)] if port.multiple else [t]
    out_tags = outputs
    side_packets = dict(side_packets or {})
    node = {
        "calculator": cls.name,
        "inputs": {},
        "outputs": {t: _stream(t, "out") for t in out_tags},
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
    results: dict[str, list] = {t: [] for t in out_tags}
    for tag in out_tags:
        graph.observe(_stream(tag, "out"), lambda p, tag=tag: results[tag].append((p.timestamp, p.value)))
    graph.start({f"side_{t.lower()}": v for t, v in side_packets.items()})
    try:
        merged = sorted(((t, i, tag, v) for tag, pkts in inputs.items() for i, (t, v) in enumerate(pkts)),
                        key=lambda r: (r[0], r[1]))
        for t, _, tag, v in merged:
            graph.add_packet(_stream(tag, "in"), v, t)
        graph.close_all_inputs()
    except BaseException:
        graph.cancel()
        graph.wait(timeout)
        raise
    graph.wait(timeout)
    return results
