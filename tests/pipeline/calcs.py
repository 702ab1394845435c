"""Calculators used only by the core tests (registered under Test* names)."""

from __future__ import annotations

import threading

from pydantic import BaseModel, ConfigDict

from pipeline import STOP, Any, Calculator, Input, Output, SideInput, calculator, register


class SeqOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    timestamps: list[int] = []


@register
class TestSeq(Calculator):
    """Source emitting its value = timestamp at the given timestamps."""

    outputs = {"OUT": Output(int)}
    Options = SeqOptions

    def open(self, ctx):
        self.it = iter(ctx.options.timestamps)

    def process(self, ctx):
        for t in self.it:
            ctx.outputs["OUT"].add(t, t)
            return None
        return STOP


@register
class TestEvenOnly(Calculator):
    """Forwards even values only (relies on the offset contract to advance the bound)."""

    inputs = {"IN": Input(int)}
    outputs = {"OUT": Output(int)}

    def process(self, ctx):
        v = ctx.inputs["IN"].value
        if v % 2 == 0:
            ctx.outputs["OUT"].add(v)


@register
class TestJoin(Calculator):
    """Records which inputs were present at each timestamp."""

    inputs = {"A": Input(Any), "B": Input(Any, optional=True)}
    outputs = {"OUT": Output(tuple)}

    def process(self, ctx):
        ctx.outputs["OUT"].add((ctx.get("A"), ctx.get("B")))


class FailOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    at: int = -1
    phase: str = "process"


@register
class TestFail(Calculator):
    """Raises in the phase given by its options (process: at timestamp ``at``); appends its node's
    name to the side packet CLOSED (a list) when closed."""

    inputs = {"IN": Input(Any)}
    outputs = {"OUT": Output(Any, optional=True)}
    side_inputs = {"CLOSED": SideInput(list, optional=True)}
    Options = FailOptions

    def open(self, ctx):
        if ctx.options.phase == "open":
            raise RuntimeError("boom in open")

    def process(self, ctx):
        if ctx.options.phase == "process" and ctx.timestamp == ctx.options.at:
            raise ValueError(f"boom at {ctx.timestamp}")
        ctx.outputs["OUT"].add(ctx.inputs["IN"].value)

    def close(self, ctx):
        if ctx.side.get("CLOSED") is not None:
            ctx.side["CLOSED"].append(ctx.node)
        if ctx.options.phase == "close":
            raise RuntimeError("boom in close")


class Gate:
    """A test's hold on a TestBlocker (given as its side packet GATE): ``entered`` is set when a
    call has begun, ``release()`` lets the calls go on."""

    def __init__(self):
        self.entered = threading.Event()
        self.released = threading.Event()

    def release(self) -> None:
        self.released.set()


@register
class TestBlocker(Calculator):
    """Waits in each process call until the test releases its GATE side packet (a ``Gate``)."""

    inputs = {"IN": Input(Any)}
    outputs = {"OUT": Output(Any)}
    side_inputs = {"GATE": SideInput(Gate)}

    def open(self, ctx):
        self.gate = ctx.side["GATE"]

    def process(self, ctx):
        self.gate.entered.set()
        if not self.gate.released.wait(10):
            raise TimeoutError("test gate was never released")
        ctx.outputs["OUT"].add(ctx.inputs["IN"].value)


@register
class TestEndless(Calculator):
    """A source that never stops by itself (counts up, honours stopping)."""

    outputs = {"OUT": Output(int)}

    def open(self, ctx):
        self.i = 0

    def process(self, ctx):
        ctx.outputs["OUT"].add(self.i, self.i)
        self.i += 1


@register
class TestSourceFail(Calculator):
    outputs = {"OUT": Output(int)}

    def open(self, ctx):
        self.i = 0

    def process(self, ctx):
        if self.i == 5:
            raise OSError("source broke")
        ctx.outputs["OUT"].add(self.i, self.i)
        self.i += 1


@register
class TestSide(Calculator):
    """Adds the side packet OFFSET to each value."""

    inputs = {"IN": Input(int)}
    outputs = {"OUT": Output(int)}
    side_inputs = {"OFFSET": SideInput(int)}

    def open(self, ctx):
        self.offset = ctx.side["OFFSET"]

    def process(self, ctx):
        ctx.outputs["OUT"].add(ctx.inputs["IN"].value + self.offset)


@register
class TestStr(Calculator):
    inputs = {"IN": Input(str)}
    outputs = {"OUT": Output(str)}

    def process(self, ctx):
        ctx.outputs["OUT"].add(ctx.inputs["IN"].value)


@register
class TestBackwards(Calculator):
    """Emits at an earlier timestamp than it processes: a monotonicity error."""

    inputs = {"IN": Input(int)}
    outputs = {"OUT": Output(int)}

    def process(self, ctx):
        ctx.outputs["OUT"].add(0, 0)


@calculator(name="TestScale")
def scale(value: int, *, factor: int = 2) -> int:
    """Multiplies by factor."""
    return value * factor


@calculator(name="TestMaybeAdd")
def maybe_add(a: int, b: int | None = None) -> int | None:
    if b is None:
        return None
    return a + b


@register
class TestSumOnClose(Calculator):
    """Emits the sum of what it saw, once, in close, one microsecond after the last input."""

    inputs = {"IN": Input(int)}
    outputs = {"OUT": Output(int)}

    def open(self, ctx):
        self.total = 0
        self.last = None

    def process(self, ctx):
        self.total += ctx.inputs["IN"].value
        self.last = ctx.timestamp

    def close(self, ctx):
        if self.last is not None:
            ctx.outputs["OUT"].add(self.total, self.last + 1)
