"""SyntheticSource: a test pattern with moving shapes and the frame number drawn in.

For tests and benchmarks: frame ``i`` depends only on ``i`` and the size, so any run can be
checked against ``synthetic_frame(i, width, height)``.

Ports: FRAMES (Image) out; INFO (VideoInfo) optional output side packet.
Timestamps: frame i at round(i * 1e6 / fps) microseconds (strictly increasing).

Example node:
    - calculator: SyntheticSource
      outputs: {FRAMES: frames}
      options: {size: [640, 480], fps: 30, num_frames: 300}
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from calculators.sources.common import OutputFormat, Pacer, VideoInfo, bgr_to_image, set_side_output
from calculators.types import Image
from pipeline import STOP, Calculator, Output, SideOutput, register


class SyntheticSourceOptions(BaseModel):
    size: tuple[int, int] = Field((640, 480), description="(width, height) in pixels")
    fps: float = Field(30.0, gt=0, description="frame rate of the timestamps")
    num_frames: int | None = Field(300, ge=0, description="frames to emit; null: endless")
    format: OutputFormat = "RGB"
    pace: Literal["fast", "realtime"] = Field("fast", description="fast: as fast as the graph takes them")

    def model_post_init(self, _ctx) -> None:
        w, h = self.size
        if w < 16 or h < 16:
            raise ValueError(f"size must be at least 16x16, got {w}x{h}")


def synthetic_frame(index: int, width: int = 640, height: int = 480) -> np.ndarray:
    """Frame ``index`` of the test pattern, as a BGR uint8 array (height, width, 3).

    A static colour gradient, a circle moving on a horizontal path, a square bouncing
    vertically, and the frame number written in white on a black band at the top left.
    """
    import cv2

    ys = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    xs = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    img = np.empty((height, width, 3), np.uint8)
    img[..., 0] = (xs * 0.8 + 30).astype(np.uint8)           # blue grows left to right
    img[..., 1] = (ys * 0.8 + 30).astype(np.uint8)           # green grows top to bottom
    img[..., 2] = ((xs + ys) * 0.3 + 40).astype(np.uint8)    # red along the diagonal
    r = max(4, min(width, height) // 10)
    period = 120
    phase = (index % period) / period
    cx = int(r + (width - 2 * r) * (0.5 - 0.5 * np.cos(2 * np.pi * phase)))
    cv2.circle(img, (cx, height // 2), r, (0, 0, 255), -1, cv2.LINE_AA)
    side = r * 2
    cy = int((height - side) * abs(((index % 90) / 45.0) - 1.0))
    x0 = width - side - width // 8
    cv2.rectangle(img, (x0, cy), (x0 + side, cy + side), (255, 255, 0), -1)
    scale = max(0.4, height / 480.0)
    text = f"{index:06d}"
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 2)
    cv2.rectangle(img, (0, 0), (tw + 12, th + base + 12), (0, 0, 0), -1)
    cv2.putText(img, text, (6, th + 6), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 2, cv2.LINE_AA)
    return img


def synthetic_timestamp(index: int, fps: float) -> int:
    return int(round(index * 1_000_000 / fps))


@register
class SyntheticSource(Calculator):
    """A moving test pattern with the frame number drawn in.

    Ports:
        FRAMES (Image): the frames, in ``format`` (RGB by default).
    Side outputs:
        INFO (VideoInfo, optional): size, fps and frame count.
    Options:
        size ([w, h], default [640, 480]); fps (default 30); num_frames (default 300, null:
        endless); format (RGB | BGR | GRAY); pace (fast | realtime).
    Timestamps: frame i at round(i * 1e6 / fps) µs.
    Example:
        - calculator: SyntheticSource
          outputs: {FRAMES: frames}
          options: {size: [320, 240], fps: 25, num_frames: 100}
    """

    inputs: dict = {}
    outputs = {"FRAMES": Output(Image, doc="test pattern frames")}
    side_outputs = {"INFO": SideOutput(VideoInfo)}
    Options = SyntheticSourceOptions
    timestamp_offset = None

    def open(self, ctx):
        o = ctx.options
        self.width, self.height = o.size
        self.index = 0
        self.pacer = Pacer(ctx.stop_event) if o.pace == "realtime" else None
        set_side_output(ctx, "INFO", VideoInfo(
            uri="synthetic:", width=self.width, height=self.height, fps=o.fps, codec=None,
            frame_count=o.num_frames, duration_s=None if o.num_frames is None else o.num_frames / o.fps,
            live=o.pace == "realtime", pixel_format=o.format,
        ))

    def process(self, ctx):
        o = ctx.options
        if ctx.stopping or (o.num_frames is not None and self.index >= o.num_frames):
            return STOP
        t = synthetic_timestamp(self.index, o.fps)
        if self.pacer is not None and not self.pacer.wait(t):
            return STOP
        frame = bgr_to_image(synthetic_frame(self.index, self.width, self.height), o.format)
        ctx.outputs["FRAMES"].add(frame, t)
        self.index += 1
        return None
