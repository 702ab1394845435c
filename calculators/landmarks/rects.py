"""Region-of-interest calculators: rects from detections or landmarks, their transformation and the
association of new rects with tracked ones (MediaPipe's DetectionsToRects, AlignmentPointsRects,
RectTransformation, LandmarksToDetection + DetectionsToRects, HandLandmarksToRect,
AssociationNormRect). The geometry is in :mod:`calculators.landmarks.geometry`.

- ``DetectionsToRects``: DETECTIONS (Detections), IMAGE (optional, for the frame size) -> ROIS (Rects).
- ``RectTransformation``: ROIS -> ROIS (scaled, shifted, squared).
- ``LandmarksToRects``: LANDMARKS (Landmarks) -> ROIS (one rect per object, for the next frame).
- ``AssociateRects``: ROIS:0..n (later inputs win) -> ROIS (no two overlapping).
Timestamps: one output per input timestamp that has a packet, same timestamp (an empty input
list gives an empty Rects, so a tracking loop always carries a packet).
Example node:
    - calculator: DetectionsToRects
      inputs: {DETECTIONS: faces, IMAGE: gated}
      outputs: {ROIS: face_boxes}
      options: {mode: box, rotation: [0, 1], target_degrees: 0, max_count: 1}
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from calculators.landmarks.geometry import associate_rects, detections_to_rects, landmarks_to_rects, transform_rects
from calculators.types import Detections, Image, Landmarks, Rects
from pipeline import Calculator, Input, Output, register


class DetectionsToRectsOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["box", "alignment"] = Field(
        "box", description="box: the detection box; alignment: centred on keypoint rotation[0], a square of "
                           "twice the distance to keypoint rotation[1] (MediaPipe's AlignmentPointsRects)")
    rotation: Optional[tuple[int, int]] = Field(
        None, description="[start, end] keypoints whose vector sets the rotation (none: no rotation)")
    target_degrees: float = Field(0.0, description="angle the start->end vector is turned to (90: up)")
    max_count: int = Field(0, ge=0, description="keep the first N detections (0: all)")


@register
class DetectionsToRects(Calculator):
    """Turns detections into rotated rects (frame pixels), one per detection.

    Ports: DETECTIONS (Detections), IMAGE (Image, optional: gives the rects their frame size) -> ROIS (Rects).
    Options: mode box|alignment; rotation [start, end] keypoint indices; target_degrees; max_count.
    Example node:
        - calculator: DetectionsToRects
          inputs: {DETECTIONS: palms}
          outputs: {ROIS: palm_rects}
          options: {rotation: [0, 2], target_degrees: 90, max_count: 2}
    """

    inputs = {"DETECTIONS": Input(Detections), "IMAGE": Input(Image, optional=True)}
    outputs = {"ROIS": Output(Rects)}
    Options = DetectionsToRectsOptions

    def process(self, ctx) -> None:
        det = ctx.get("DETECTIONS")
        if det is None:
            return
        image = ctx.get("IMAGE")
        o = ctx.options
        size = image.size if image is not None else (0, 0)
        ctx.outputs["ROIS"].add(detections_to_rects(det, size, o.mode, o.rotation, o.target_degrees, o.max_count))


class RectTransformationOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scale: tuple[float, float] = Field((1.0, 1.0), description="[x, y] factors on width and height")
    shift: tuple[float, float] = Field((0.0, 0.0), description="[x, y] shift in widths/heights along the rect's axes")
    square: Optional[Literal["long", "short"]] = Field(None, description="make square on the long or short side first")
    rotation_degrees: float = Field(0.0, description="added to the rotation")


@register
class RectTransformation(Calculator):
    """Scales, shifts and squares rects (MediaPipe's RectTransformationCalculator, in pixels).

    Ports: ROIS (Rects) -> ROIS (Rects). Options: scale [x, y]; shift [x, y]; square long|short|null;
    rotation_degrees.
    Example node:
        - calculator: RectTransformation
          inputs: {ROIS: face_boxes}
          outputs: {ROIS: face_rois}
          options: {scale: [1.5, 1.5], square: long}
    """

    inputs = {"ROIS": Input(Rects)}
    outputs = {"ROIS": Output(Rects)}
    Options = RectTransformationOptions

    def process(self, ctx) -> None:
        o = ctx.options
        ctx.outputs["ROIS"].add(transform_rects(ctx.inputs["ROIS"].value, o.scale, o.shift, o.square, o.rotation_degrees))


class LandmarksToRectsOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["box", "alignment", "rotated_box"] = Field(
        "box", description="box: extent of the points; alignment: centre rotation_start, size twice the distance "
                           "to rotation_end; rotated_box: extent in the axes turned by the rotation (hands)")
    indices: Optional[list[int]] = Field(None, description="the points the box is measured on (default: all)")
    rotation_start: Optional[int] = Field(None, description="point the rotation vector starts at")
    rotation_end: Optional[list[int]] = Field(None, description="points whose weighted mean the vector ends at")
    rotation_end_weights: Optional[list[float]] = Field(None, description="weights of rotation_end (default: equal)")
    target_degrees: float = 0.0


@register
class LandmarksToRects(Calculator):
    """The rect of each object's landmarks: where to look for it in the next frame.

    Ports: LANDMARKS (Landmarks) -> ROIS (Rects, one per object, in order).
    Options: mode box|alignment|rotated_box; indices; rotation_start; rotation_end;
    rotation_end_weights; target_degrees.
    Example node:
        - calculator: LandmarksToRects
          inputs: {LANDMARKS: face_landmarks}
          outputs: {ROIS: face_boxes_next}
          options: {mode: box, rotation_start: 33, rotation_end: [263]}
    """

    inputs = {"LANDMARKS": Input(Landmarks)}
    outputs = {"ROIS": Output(Rects)}
    Options = LandmarksToRectsOptions

    def process(self, ctx) -> None:
        o = ctx.options
        lm = ctx.inputs["LANDMARKS"].value
        ctx.outputs["ROIS"].add(landmarks_to_rects(lm.points, lm.frame_size, o.mode, o.indices, o.rotation_start,
                                                   o.rotation_end, o.rotation_end_weights, o.target_degrees))


class AssociateRectsOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_similarity: float = Field(0.5, ge=0.0, le=1.0, description="IoU above which two rects are one object")


@register
class AssociateRects(Calculator):
    """Merges rect lists so that one object keeps one rect (MediaPipe's AssociationNormRect).

    Ports: ROIS:0..n (Rects, in increasing priority: give the new detections first and the tracked
    rects last) -> ROIS (Rects). A rect overlapping an earlier-kept one by IoU (of the axis-aligned
    boxes) above min_similarity replaces it. Missing inputs count as empty; always emits.
    Options: min_similarity (default 0.5).
    Example node:
        - calculator: AssociateRects
          inputs: {ROIS:0: detected_rois, ROIS:1: tracked_rois}
          outputs: {ROIS: rois}
    """

    inputs = {"ROIS": Input(Rects, multiple=True)}
    outputs = {"ROIS": Output(Rects)}
    Options = AssociateRectsOptions

    def open(self, ctx) -> None:
        self.tags = sorted((i.tag for i in ctx._node.spec.inputs), key=lambda t: int(t.split(":")[1]) if ":" in t else 0)

    def process(self, ctx) -> None:
        lists = [p.value for p in (ctx.inputs.get(t) for t in self.tags) if p is not None]
        ctx.outputs["ROIS"].add(associate_rects(lists, ctx.options.min_similarity))
