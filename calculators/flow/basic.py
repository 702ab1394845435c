"""Basic flow calculators: PassThrough, Gate, Counter (a sequence source) and Collector.

Example nodes::

    - calculator: PassThrough          # forwards IN:i to OUT:i unchanged
      inputs: [frames, detections]
      outputs: [frames_out, detections_out]
    - calculator: Counter              # emits 0..count-1 at start + i*step microseconds
      outputs: [numbers]
      options: {count: 100, step: 33333}
"""

from __future__ import annotations

import time

from pydantic import BaseModel, ConfigDict, Field

from pipeline import STOP, Any, Calculator, Input, Output, SideOutput, register


@register
class PassThrough(Calculator):
    """Forwards each input ``IN:i`` to output ``OUT:i``, same timestamp, payload by reference.

    Ports: IN:0..n (Any) -> OUT:0..n (Any). Timestamps: unchanged; an empty input emits nothing.
    Example node:
        - calculator: PassThrough
          inputs: [a, b]
          outputs: [a_out, b_out]
    """

    inputs = {"IN": Input(Any, multiple=True, doc="streams to forward")}
    outputs = {"OUT": Output(Any, multiple=True, doc="OUT:i carries IN:i")}

    def open(self, ctx):
        self.pairs = [(tag, ctx.outputs["OUT" + tag[2:]]) for tag in ctx.input_tags
                      if ctx.connected("OUT" + tag[2:])]

    def process(self, ctx):
        inputs = ctx.inputs
        for tag, out in self.pairs:
            p = inputs[tag]
            if p is not None:
                out.add_packet(p)


class GateOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    allow: bool = Field(True, description="state before the first ALLOW packet")


@register
class Gate(Calculator):
    """Forwards ``IN:i`` to ``OUT:i`` only while allowed.

    Ports: IN:0..n (Any), ALLOW (bool, optional: each packet sets the state from its timestamp on)
    -> OUT:0..n. Options: allow (initial state). Timestamps: unchanged; blocked packets are dropped
    and counted.
    Example node:
        - calculator: Gate
          inputs: {IN:0: frames, ALLOW: enabled}
          outputs: {OUT:0: gated}
    """

    inputs = {"IN": Input(Any, multiple=True), "ALLOW": Input(bool, optional=True)}
    outputs = {"OUT": Output(Any, multiple=True)}
    Options = GateOptions

    def open(self, ctx):
        self.state = ctx.options.allow
        self.pairs = [(t, ctx.outputs["OUT" + t[2:]] if ctx.connected("OUT" + t[2:]) else None)
                      for t in ctx.input_tags if t.startswith("IN")]

    def process(self, ctx):
        allow = ctx.inputs.get("ALLOW")
        if allow is not None:
            self.state = bool(allow.value)
        for tag, out in self.pairs:
            p = ctx.inputs[tag]
            if p is None:
                continue
            if self.state and out is not None:
                out.add(p.value)
            elif not self.state:
                ctx.count_drop()


class CounterOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    count: int = Field(10, ge=0, description="number of packets")
    start: int = Field(0, description="first timestamp (microseconds)")
    step: int = Field(1, ge=1, description="timestamp step (microseconds)")
    first_value: int = Field(0, description="first value; values count up by 1")
    realtime: bool = Field(False, description="pace emission at the timestamps' rate")


@register
class Counter(Calculator):
    """A sequence source: emits ``first_value + i`` at ``start + i * step`` for i < count.

    Ports: -> OUT (int). Options: count, start, step, first_value, realtime. Timestamps: as stated.
    Example node:
        - calculator: Counter
          outputs: [numbers]
          options: {count: 100, step: 33333}
    """

    outputs = {"OUT": Output(int)}
    Options = CounterOptions

    def open(self, ctx):
        self.i = 0
        self.o = ctx.options
        self.t0 = time.monotonic()

    def process(self, ctx):
        o = self.o
        if self.i >= o.count:
            return STOP
        if o.realtime:
            due = self.t0 + self.i * o.step / 1e6
            delay = due - time.monotonic()
            if delay > 0 and ctx.stop_event.wait(delay):
                return STOP
        ctx.outputs["OUT"].add(o.first_value + self.i, o.start + self.i * o.step)
        self.i += 1
        return None


@register
class Collector(Calculator):
    """Collects ``(timestamp, value)`` of its input into a list, given as the side packet ITEMS.

    Ports: IN (Any); side output ITEMS (list). Timestamps: consumes.
    Example node:
        - calculator: Collector
          inputs: [results]
          side_outputs: {ITEMS: collected}     # graph.side_packet("collected") after the run
    """

    inputs = {"IN": Input(Any)}
    side_outputs = {"ITEMS": SideOutput(list)}

    def open(self, ctx):
        self.items = []
        if "ITEMS" in ctx.side_outputs:
            ctx.side_outputs["ITEMS"].set(self.items)

    def process(self, ctx):
        p = ctx.inputs["IN"]
        self.items.append((p.timestamp, p.value))
