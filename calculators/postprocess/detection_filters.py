"""Detection post-processing calculators: NMS, projection back to the frame, tracking, filtering.

- ``NonMaxSuppression``: DETECTIONS -> DETECTIONS (hard via ``cv2.dnn.NMSBoxes``, or MediaPipe's weighted).
- ``ProjectDetections``: DETECTIONS (tensor pixels), TRANSFORM -> DETECTIONS (frame pixels).
- ``IouTracking``: DETECTIONS -> DETECTIONS with stable ``tracker_ids``.
Timestamps: one output per input, same timestamp.
Example node:
    - calculator: NonMaxSuppression
      inputs: {DETECTIONS: candidates}
      outputs: {DETECTIONS: faces}
      options: {method: weighted, iou_threshold: 0.3}
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from calculators.postprocess.geometry import project_detections
from calculators.postprocess.nms import nms
from calculators.postprocess.tracking import IouTracker
from calculators.types import Detections, Transform
from pipeline import Calculator, Input, Output, register


class NonMaxSuppressionOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: Literal["hard", "weighted"] = "hard"
    iou_threshold: float = Field(0.45, ge=0.0, le=1.0, description="suppress overlaps above this IoU")
    class_agnostic: bool = True
    max_detections: int = Field(0, ge=0, description="keep at most this many (0: all)")
    min_score: float = Field(0.0, ge=0.0, le=1.0, description="drop detections below this score first")


@register
class NonMaxSuppression(Calculator):
    """Removes overlapping detections.

    Ports: DETECTIONS (Detections) -> DETECTIONS (Detections, best score first).
    Options: method hard|weighted (weighted: MediaPipe's, box and keypoints become the
    score-weighted mean of the suppressed cluster); iou_threshold (default 0.45; MediaPipe's face
    detector uses 0.3); class_agnostic (default true); max_detections (0: all); min_score.
    Example node:
        - calculator: NonMaxSuppression
          inputs: {DETECTIONS: candidates}
          outputs: {DETECTIONS: faces}
          options: {method: weighted, iou_threshold: 0.3}
    """

    inputs = {"DETECTIONS": Input(Detections)}
    outputs = {"DETECTIONS": Output(Detections)}
    Options = NonMaxSuppressionOptions

    def process(self, ctx) -> None:
        o = ctx.options
        det = ctx.inputs["DETECTIONS"].value
        if o.min_score > 0:
            det = det.select(det.scores >= o.min_score)
        ctx.outputs["DETECTIONS"].add(nms(det, o.iou_threshold, o.method, o.class_agnostic, o.max_detections))


class ProjectDetectionsOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    clip: bool = Field(False, description="clamp boxes and keypoints to the frame")


@register
class ProjectDetections(Calculator):
    """Maps detections from tensor pixels to source-frame pixels through the ImageToTensor transform.

    Ports: DETECTIONS (Detections, tensor pixels), TRANSFORM (Transform) -> DETECTIONS (frame pixels).
    Options: clip (clamp to the frame; default false, as MediaPipe).
    Example node:
        - calculator: ProjectDetections
          inputs: {DETECTIONS: faces_in_tensor, TRANSFORM: transform}
          outputs: {DETECTIONS: faces}
    """

    inputs = {"DETECTIONS": Input(Detections), "TRANSFORM": Input(Transform)}
    outputs = {"DETECTIONS": Output(Detections)}
    Options = ProjectDetectionsOptions

    def process(self, ctx) -> None:
        det, transform = ctx.get("DETECTIONS"), ctx.get("TRANSFORM")
        if det is None:
            return
        if transform is None:
            raise ValueError(f"node {ctx.node}: no TRANSFORM at timestamp {ctx.timestamp} for the detections; "
                             "connect the TRANSFORM output of the ImageToTensor that made the tensor")
        ctx.outputs["DETECTIONS"].add(project_detections(det, transform, ctx.options.clip))


class IouTrackingOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    iou_threshold: float = Field(0.3, ge=0.0, le=1.0, description="minimum IoU to continue a track")
    max_age: int = Field(5, ge=0, description="frames a track survives unseen")
    min_hits: int = Field(1, ge=1, description="frames a track must be seen before it is reported")


@register
class IouTracking(Calculator):
    """Gives detections stable ids across frames by IoU matching (see ``tracking.IouTracker``).

    Ports: DETECTIONS (Detections) -> DETECTIONS (Detections with tracker_ids).
    Options: iou_threshold (0.3), max_age (5 frames), min_hits (1).
    Example node:
        - calculator: IouTracking
          inputs: {DETECTIONS: faces}
          outputs: {DETECTIONS: tracked}
    """

    inputs = {"DETECTIONS": Input(Detections)}
    outputs = {"DETECTIONS": Output(Detections)}
    Options = IouTrackingOptions

    def open(self, ctx) -> None:
        o = ctx.options
        self.tracker = IouTracker(o.iou_threshold, o.max_age, o.min_hits)

    def process(self, ctx) -> None:
        ctx.outputs["DETECTIONS"].add(self.tracker.update(ctx.inputs["DETECTIONS"].value))
