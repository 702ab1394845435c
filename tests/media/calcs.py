"""Calculators used only by the media tests (registered under MediaTest* names)."""

from __future__ import annotations

from pydantic import BaseModel

from pipeline import Any, Calculator, Input, register


class FailAtOptions(BaseModel):
    at: int


@register
class MediaTestFailAt(Calculator):
    """Raises RuntimeError at the first timestamp at or after ``at`` (an injected failure)."""

    inputs = {"IN": Input(Any)}
    outputs: dict = {}
    Options = FailAtOptions

    def process(self, ctx):
        if ctx.timestamp >= ctx.options.at:
            raise RuntimeError(f"injected failure at {ctx.timestamp}")
