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

from pydantic import BaseModel

from pipeline import STOP, Any, Calculator, Input, Output, register


class TickerOptions(BaseModel):
    count: int = 10
    period_us: int = 1000


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

    def process(self, ctx):
        if self.k >= ctx.options.count:
            return STOP
        ctx.outputs["OUT"].add(self.k, self.k * ctx.options.period_us)
        self.k += 1


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
