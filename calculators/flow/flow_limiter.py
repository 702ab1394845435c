"""FlowLimiter: admits a new frame only when the previous one has finished.

For live sources: put it in front of the slow part of the graph and feed the end of that part
back into FINISHED through a back edge. Frames arriving while ``max_in_flight`` frames are being
processed are dropped (or kept, up to ``max_in_queue``, newest first) and counted, so latency never
grows when inference is slower than the camera. Given the source's stream info as its INFO side
input, it limits only live sources (``info.live``) and admits every frame of a file, so one graph
serves both.

Example node:
    - calculator: FlowLimiter
      inputs: {IN: frames, FINISHED: {stream: detections, back_edge: true}}
      outputs: {OUT: throttled}
      options: {max_in_flight: 1, max_in_queue: 0}
"""

from __future__ import annotations

from collections import deque

from pydantic import BaseModel, ConfigDict, Field

from calculators.sources.common import VideoInfo
from pipeline import Any, Calculator, Input, Output, SideInput, register


class FlowLimiterOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_in_flight: int = Field(1, ge=1, description="frames admitted and not yet finished")
    max_in_queue: int = Field(0, ge=0, description="frames kept waiting (newest kept, oldest dropped)")


@register
class FlowLimiter(Calculator):
    """Drops frames while downstream is busy.

    Ports: IN (Any), FINISHED (Any, back edge: one packet per finished frame) -> OUT (Any).
    Side inputs: INFO (VideoInfo, optional): the source's stream info; when it is not live (a
    file, images), every frame is admitted and nothing is dropped.
    Options: max_in_flight, max_in_queue. Timestamps: OUT carries admitted IN packets at their own
    timestamps; a dropped frame advances OUT's bound so synced consumers do not wait for it.
    Example node:
        - calculator: FlowLimiter
          inputs: {IN: frames, FINISHED: {stream: detections, back_edge: true}}
          outputs: {OUT: throttled}
    """

    inputs = {"IN": Input(Any, doc="frames"), "FINISHED": Input(Any, doc="one packet per finished frame")}
    outputs = {"OUT": Output(Any, doc="admitted frames")}
    side_inputs = {"INFO": SideInput(VideoInfo, optional=True, doc="the source's stream info: limit only when live")}
    Options = FlowLimiterOptions
    policy = "immediate"
    timestamp_offset = None

    def open(self, ctx):
        self.in_flight = 0
        self.queue: deque = deque()
        self.opts = ctx.options
        self.out = ctx.outputs["OUT"]
        info = (ctx.side or {}).get("INFO")
        self.admit_all = info is not None and not info.live  # a file waits for the graph: never drop

    def process(self, ctx):
        if self.admit_all:
            p = ctx.inputs.get("IN")
            if p is not None:
                self.out.add(p.value, p.timestamp)
            return
        finished = ctx.inputs.get("FINISHED")
        if finished is not None:
            self.in_flight = max(0, self.in_flight - 1)
            if self.queue and self.in_flight < self.opts.max_in_flight:
                p = self.queue.popleft()
                self.in_flight += 1
                self.out.add(p.value, p.timestamp)
            return
        p = ctx.inputs.get("IN")
        if p is None:
            return
        if self.in_flight < self.opts.max_in_flight and not self.queue:
            self.in_flight += 1
            self.out.add(p.value, p.timestamp)
        elif self.opts.max_in_queue > 0:
            self.queue.append(p)
            if len(self.queue) > self.opts.max_in_queue:
                self.queue.popleft()
                ctx.count_drop()
        else:
            ctx.count_drop()
            self.out.set_next_timestamp_bound(p.timestamp + 1)
