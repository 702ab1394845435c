"""Annotate: draws detections (boxes, labels, scores, keypoints, ids), masks and fps/latency text.

Ports: IMAGE (Image), DETECTIONS (Detections, optional), MASK (Mask, optional), LANDMARKS
(Landmarks, optional) -> IMAGE (Image).
Draws on a copy: the received frame is never modified (with fan-out, other nodes share it).
Any Image format, I420 included (drawn plane by plane, no colour conversion).
Timestamps: one output per IMAGE, same timestamp; missing DETECTIONS/MASK at a timestamp draw nothing.
Example node:
    - calculator: Annotate
      inputs: {IMAGE: frames, DETECTIONS: faces}
      outputs: {IMAGE: annotated}
      options: {show_fps: true}
"""

from __future__ import annotations

import time
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from calculators.annotate.draw import draw_detections, draw_landmarks, draw_lines, draw_mask
from calculators.landmarks.connections import NAMES as CONNECTIONS, connections
from calculators.sources.common import RateMeter
from calculators.types import Detections, Image, Landmarks, Mask
from pipeline import Calculator, Input, Output, register


class AnnotateOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    thickness: int = Field(2, ge=1)
    text_scale: float = Field(0.4, gt=0)
    show_labels: bool = True
    show_scores: bool = True
    show_keypoints: bool = True
    show_ids: bool = True
    show_fps: bool = Field(False, description="frames per second through this node over the last second "
                                              "(wall clock; as WebPreview's /stats.json reports rates)")
    show_latency: bool = Field(False, description="how far behind real time the frame is drawn "
                                                  "(wall clock since the first frame minus stream time)")
    color: Optional[tuple[int, int, int]] = Field(None, description="one RGB colour for all boxes (default: per class/id)")
    mask_color: tuple[int, int, int] = (0, 114, 178)
    mask_alpha: float = Field(0.5, ge=0.0, le=1.0)
    connections: list[Literal[CONNECTIONS]] = Field(default_factory=list,  # type: ignore[valid-type]
                                                    description="MediaPipe's landmark connection lists to draw")
    optional_connections: list[Literal[CONNECTIONS]] = Field(  # type: ignore[valid-type]
        default_factory=list, description="lists drawn only on landmarks that have their points "
                                          "(face_mesh_irises: on 478 points, with refine_landmarks)")
    landmark_color: tuple[int, int, int] = Field((48, 255, 48), description="RGB of the connections")
    point_color: tuple[int, int, int] = Field((255, 48, 48), description="RGB of the landmark dots")
    point_radius: int = Field(2, ge=0, description="landmark dot radius (0: no dots)")
    relative_size: bool = Field(False, description="thickness, radius and text_scale are for a 480-line frame "
                                                   "and scale with the frame's height (never below 1 pixel)")


@register
class Annotate(Calculator):
    """Draws detections, an optional mask and fps/latency text on a copy of the frame.

    Ports: IMAGE (Image), DETECTIONS (Detections, optional), MASK (Mask, optional) -> IMAGE (Image).
    Options: thickness; text_scale; show_labels/show_scores/show_keypoints/show_ids (default on);
    show_fps, show_latency (default off); color (RGB, default per class or track id); mask_color (RGB),
    mask_alpha; connections (MediaPipe's lists: face_mesh_tesselation, face_mesh_contours,
    face_mesh_irises, hand, pose), optional_connections (drawn only where the landmarks have their
    points, e.g. the irises of a face mesh with or without refine_landmarks), landmark_color,
    point_color, point_radius (landmarks);
    relative_size (sizes scale with the frame height, 480 lines = as given).
    Example node:
        - calculator: Annotate
          inputs: {IMAGE: frames, DETECTIONS: faces}
          outputs: {IMAGE: annotated}
    """

    inputs = {
        "IMAGE": Input(Image),
        "DETECTIONS": Input(Detections, optional=True),
        "MASK": Input(Mask, optional=True),
        "LANDMARKS": Input(Landmarks, optional=True),
    }
    outputs = {"IMAGE": Output(Image)}
    Options = AnnotateOptions

    def open(self, ctx) -> None:
        self.o = ctx.options
        self.edges = [connections(n) for n in self.o.connections]
        self.optional = [connections(n) for n in self.o.optional_connections]
        self._fps = RateMeter()  # the same meter as WebPreview's fps and node rates
        self._origin = None  # (wall seconds, stream timestamp) of the first frame

    def _status(self, timestamp: int) -> list[str]:
        now = time.perf_counter()
        lines = []
        fps = self._fps.update(now=now)
        if self.o.show_fps and fps is not None:
            lines.append(f"{fps:.1f} fps")
        if self.o.show_latency:
            if self._origin is None:
                self._origin = (now, timestamp)
            lag = (now - self._origin[0]) - (timestamp - self._origin[1]) / 1e6
            lines.append(f"lag {max(0.0, lag) * 1e3:.0f} ms")
        return lines

    def process(self, ctx) -> None:
        image = ctx.inputs["IMAGE"].value
        fmt = image.format
        canvas = image.data.copy()
        mask = ctx.get("MASK")
        if mask is not None:
            c = self.o.mask_color
            draw_mask(canvas, mask.data, c[::-1] if fmt.startswith("BGR") else c, self.o.mask_alpha, fmt)
        k = image.height / 480.0 if self.o.relative_size else 1.0
        thickness, text_scale = max(1, round(self.o.thickness * k)), self.o.text_scale * k
        lms = ctx.get("LANDMARKS")
        if lms is not None and len(lms):
            order = (lambda c: c[::-1]) if fmt.startswith("BGR") else (lambda c: c)
            radius = max(1, round(self.o.point_radius * k)) if self.o.point_radius else 0
            for name, edges in zip(self.o.connections, self.edges):
                if len(edges) and int(edges.max()) >= lms.num_points:
                    raise ValueError(f"node {ctx.node}: connections {name!r} join points up to {int(edges.max())}, "
                                     f"these landmarks have {lms.num_points}")
            drawn = self.edges + [e for e in self.optional if not len(e) or int(e.max()) < lms.num_points]
            for i in range(len(lms)):
                for j, edges in enumerate(drawn or [None]):
                    draw_landmarks(canvas, lms.points[i], edges, fmt, thickness,
                                   radius if j == len(drawn or [None]) - 1 else 0,
                                   order(self.o.landmark_color), order(self.o.point_color))
        det = ctx.get("DETECTIONS")
        if det is not None and len(det):
            color = self.o.color
            if color is not None and fmt.startswith("BGR"):
                color = color[::-1]
            draw_detections(canvas, det, fmt, thickness, self.o.show_labels, self.o.show_scores,
                            self.o.show_keypoints, self.o.show_ids, text_scale, color)
        if self.o.show_fps or self.o.show_latency:
            lines = self._status(ctx.timestamp)
            if lines:
                draw_lines(canvas, lines, text_scale + 0.05, fmt=fmt)
        ctx.outputs["IMAGE"].add(image.with_data(canvas))
