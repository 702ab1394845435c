"""FlowLimiter: admits a new frame only when the previous one has finished.

For live sources: put it in front of the slow part of the graph and feed the end of that part
back into FINISHED through a back edge. Frames arriving while ``max_in_flight`` frames are being
processed are dropped (or kept, up to ``max_in_queue``, newest first) and counted, so latency never
grows when inference is slower than the camera.

It counts timestamps in flight, as MediaPipe's FlowLimiterCalculator does: when FINISHED's timestamp
bound moves past t, every frame admitted at or before t is finished, whether the bound moved by a
packet at t or without one (a detector that emits nothing for a frame: the offset contract advances
its bound).
It asks to be called on bound moves alone (``process_timestamp_bounds``), so a frame that ends with
no packet frees its slot too.

Example node:
    - calculator: FlowLimiter
      inputs: {IN: frames, FINISHED: {stream: detections, back_edge: true}}
      outputs: {OUT: throttled}
      options: {max_in_flight: 1, max_in_queue: 0}
"""

from __future__ import annotations

from collections import deque

from pydantic import BaseModel, ConfigDict, Field

from pipeline import Any, Calculator, Input, Output, Timestamp, register


class FlowLimiterOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_in_flight: int = Field(1, ge=1, description="frames admitted and not yet finished")
    max_in_queue: int = Field(0, ge=0, description="frames kept waiting (newest kept, oldest dropped)")


@register
class FlowLimiter(Calculator):
    """Drops frames while downstream is busy.

    Ports: IN (Any), FINISHED (Any, back edge: its packets or bound mark the frames finished) ->
    OUT (Any). Options: max_in_flight, max_in_queue. Timestamps: OUT carries admitted IN packets at
    their own timestamps; a dropped frame advances OUT's bound so synced consumers do not wait for
    it; a frame at t is finished when FINISHED's bound passes t (a packet at t, or no packet).
    Example node:
        - calculator: FlowLimiter
          inputs: {IN: frames, FINISHED: {stream: detections, back_edge: true}}
          outputs: {OUT: throttled}
    """

    inputs = {"IN": Input(Any, doc="frames"),
              "FINISHED": Input(Any, doc="the end of the limited section: its bound passing t finishes frame t")}
    outputs = {"OUT": Output(Any, doc="admitted frames")}
    Options = FlowLimiterOptions
    policy = "immediate"
    timestamp_offset = None
    process_timestamp_bounds = True

    def open(self, ctx):
        self.in_flight: deque[int] = deque()  # timestamps admitted and not finished yet
        self.finished_bound = Timestamp.MIN  # FINISHED's bound when last seen
        self.queue: deque = deque()
        self.opts = ctx.options
        self.out = ctx.outputs["OUT"]

    def process(self, ctx):
        in_flight = self.in_flight
        finished_below = ctx.input_bound("FINISHED")
        if finished_below > self.finished_bound:  # FINISHED moved on: frames below it are done
            self.finished_bound = finished_below
            while in_flight and in_flight[0] < finished_below:
                in_flight.popleft()
        limit = self.opts.max_in_flight
        while self.queue and len(in_flight) < limit:  # a slot is free: the waiting frames go first
            self._admit(self.queue.popleft())
        p = ctx.inputs.get("IN")
        if p is None:
            return
        if len(in_flight) < limit and not self.queue:
            self._admit(p)
        elif self.opts.max_in_queue > 0:
            self.queue.append(p)
            if len(self.queue) > self.opts.max_in_queue:
                self.queue.popleft()
                ctx.count_drop()
        else:
            ctx.count_drop()
            self.out.set_next_timestamp_bound(p.timestamp + 1)

    def _admit(self, p) -> None:
        self.in_flight.append(p.timestamp)
        self.out.add(p.value, p.timestamp)
