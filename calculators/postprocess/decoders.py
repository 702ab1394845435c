"""Detection decoders: model output tensors -> Detections in tensor pixels.

- ``SsdDetectionsDecoder``: SSD anchors + regressors (MediaPipe BlazeFace and friends).
- ``CenterFaceDecoder``: CenterFace heatmap/scale/offset/landmarks.
- ``YoloDecoder``: YOLO v5/v8-style outputs.

Ports: TENSORS (model outputs: Tensors, Tensor, list or dict) -> DETECTIONS (Detections, in the
pixels of the network input; map them to the frame with ``ProjectDetections``). None applies NMS:
a ``NonMaxSuppression`` node follows, as in MediaPipe.
Timestamps: one DETECTIONS per TENSORS, same timestamp (possibly empty Detections).
Example node:
    - calculator: SsdDetectionsDecoder
      inputs: {TENSORS: raw}
      outputs: {DETECTIONS: candidates}
      options: {preset: blazeface_short, min_score: 0.5}
"""

from __future__ import annotations

from typing import Literal, Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from calculators.postprocess.centerface import decode_centerface
from calculators.postprocess.ssd import PRESETS, SsdAnchorOptions, SsdDecodeOptions, decode_ssd, ssd_anchors, ssd_layout
from calculators.postprocess.tensors import named_or_first, output_arrays, pick
from calculators.postprocess.yolo import decode_yolo
from calculators.types import Detections
from pipeline import Any, Calculator, Input, Output, register


def _labels(class_ids: np.ndarray, labels: list[str]) -> tuple[str, ...]:
    return tuple(labels[i] if i < len(labels) else str(i) for i in class_ids)


class SsdDetectionsDecoderOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    preset: Optional[Literal["blazeface_short", "blazeface_full", "pose_detection", "palm_detection", "auto"]] = Field(
        "blazeface_short", description="MediaPipe's anchor and decode options for a known model; auto: the "
                                       "preset whose box count the regressors have")
    anchors: Optional[dict] = Field(None, description="SsdAnchorsCalculatorOptions fields (override the preset)")
    decode: Optional[dict] = Field(None, description="TensorsToDetectionsCalculatorOptions fields (override)")
    min_score: Optional[float] = Field(None, ge=0.0, le=1.0, description="min_score_thresh (default: preset's)")
    boxes_output: Optional[str] = Field(None, description="name of the regressors output (default: by shape)")
    scores_output: Optional[str] = Field(None, description="name of the scores output (default: by shape)")
    labels: list[str] = Field(default_factory=lambda: ["face"])


@register
class SsdDetectionsDecoder(Calculator):
    """Decodes SSD regressors and scores against MediaPipe-style anchors.

    Ports: TENSORS (model outputs) -> DETECTIONS (Detections in tensor pixels, with keypoints).
    Options: preset blazeface_short|blazeface_full|pose_detection|palm_detection|auto|null (auto: the
    first packet's box count picks it: 896 short range, 2304 full range, ...); anchors {SsdAnchorsCalculatorOptions
    fields}; decode {TensorsToDetectionsCalculatorOptions fields}; min_score; boxes_output,
    scores_output (output names; default: told apart by shape); labels (default ["face"]).
    Example node:
        - calculator: SsdDetectionsDecoder
          inputs: {TENSORS: raw}
          outputs: {DETECTIONS: candidates}
          options: {preset: blazeface_short}
    """

    inputs = {"TENSORS": Input(Any, doc="model outputs: regressors (1, N, coords) and scores (1, N, classes)")}
    outputs = {"DETECTIONS": Output(Detections, doc="candidates in tensor pixels, before NMS")}
    Options = SsdDetectionsDecoderOptions

    def open(self, ctx) -> None:
        o = ctx.options
        if o.preset is None and (o.anchors is None or o.decode is None):
            raise ValueError(f"node {ctx.node}: without a preset, give both `anchors` and `decode` options")
        self.o = o
        self.node = ctx.node
        if o.preset != "auto":
            self._configure(o.preset)

    def _configure(self, preset: str | None) -> None:
        o = self.o
        base_a, base_d = PRESETS[preset] if preset else (None, None)
        a = {**(base_a.model_dump() if base_a else {}), **(o.anchors or {})}
        d = {**(base_d.model_dump() if base_d else {}), **(o.decode or {})}
        if o.min_score is not None:
            d["min_score_thresh"] = o.min_score
        self.anchor_options = SsdAnchorOptions(**a)
        self.decode_options = SsdDecodeOptions(**d)
        self.anchors = ssd_anchors(self.anchor_options)
        self.layout = ssd_layout(self.anchors, self.decode_options)  # once, not per frame
        self.size = (self.anchor_options.input_size_width, self.anchor_options.input_size_height)
        sx, sy = self.size
        self.box_scale = np.array([sx, sy, sx, sy], np.float32)
        self.point_scale = np.array([sx, sy], np.float32)

    def _auto_preset(self, arrays) -> str:
        counts = {d.num_boxes: name for name, (_a, d) in PRESETS.items()}
        n_coords = {d.num_coords for _a, d in PRESETS.values()}
        for _name, a in arrays:
            if a.ndim >= 2 and a.shape[-1] in n_coords and a.shape[-2] in counts:
                return counts[a.shape[-2]]
        shapes = [tuple(a.shape) for _name, a in arrays]
        raise ValueError(f"node {self.node}: preset auto: no output has a box count of a known preset "
                         f"({', '.join(f'{n}: {c} boxes' for c, n in counts.items())}); got shapes {shapes}")

    def process(self, ctx) -> None:
        arrays = output_arrays(ctx.inputs["TENSORS"].value)
        if not hasattr(self, "decode_options"):
            self._configure(self._auto_preset(arrays))
        nc = self.decode_options.num_coords
        boxes = pick(arrays, self.o.boxes_output, lambda a: a.shape[-1] == nc and a.ndim >= 2, "the box regressors")
        scores = pick(arrays, self.o.scores_output, lambda a: a.shape[-1] != nc and a.ndim >= 2, "the scores")
        xyxy, s, c, kp = decode_ssd(boxes, scores, self.anchors, self.decode_options, self.layout)
        # Into tensor pixels before the one Detections is built (scale_detections' arithmetic,
        # without validating a second object per frame).
        xyxy, kp = xyxy * self.box_scale, kp * self.point_scale
        ctx.outputs["DETECTIONS"].add(Detections(xyxy, s, c, _labels(c, self.o.labels), kp))


class CenterFaceDecoderOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(0.5, ge=0.0, le=1.0, description="minimum heatmap score")
    outputs: Optional[list[str]] = Field(
        None, min_length=4, max_length=4,
        description="names of the heatmap, scale, offset and landmarks outputs (default: by channels)")
    label: str = "face"


@register
class CenterFaceDecoder(Calculator):
    """Decodes CenterFace's heatmap, scale, offset and landmark maps into face boxes and 5 keypoints.

    Ports: TENSORS (model outputs) -> DETECTIONS (Detections in tensor pixels, before NMS).
    Options: threshold (default 0.5); outputs [heatmap, scale, offset, landmarks] names (default:
    told apart by channel count 1/2/2/10, scale before offset as the model emits them); label.
    Example node:
        - calculator: CenterFaceDecoder
          inputs: {TENSORS: raw}
          outputs: {DETECTIONS: candidates}
          options: {threshold: 0.5}
    """

    inputs = {"TENSORS": Input(Any, doc="heatmap (1,1,h,w), scale (1,2,h,w), offset (1,2,h,w), landmarks (1,10,h,w)")}
    outputs = {"DETECTIONS": Output(Detections)}
    Options = CenterFaceDecoderOptions

    def process(self, ctx) -> None:
        o = ctx.options
        arrays = output_arrays(ctx.inputs["TENSORS"].value)
        if o.outputs is not None:
            maps = [named_or_first(arrays, n, n) for n in o.outputs]
        else:
            by_channels: dict[int, list[np.ndarray]] = {}
            for _, a in arrays:
                if a.ndim == 4:
                    by_channels.setdefault(a.shape[1], []).append(a)
            if len(by_channels.get(1, [])) != 1 or len(by_channels.get(2, [])) != 2 or len(by_channels.get(10, [])) != 1:
                raise ValueError(f"node {ctx.node}: CenterFace outputs must be 1, 2, 2 and 10 channel maps, got "
                                 f"{[(n, a.shape) for n, a in arrays]}")
            maps = [by_channels[1][0], by_channels[2][0], by_channels[2][1], by_channels[10][0]]
        xyxy, s, kp = decode_centerface(*maps, threshold=o.threshold)
        ctx.outputs["DETECTIONS"].add(Detections(xyxy, s, None, (o.label,) * len(s), kp))


class YoloDecoderOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal["auto", "v5", "v8"] = "auto"
    score_threshold: float = Field(0.25, ge=0.0, le=1.0)
    labels: list[str] = Field(default_factory=list, description="class names by id (default: the id)")
    output: Optional[str] = Field(None, description="name of the output to decode (default: the only/first)")


@register
class YoloDecoder(Calculator):
    """Decodes YOLO v5-style (1, N, 5+C) or v8-style (1, 4+C, N) outputs into boxes and classes.

    Ports: TENSORS (model outputs) -> DETECTIONS (Detections in tensor pixels, before NMS).
    Options: version auto|v5|v8; score_threshold (default 0.25); labels (class names by id); output
    (name of the output to decode; default the first).
    Example node:
        - calculator: YoloDecoder
          inputs: {TENSORS: raw}
          outputs: {DETECTIONS: candidates}
          options: {version: v8, labels: [person, bicycle, car]}
    """

    inputs = {"TENSORS": Input(Any)}
    outputs = {"DETECTIONS": Output(Detections)}
    Options = YoloDecoderOptions

    def process(self, ctx) -> None:
        o = ctx.options
        arrays = output_arrays(ctx.inputs["TENSORS"].value)
        out = named_or_first(arrays, o.output, "the detections")
        n = len(o.labels) or None
        xyxy, s, c = decode_yolo(out, o.version, o.score_threshold, n)
        ctx.outputs["DETECTIONS"].add(Detections(xyxy, s, c, _labels(c, o.labels)))
