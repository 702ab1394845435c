"""vpipe's framework: packets, timestamps, calculators, streams, policies, the scheduler, graphs.

This package never imports ``calculators`` or ``apps``, nor any vision or engine library.

Importing it costs nothing: the names below are read from their modules when first used
(``from pipeline import Graph`` imports ``pipeline.graph``), so a command that needs only the
errors (``vpipe models list``) or the registry does not load the scheduler, pydantic or networkx.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING

# Each public name -> the module of this package that defines it.
_EXPORTS = {
    "Any": "calculator", "Calculator": "calculator", "Input": "calculator", "Output": "calculator",
    "STOP": "calculator", "SideInput": "calculator", "SideOutput": "calculator", "calculator": "calculator",
    "GraphConfigError": "errors", "GraphRunError": "errors", "NodeStuckError": "errors", "Problem": "errors",
    "QueueFullError": "errors", "TimestampError": "errors", "UserError": "errors", "VpipeError": "errors",
    "Context": "graph", "Graph": "graph",
    "register": "registry",
    "Packet": "timestamp", "Timestamp": "timestamp",
}

__all__ = sorted([*_EXPORTS, "registry"])

if TYPE_CHECKING:
    from . import registry
    from .calculator import STOP, Any, Calculator, Input, Output, SideInput, SideOutput, calculator
    from .errors import (GraphConfigError, GraphRunError, NodeStuckError, Problem, QueueFullError, TimestampError,
                         UserError, VpipeError)
    from .graph import Context, Graph
    from .registry import register
    from .timestamp import Packet, Timestamp


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        if name == "registry":
            return importlib.import_module(".registry", __name__)
        raise AttributeError(f"module 'pipeline' has no attribute '{name}'")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """``pipeline.calculator`` is the decorator, as it always was, though a module of that name
    exists: importing the module must not rebind the package's attribute to it (the module stays
    ``sys.modules["pipeline.calculator"]``)."""

    def __setattr__(self, name, value):
        if name == "calculator" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
