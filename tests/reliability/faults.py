"""Calculators that fail on purpose, for the reliability tests (``--plugin tests.reliability.faults``).

- ``Frames``: a source of small synthetic frames (frame i at i * 40 ms), optionally faulty in its
  own ``process`` (phase ``source``) or ``close``; endless when ``count`` is null.
- ``Fault``: passes frames through and raises or hangs in ``open``, ``process`` (at timestamp
  ``at``) or ``close``; ``kind: user_error`` raises what a user can fix (a ``UserError``), and
  ``stderr_lines`` are written straight to file descriptor 2 first, as a native library writes.
- ``Slow``: passes packets through after ``delay_s`` of work.
- ``FrameRecord``: a frame -> ``{"t": timestamp, "mean": mean pixel}``, for a JsonlWriter.

A hang waits on ``RELEASE`` (a test sets it to let the stuck thread go), or forever in a ``vpipe``
subprocess. ``REACHED`` is set when a node reaches its fault, and a line naming it is written to
the file descriptor ``notify_fd`` when one is given, so that a test in another process knows when
to send its signal without sleeping.

Example node:
    - calculator: Fault
      inputs: {IN: frames}
      outputs: {OUT: checked}
      options: {phase: process, kind: hang, at: 400000}
"""

from __future__ import annotations

import os
import threading
import time
from typing import Literal, Optional

import numpy as np
from pydantic import BaseModel, ConfigDict

from calculators.types import Image
from pipeline import STOP, Any, Calculator, Input, Output, register
from pipeline.errors import UserError

RELEASE = threading.Event()
REACHED = threading.Event()
PERIOD_US = 40_000


def _notify(fd: int | None, what: str, fault: bool = True) -> None:
    if fault:
        REACHED.set()
    if fd is not None:
        os.write(fd, (what + "\n").encode())


def _fault(kind: str, where: str, stderr_lines: list[str] = ()) -> None:
    for line in stderr_lines:  # what C or C++ code writes: bytes on fd 2, past sys.stderr
        os.write(2, (line + "\n").encode())
    if kind == "raise":
        raise RuntimeError(f"injected fault in {where}")
    if kind == "user_error":
        raise UserError(f"injected user error in {where}")
    RELEASE.wait()  # hang: until a test lets it go


class FaultOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    phase: Literal["none", "open", "process", "close"] = "none"
    kind: Literal["raise", "user_error", "hang"] = "raise"
    at: int = 0  # process: the timestamp of the fault
    stderr_lines: list[str] = []  # written to fd 2 just before the fault
    notify_fd: Optional[int] = None
    copy_frame: bool = False  # work on a copy of the frame received (the way to change a frame)
    scribble: bool = False  # zero the frame: the one received (an error) or the copy


@register
class Fault(Calculator):
    """Passes frames through; raises or hangs in the phase its options name."""

    inputs = {"IN": Input(Any)}
    outputs = {"OUT": Output(Any, optional=True)}
    Options = FaultOptions

    def open(self, ctx):
        o = ctx.options
        if o.phase == "open":
            _notify(o.notify_fd, "open")
            _fault(o.kind, "open", o.stderr_lines)

    def process(self, ctx):
        o = ctx.options
        value = ctx.inputs["IN"].value
        if o.phase == "process" and ctx.timestamp >= o.at:
            _notify(o.notify_fd, "process")
            _fault(o.kind, "process", o.stderr_lines)
        if o.copy_frame:
            value = value.with_data(value.data.copy())
        if o.scribble:
            value.data[:] = 0  # into the frame received, or into its copy with copy_frame
        ctx.outputs["OUT"].add(value)

    def close(self, ctx):
        o = ctx.options
        if o.phase == "close":
            _notify(o.notify_fd, "close")
            _fault(o.kind, "close")


class FramesOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    count: Optional[int] = 50
    size: tuple[int, int] = (96, 64)
    phase: Literal["none", "source", "close"] = "none"
    kind: Literal["raise", "hang"] = "raise"
    at: int = 0  # source: the frame index of the fault
    notify_after: Optional[int] = None  # frames emitted before telling notify_fd "running"
    notify_fd: Optional[int] = None
    live: bool = False  # wait one period between frames (until stopped), as a camera does


@register
class Frames(Calculator):
    """Synthetic RGB frames: frame i is filled with (i % 200) + 20, at i * 40 ms."""

    outputs = {"FRAMES": Output(Image)}
    Options = FramesOptions
    timestamp_offset = None

    def open(self, ctx):
        self.i = 0

    def process(self, ctx):
        o = ctx.options
        if ctx.stopping or (o.count is not None and self.i >= o.count):
            return STOP
        if o.phase == "source" and self.i == o.at:
            _notify(o.notify_fd, "source")
            _fault(o.kind, "source")
        if o.live and self.i and ctx.stop_event.wait(PERIOD_US / 1e6):
            return STOP
        w, h = o.size
        frame = np.full((h, w, 3), (self.i % 200) + 20, np.uint8)
        ctx.outputs["FRAMES"].add(Image(frame, "RGB"), self.i * PERIOD_US)
        self.i += 1
        if o.notify_after is not None and self.i == o.notify_after:
            _notify(o.notify_fd, "running", fault=False)
        return None

    def close(self, ctx):
        o = ctx.options
        if o.phase == "close":
            _notify(o.notify_fd, "close")
            _fault(o.kind, "close")
        elif o.notify_fd is not None:
            os.write(o.notify_fd, b"source closed\n")  # the run stopped its source


class SlowOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    delay_s: float = 0.0


@register
class Slow(Calculator):
    """Passes packets through after ``delay_s`` of work (a slow encoder or model)."""

    inputs = {"IN": Input(Any)}
    outputs = {"OUT": Output(Any)}
    Options = SlowOptions

    def process(self, ctx):
        if ctx.options.delay_s:
            time.sleep(ctx.options.delay_s)  # stands for work; nothing waits on it
        ctx.outputs["OUT"].add(ctx.inputs["IN"].value)


@register
class FrameRecord(Calculator):
    """A frame -> {"t": its timestamp, "mean": its mean pixel value} (for a JsonlWriter)."""

    inputs = {"IMAGE": Input(Image)}
    outputs = {"RECORD": Output(dict)}

    def process(self, ctx):
        image = ctx.inputs["IMAGE"].value
        ctx.outputs["RECORD"].add({"t": ctx.timestamp, "mean": float(image.data.mean())})
