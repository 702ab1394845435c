"""Landmark calculators: decoding a landmark model's outputs back into the frame, and smoothing.

- ``TensorsToLandmarks``: TENSORS (the model's outputs for N crops), ROIS (the N rects cropped) ->
  LANDMARKS (Landmarks in frame pixels, objects whose presence score passed), ROIS (their rects),
  AUX (Landmarks: a range of extra points, e.g. pose's alignment points). MediaPipe's
  TensorsToFloats + Thresholding + TensorsToLandmarks + RefineLandmarksFromHeatmap +
  LandmarkProjection + WorldLandmarkProjection + TensorsToClassification, as one step per crop.
- ``LandmarksSmoothing``: LANDMARKS, ROIS (optional: object scale) -> LANDMARKS (One Euro or
  velocity filter per coordinate, low-pass on visibility; MediaPipe's LandmarksSmoothing and
  VisibilitySmoothing).
Timestamps: one output per timestamp with a ROIS (resp. LANDMARKS) packet, same timestamp;
always a packet (possibly no objects), so a tracking loop closed on them never waits.
Example node:
    - calculator: TensorsToLandmarks
      inputs: {TENSORS: raw, ROIS: rois}
      outputs: {LANDMARKS: faces}
      options: {num_landmarks: 468, tensor_size: [192, 192], score_activation: sigmoid, min_score: 0.5}
"""

from __future__ import annotations

from typing import Literal, Optional, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from calculators.landmarks.decode import decode_landmarks, refine_from_heatmap, rotate_world, sigmoid_float
from calculators.landmarks.filters import LandmarksSmoother, LowPassFilter
from calculators.landmarks.geometry import project_points
from calculators.postprocess.tensors import output_arrays
from calculators.types import Landmarks, Rects
from pipeline import Any, Calculator, Input, Output, register

Activation = Literal["none", "sigmoid"]


class TensorsToLandmarksOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    num_landmarks: Union[int, list[int]] = Field(..., description="points in the landmark tensor (all of them, aux "
                                                                  "included); a list: the one count that splits "
                                                                  "each crop's tensor evenly (face mesh: [468, 478])")
    tensor_size: tuple[int, int] = Field(..., description="the model input (width, height) the points are in")
    landmarks_output: int = Field(0, ge=0, description="position of the landmark tensor among the model outputs")
    score_output: Optional[int] = Field(1, ge=0, description="position of the object presence score (null: none)")
    score_activation: Activation = Field("none", description="sigmoid where the model gives a logit (face mesh)")
    min_score: float = Field(0.5, ge=0.0, le=1.0, description="objects scoring at or below this are dropped "
                                                               "(min_tracking_confidence)")
    visibility_activation: Activation = "none"
    presence_activation: Activation = "none"
    normalize_z: float = Field(1.0, gt=0, description="z is divided by this (hands: 0.4)")
    flip_horizontally: bool = False
    keep: Optional[int] = Field(None, ge=1, description="the first N points form LANDMARKS (default: all)")
    aux: Optional[tuple[int, int]] = Field(None, description="[begin, end) points sent on AUX")
    world_output: Optional[int] = Field(None, ge=0, description="position of the world landmark tensor (metres)")
    handedness_output: Optional[int] = Field(None, ge=0, description="position of a binary classification score")
    class_labels: tuple[str, str] = Field(("Left", "Right"), description="labels for score s and 1 - s")
    heatmap_output: Optional[int] = Field(None, ge=0, description="position of a (1, H, W, K) heatmap to refine x, y")
    heatmap_kernel: int = Field(7, ge=1)
    heatmap_min_confidence: float = Field(0.5, ge=0.0, le=1.0)
    label: str = Field("", description="label of every object when there is no handedness")


