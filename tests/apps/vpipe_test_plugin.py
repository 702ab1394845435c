"""User calculators for the command-line tests, loaded with ``--plugin vpipe_test_plugin``.

They stand for what a user writes in their own module: a source of numbered packets and a
calculator that fails at a chosen timestamp (to check how ``vpipe run`` reports a failed run).

Example node:
    - calculator: FailAt
      inputs: {IN: numbers}
      outputs: {OUT: checked}
      options: {timestamp: 3000}
"""

from __future__ import annotations

from typing import Optional

from pydantic import BaseModel

from pipeline import STOP, Any, Calculator, Input, Output, register


class TickerOptions(BaseModel):
    count: int = 10
    period_us: int = 1000
    realtime: bool = False  # wait period_us between packets, like a camera
    fifo: Optional[str] = None  # a named pipe told "running" and "closed", so a test knows where the run is


@register
class Ticker(Calculator):
    """Emits the integers 0..count-1 at timestamps k * period_us, then stops.

    Example node:
        - calculator: Ticker
          outputs: {OUT: numbers}
          options: {count: 5}
    """

    outputs = {"OUT": Output(int)}
    Options = TickerOptions

    def open(self, ctx):
        self.k = 0
        self.fifo = open(ctx.options.fifo, "w") if ctx.options.fifo else None

    def _tell(self, what: str) -> None:
        if self.fifo is not None:
            self.fifo.write(what + "\n")
            self.fifo.flush()

    def process(self, ctx):
        if self.k == 0:
            self._tell("running")
        if self.k >= ctx.options.count:
            return STOP
        if ctx.options.realtime and self.k and ctx.stop_event.wait(ctx.options.period_us / 1e6):
            return STOP
        ctx.outputs["OUT"].add(self.k, self.k * ctx.options.period_us)
        self.k += 1

    def close(self, ctx):
        self._tell("closed")
        if self.fifo is not None:
            self.fifo.close()


class FailAtOptions(BaseModel):
    timestamp: int


@register
class FailAt(Calculator):
    """Passes packets through and raises ValueError at one timestamp."""

    inputs = {"IN": Input(Any)}
    outputs = {"OUT": Output(Any)}
    Options = FailAtOptions

    def process(self, ctx):
        if ctx.timestamp == ctx.options.timestamp:
            raise ValueError(f"refusing packet {ctx.get('IN')!r}")
        ctx.outputs["OUT"].add(ctx.get("IN"))
