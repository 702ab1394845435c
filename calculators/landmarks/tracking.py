"""The tracking loop's calculators: the previous frame's value, the gate in front of the detector, and
the choice of model files by MediaPipe's model_complexity.

A landmark tracking graph (docs/graphs.md, "ROI tracking loops") carries the rects computed from
frame t-1's landmarks back over a back edge; ``PreviousLoopback`` re-stamps them at frame t (as
MediaPipe's PreviousLoopbackCalculator), and ``DetectorGate`` lets frame t through to the detector
only when fewer objects are tracked than asked for (MediaPipe's ...HasMinSize + Gate).

- ``PreviousLoopback``: MAIN (Any), LOOP (Any, back edge) -> PREV_LOOP (Any).
- ``DetectorGate``: IMAGE (Image), ROIS (Rects, optional) -> IMAGE (Image).
- ``ModelChoice``: side inputs COMPLEXITY, MODEL (optional) -> side output MODEL (model_complexity -> model file).
Example nodes:
    - calculator: PreviousLoopback
      inputs: {MAIN: frames, LOOP: {stream: next_rois, back_edge: true}}
      outputs: {PREV_LOOP: tracked_rois}
    - calculator: DetectorGate
      inputs: {IMAGE: frames, ROIS: tracked_rois}
      outputs: {IMAGE: detector_frames}
      options: {min_count: 1}
"""

from __future__ import annotations

from collections import deque

from pydantic import BaseModel, ConfigDict, Field

from calculators.types import Image, Rects
from pipeline import STOP, Any, Calculator, Input, Output, SideInput, SideOutput, register


class PreviousLoopbackOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    disabled: bool = Field(False, description="send no previous value at all (every frame on its own: "
                                              "MediaPipe's static_image_mode / use_prev_landmarks false)")


@register
class PreviousLoopback(Calculator):
    """Sends, at each MAIN timestamp, the LOOP packet of the previous MAIN timestamp.

    Ports: MAIN (Any: only its timestamps are used), LOOP (Any, a back edge: one packet per MAIN
    timestamp, at that timestamp) -> PREV_LOOP (Any).
    Timestamps: the first MAIN timestamp gets no packet, only a bound (downstream sees no previous
    value); MAIN timestamp t_k gets the LOOP packet of t_(k-1) as soon as it arrives, re-stamped at
    t_k; when LOOP's bound passes t_(k-1) without a packet (a loop that sent nothing for that frame),
    t_k gets a bound only, as in MediaPipe (the node is called on LOOP's bound moves alone,
    ``process_timestamp_bounds``). When MAIN's bound moves without a packet (a stream that skips
    timestamps, e.g. masks on frames without a person), PREV_LOOP's bound follows it once the
    earlier MAIN packets are answered, and the next MAIN packet still gets the LOOP packet of the
    last MAIN packet (MediaPipe's empty-MAIN case). Only MAIN's timestamps are kept while waiting (never the frames), so memory stays small;
    the frames wait, bounded, in the queues of the nodes that sync on PREV_LOOP. When MAIN ends
    before the last LOOP packets came back, the frames still waiting get no previous value.
    Options: disabled (send nothing: bounds only).
    Example node:
        - calculator: PreviousLoopback
          inputs: {MAIN: frames, LOOP: {stream: next_rois, back_edge: true}}
          outputs: {PREV_LOOP: tracked_rois}
    """

    inputs = {"MAIN": Input(Any, doc="the frames"), "LOOP": Input(Any, doc="this frame's result (back edge)")}
    outputs = {"PREV_LOOP": Output(Any, doc="the previous frame's result, at this frame's timestamp")}
    Options = PreviousLoopbackOptions
    policy = "immediate"
    timestamp_offset = None
    process_timestamp_bounds = True

    def open(self, ctx) -> None:
        self.pending: deque = deque()        # MAIN timestamps not yet answered; ("bound", b) for a bound move
        self.main_bound: int | None = None   # MAIN's bound as last seen
        self.loops: deque = deque()          # LOOP packets not yet re-stamped
        self.prev_main: int | None = None    # the MAIN timestamp whose LOOP value the next one gets
        self.disabled = ctx.options.disabled
        self.out = ctx.outputs["PREV_LOOP"]

    def process(self, ctx) -> None:
        main, loop = ctx.inputs.get("MAIN"), ctx.inputs.get("LOOP")
        if main is not None:
            if self.disabled:
                self.out.set_next_timestamp_bound(main.timestamp + 1)
                return
            self.pending.append(main.timestamp)
            self.main_bound = main.timestamp + 1
        else:
            bound = ctx.input_bound("MAIN")
            if bound is not None and (self.main_bound is None or bound > self.main_bound):
                self.main_bound = bound
                self.pending.append(("bound", bound))
        if loop is not None and not self.disabled:
            self.loops.append(loop)
        self._flush(ctx.input_bound("LOOP") if loop is None else loop.timestamp + 1)

    def _flush(self, loop_bound: int) -> None:
        while self.pending:
            t = self.pending[0]
            if isinstance(t, tuple):  # MAIN's bound moved without a packet: PREV_LOOP's follows
                self.out.set_next_timestamp_bound(t[1])
                self.pending.popleft()
                continue
            if self.prev_main is None:  # the first frame has no previous one
                self.out.set_next_timestamp_bound(t + 1)
            else:
                while self.loops and self.loops[0].timestamp < self.prev_main:
                    self.loops.popleft()  # a LOOP packet for a frame that never passed MAIN
                if self.loops and self.loops[0].timestamp == self.prev_main:
                    self.out.add(self.loops.popleft().value, t)
                elif loop_bound > self.prev_main:  # LOOP moved past the previous frame: no value for it
                    self.out.set_next_timestamp_bound(t + 1)
                else:
                    return
            self.prev_main = t
            self.pending.popleft()


class DetectorGateOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_count: int = Field(1, ge=1, description="run the detector while fewer objects than this are tracked "
                                                "(max_num_faces / max_num_hands; 1 for pose)")


@register
class DetectorGate(Calculator):
    """Lets a frame through to the detector only when tracking has fewer than min_count objects.

    Ports: IMAGE (Image), ROIS (Rects, optional: the tracked rects at this frame; missing means
    none) -> IMAGE (Image: only the frames the detector must see; the bound advances for the others).
    The graph's stats count its calls (every frame) and the detector's (the frames detected on).
    Options: min_count.
    Example node:
        - calculator: DetectorGate
          inputs: {IMAGE: frames, ROIS: tracked_rois}
          outputs: {IMAGE: detector_frames}
          options: {min_count: 2}
    """

    inputs = {"IMAGE": Input(Image), "ROIS": Input(Rects, optional=True)}
    outputs = {"IMAGE": Output(Image)}
    Options = DetectorGateOptions

    def process(self, ctx) -> None:
        image = ctx.get("IMAGE")
        if image is None:
            return
        tracked = ctx.get("ROIS")
        if tracked is not None and len(tracked) >= ctx.options.min_count:
            return
        ctx.outputs["IMAGE"].add(image)


class ModelChoiceOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models: dict[int, str] = Field(..., min_length=1, description="model (zoo:NAME or path) per model_complexity")


@register
class ModelChoice(Calculator):
    """Picks the model file for MediaPipe's ``model_complexity`` (0 lite, 1 full, 2 heavy), or for a
    switch such as face mesh's ``refine_landmarks`` (false 0, true 1), unless a model is named outright.

    Ports: none (a side-packet node: it sends no stream and ends at once).
    Side inputs: COMPLEXITY (int) or SWITCH (bool: false is key 0, true key 1), one of them;
    MODEL (str, optional: when set, it wins over both).
    Side output: MODEL (str), for an ``Inference`` node's MODEL side input.
    Options: models {complexity: model}. An unknown complexity is an error naming the ones there are.
    Example node:
        - calculator: ModelChoice
          side_inputs: {COMPLEXITY: model_complexity, MODEL: landmark_model}
          side_outputs: {MODEL: chosen_landmark_model}
          options: {models: {0: "zoo:hand-landmark-lite", 1: "zoo:hand-landmark-full"}}
    """

    side_inputs = {"COMPLEXITY": SideInput(int, optional=True, doc="MediaPipe's model_complexity"),
                   "SWITCH": SideInput(bool, optional=True, doc="an on/off option (refine_landmarks): keys 0 and 1"),
                   "MODEL": SideInput(str, optional=True, doc="a model named outright (wins when set)")}
    side_outputs = {"MODEL": SideOutput(str, doc="the model to run")}
    Options = ModelChoiceOptions

    def open(self, ctx) -> None:
        side = ctx.side or {}
        model = side.get("MODEL")
        if model is None:
            switch = "SWITCH" in side
            if switch == ("COMPLEXITY" in side):
                raise ValueError(f"node {ctx.node!r} (ModelChoice): connect one of the side inputs COMPLEXITY "
                                 "and SWITCH")
            key = side["SWITCH"] if switch else side["COMPLEXITY"]
            models = ctx.options.models
            try:
                model = models[int(bool(key)) if switch else int(key)]
            except (KeyError, TypeError, ValueError):
                what = "the switch" if switch else "model_complexity"
                raise ValueError(f"node {ctx.node!r} (ModelChoice): {what} {key!r} has no model here; "
                                 f"choose one of {sorted(models)}") from None
        ctx.side_outputs["MODEL"].set(str(model))

    def process(self, ctx):
        return STOP
