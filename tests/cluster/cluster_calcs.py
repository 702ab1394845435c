"""User calculators for the cluster tests (a plugin: ``plugins=["tests.cluster.cluster_calcs"]``).

- ``FrameDigest``: IMAGE in, OUT a small JSON-able record per frame (mean and shape), so a batch
  output can be compared file by file without a model.
- ``DieOnce``: ends its process once per flag file, after ``after`` packets (a crashed worker).
- ``StallOnce``: passes packets through; the first time it runs for a flag file (absent), it creates
  it and stops passing packets after ``after`` of them, as a stuck camera or decoder would; once
  the flag exists (a restarted stream) it passes everything.

Example node:
    - calculator: StallOnce
      inputs: {IN: frames}
      outputs: {OUT: passed}
      options: {flag: $flag, after: 10}
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np
from pydantic import BaseModel

from calculators.types import Image
from pipeline import Any, Calculator, Input, Output, register


@register
class FrameDigest(Calculator):
    """Per frame: ``{"mean": mean pixel value (3 decimals), "shape": [h, w, c]}``."""

    inputs = {"IMAGE": Input(Image)}
    outputs = {"OUT": Output(dict)}

    def process(self, ctx):
        image = ctx.get("IMAGE")
        data = np.asarray(image.data if hasattr(image, "data") else image)
        ctx.outputs["OUT"].add({"mean": round(float(data.mean()), 3), "shape": list(data.shape)})


class StallOnceOptions(BaseModel):
    flag: Optional[str] = None  # null: never stall
    after: int = 10


@register
class StallOnce(Calculator):
    """Passes packets; stalls once per flag file (see the module docstring)."""

    inputs = {"IN": Input(Any)}
    outputs = {"OUT": Output(Any)}
    Options = StallOnceOptions

    def open(self, ctx):
        flag = ctx.options.flag
        self.stall = bool(flag) and not os.path.exists(flag)
        if self.stall:
            with open(flag, "w") as f:
                f.write(str(os.getpid()))
        self.n = 0

    def process(self, ctx):
        self.n += 1
        if self.stall and self.n > ctx.options.after:
            ctx.stop_event.wait()  # stuck until the run is stopped or the process is killed
            return
        ctx.outputs["OUT"].add(ctx.inputs["IN"].value)


class DieOnceOptions(BaseModel):
    flag: Optional[str] = None  # null: never die
    after: int = 5


@register
class DieOnce(Calculator):
    """Passes packets; the first time it runs for a flag file (absent), it creates it and ends its
    whole process after ``after`` packets, as a crash or an out-of-memory kill would."""

    inputs = {"IN": Input(Any)}
    outputs = {"OUT": Output(Any)}
    Options = DieOnceOptions

    def open(self, ctx):
        flag = ctx.options.flag
        self.die = bool(flag) and not os.path.exists(flag)
        if self.die:
            with open(flag, "w") as f:
                f.write(str(os.getpid()))
        self.n = 0

    def process(self, ctx):
        self.n += 1
        if self.die and self.n > ctx.options.after:
            os._exit(3)
        ctx.outputs["OUT"].add(ctx.inputs["IN"].value)