@register
class TensorsToLandmarks(Calculator):
    """Decodes landmark tensors of N crops and projects them through their rects into the frame.

    Ports: TENSORS (the model's outputs, batch N; missing when there were no rects), ROIS (Rects:
    the N rects cropped, in the same order) -> LANDMARKS (Landmarks, frame pixels), ROIS (Rects of
    the objects kept, optional), AUX (Landmarks of the ``aux`` points, optional).
    ``num_landmarks`` may list several counts (a graph whose model is chosen at run time, e.g. the
    face mesh with or without refine_landmarks): each packet uses the one count that splits the
    tensor evenly, an error when none or several do.
    For each crop: the presence score (``score_output``, sigmoid if asked) must be above
    ``min_score``; points x, y, z (z / normalize_z) in tensor pixels, visibility and presence
    (sigmoid if asked), refined from the heatmap if given, mapped through the rect (z scaled as x);
    world landmarks turned by the rect's rotation; handedness: label class_labels[0] with score s
    when s >= 0.5, else class_labels[1] with 1 - s.
    Options: num_landmarks, tensor_size, landmarks_output, score_output, score_activation,
    min_score, visibility_activation, presence_activation, normalize_z, flip_horizontally, keep,
    aux, world_output, handedness_output, class_labels, heatmap_output, heatmap_kernel,
    heatmap_min_confidence, label.
    Example node:
        - calculator: TensorsToLandmarks
          inputs: {TENSORS: raw, ROIS: rois}
          outputs: {LANDMARKS: hands, ROIS: hand_rois}
          options: {num_landmarks: 21, tensor_size: [224, 224], normalize_z: 0.4, world_output: 3,
                    handedness_output: 2}
    """

    inputs = {"TENSORS": Input(Any, optional=True, doc="model outputs for N crops"),
              "ROIS": Input(Rects, doc="the N rects the crops were taken from")}
    outputs = {"LANDMARKS": Output(Landmarks), "ROIS": Output(Rects, optional=True),
               "AUX": Output(Landmarks, optional=True)}
    Options = TensorsToLandmarksOptions

    def open(self, ctx) -> None:
        o = ctx.options
        self.o = o
        self.counts = [o.num_landmarks] if isinstance(o.num_landmarks, int) else sorted(set(o.num_landmarks))
        if not self.counts or min(self.counts) < 1:
            raise ValueError(f"node {ctx.node}: num_landmarks must be one or more counts >= 1, got {o.num_landmarks}")
        least = self.counts[0]
        if (o.keep or 1) > least or (o.aux and not 0 <= o.aux[0] < o.aux[1] <= least):
            raise ValueError(f"node {ctx.node}: keep/aux must lie within the {least} landmarks")
        self.where = f"node {ctx.node!r} (TensorsToLandmarks)"
        self.wired = {tag for tag in ctx._node.spec.outputs}  # ROIS and AUX are built only when read

    def _count(self, values: int) -> int:
        """The landmark count of a tensor of ``values`` values per crop."""
        fits = [c for c in self.counts if values % c == 0]
        if len(fits) != 1:
            raise ValueError(f"{self.where}: output {self.o.landmarks_output} has {values} values per crop, "
                             + (f"not a multiple of num_landmarks={self.o.num_landmarks}: is this the right "
                                "landmark model?" if not fits else
                                f"which splits into each of {fits} landmarks (num_landmarks must tell them apart)"))
        return fits[0]

    def _array(self, arrays, index: int | None, what: str, n: int):
        if index is None:
            return None
        if index >= len(arrays):
            raise ValueError(f"{self.where}: {what} is output {index}, but the model has {len(arrays)} outputs "
                             f"{[(name, a.shape) for name, a in arrays]}: is this the right landmark model?")
        a = arrays[index][1]
        if a.shape[0] != n:
            raise ValueError(f"{self.where}: {what} has batch {a.shape[0]} for {n} rects")
        return a

    def process(self, ctx) -> None:
        o = self.o
        rects: Rects = ctx.inputs["ROIS"].value
        size = rects.frame_size
        packet = ctx.inputs.get("TENSORS")
        n = len(rects)
        if n and packet is None:
            raise ValueError(f"{self.where}: {n} rects at {ctx.timestamp} but no model outputs")
        arrays = output_arrays(packet.value) if packet is not None else []
        rows, count = [], self.counts[0]
        if n:
            lm_t = self._array(arrays, o.landmarks_output, "the landmark tensor", n)
            count = self._count(lm_t[0].size)
            score_t = self._array(arrays, o.score_output, "the presence score", n)
            world_t = self._array(arrays, o.world_output, "the world landmarks", n)
            hand_t = self._array(arrays, o.handedness_output, "the handedness", n)
            heat_t = self._array(arrays, o.heatmap_output, "the heatmap", n)
            # each crop's score as a Python float (one conversion for all crops: few numpy calls
            # per frame, as this runs on a tracking loop's path)
            scores = score_t.reshape(n, -1)[:, 0].tolist() if score_t is not None else None
            for i in range(n):
                score = 1.0
                if scores is not None:
                    score = scores[i]
                    score = sigmoid_float(score) if o.score_activation == "sigmoid" else score
                    if not score > o.min_score:
                        continue
                pts, vis, pres = decode_landmarks(lm_t[i], count, o.tensor_size,
                                                  visibility_activation=o.visibility_activation,
                                                  presence_activation=o.presence_activation,
                                                  flip_horizontally=o.flip_horizontally, normalize_z=o.normalize_z)
                if heat_t is not None:
                    tw, th = o.tensor_size
                    xy = refine_from_heatmap(pts[:, :2] / (tw, th), heat_t[i], o.heatmap_kernel,
                                             o.heatmap_min_confidence)
                    pts[:, :2] = xy * (tw, th)
                frame_pts = project_points(pts, rects.data[i], o.tensor_size)
                world = None
                if world_t is not None:
                    w = np.asarray(world_t[i], np.float64).reshape(-1)
                    if w.size % count:
                        raise ValueError(f"{self.where}: world landmarks of {w.size} values for {count} points")
                    world = rotate_world(w.reshape(count, -1)[:, :3], float(rects.data[i, 4]))
                label, label_score = o.label, None
                if hand_t is not None:
                    s = float(np.asarray(hand_t[i]).reshape(-1)[0])
                    label, label_score = (o.class_labels[0], s) if s >= 1.0 - s else (o.class_labels[1], 1.0 - s)
                rows.append((i, score, frame_pts, vis, pres, world, label, label_score))
        self._emit(ctx, rows, rects, size, o.keep or count)

    def _emit(self, ctx, rows, rects: Rects, size, k: int) -> None:
        o = self.o

        def build(sl: slice, count: int) -> Landmarks:
            if not rows:
                return Landmarks.empty(count, size)
            if len(rows) == 1:  # one object (a tracked face): a view, not np.stack's copy
                stack = lambda j: rows[0][j][None, sl]  # noqa: E731
            else:
                stack = lambda j: np.stack([r[j][sl] for r in rows])  # noqa: E731
            return Landmarks(
                stack(2), [r[1] for r in rows],
                stack(3) if rows[0][3] is not None else None, stack(4) if rows[0][4] is not None else None,
                [r[6] for r in rows], [r[7] for r in rows] if rows[0][7] is not None else None,
                stack(5) if rows[0][5] is not None else None, size)

        ctx.outputs["LANDMARKS"].add(build(slice(0, k), k))
        if "ROIS" in self.wired:
            ctx.outputs["ROIS"].add(rects if len(rows) == len(rects) else rects.select([r[0] for r in rows]))
        if o.aux is not None and "AUX" in self.wired:
            ctx.outputs["AUX"].add(build(slice(o.aux[0], o.aux[1]), o.aux[1] - o.aux[0]))


class LandmarksSmoothingOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="false: landmarks pass unchanged (smooth_landmarks false)")
    filter: Literal["one_euro", "velocity"] = "one_euro"
    target: Literal["points", "world"] = Field("points", description="smooth the pixel points or the world landmarks")
    frequency: float = Field(30.0, gt=0, description="one_euro: the rate assumed until two timestamps give it")
    min_cutoff: float = Field(1.0, gt=0)
    beta: float = 0.0
    derivate_cutoff: float = Field(1.0, gt=0)
    window_size: int = Field(5, ge=1, description="velocity: value changes kept")
    velocity_scale: float = Field(10.0, description="velocity: scale on the windowed velocity")
    min_allowed_object_scale: float = Field(1e-6, ge=0)
    disable_value_scaling: bool = Field(False, description="filter values as they are (world landmarks)")
    visibility_alpha: Optional[float] = Field(None, ge=0.0, le=1.0,
                                              description="low-pass factor on visibility (null: not smoothed)")


@register
class LandmarksSmoothing(Calculator):
    """Smooths landmarks over time with MediaPipe's One Euro or velocity filter, per coordinate.

    Ports: LANDMARKS (Landmarks), ROIS (Rects, optional: one rect per object, whose mean side is
    the object scale; default: the extent of the points) -> LANDMARKS (Landmarks).
    Timestamps are the filters' clock (one_euro's frequency follows them). Objects are filtered by
    position in the list; a frame with no objects, or a different count, restarts the filters.
    Options: enabled; filter one_euro|velocity; target points|world; frequency, min_cutoff, beta,
    derivate_cutoff (one_euro); window_size, velocity_scale (velocity); min_allowed_object_scale;
    disable_value_scaling; visibility_alpha.
    Example node:
        - calculator: LandmarksSmoothing
          inputs: {LANDMARKS: raw_pose, ROIS: pose_scale}
          outputs: {LANDMARKS: pose}
          options: {min_cutoff: 0.05, beta: 80, derivate_cutoff: 1, visibility_alpha: 0.1}
    """

    inputs = {"LANDMARKS": Input(Landmarks), "ROIS": Input(Rects, optional=True)}
    outputs = {"LANDMARKS": Output(Landmarks)}
    Options = LandmarksSmoothingOptions

    def open(self, ctx) -> None:
        o = ctx.options
        self.o = o
        self.params = dict(frequency=o.frequency, min_cutoff=o.min_cutoff, beta=o.beta,
                           derivate_cutoff=o.derivate_cutoff, window_size=o.window_size,
                           velocity_scale=o.velocity_scale, min_allowed_object_scale=o.min_allowed_object_scale,
                           disable_value_scaling=o.disable_value_scaling)
        self.smoothers: list[LandmarksSmoother] = []
        self.vis: list[LowPassFilter] = []  # per object, on its array of visibilities (elementwise)

    def process(self, ctx) -> None:
        lm: Landmarks = ctx.inputs["LANDMARKS"].value
        o = self.o
        if not o.enabled:
            ctx.outputs["LANDMARKS"].add(lm)
            return
        n = len(lm)
        if n != len(self.smoothers):
            self.smoothers = [LandmarksSmoother(o.filter, **self.params) for _ in range(n)]
            self.vis = [LowPassFilter(o.visibility_alpha or 1.0) for _ in range(n)]
        if n == 0:
            ctx.outputs["LANDMARKS"].add(lm)
            return
        rois = ctx.get("ROIS")
        values = lm.points if o.target == "points" else lm.world
        if values is None:
            raise ValueError(f"node {ctx.node}: target world, but the landmarks have no world landmarks")
        out = np.empty_like(values)
        for i in range(n):
            scale = None
            if rois is not None and i < len(rois):
                scale = float((rois.data[i, 2] + rois.data[i, 3]) / 2.0)
            out[i] = self.smoothers[i].apply(ctx.timestamp, values[i].astype(np.float64), scale)
        changes = {"points": out} if o.target == "points" else {"world": out}
        if o.visibility_alpha is not None and lm.visibility is not None:
            # LowPassFilter's arithmetic on float64 arrays: per value, the floats it gives one by one
            changes["visibility"] = np.array([self.vis[i].apply(lm.visibility[i].astype(np.float64))
                                              for i in range(n)], np.float32)
        ctx.outputs["LANDMARKS"].add(lm.replace(**changes))
