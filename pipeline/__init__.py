"""vpipe's framework: packets, timestamps, calculators, streams, policies, the scheduler, graphs.

This package never imports ``calculators`` or ``apps``, nor any vision or engine library.
"""

from . import registry
from .calculator import STOP, Any, Calculator, Input, Output, SideInput, SideOutput, calculator
from .errors import (GraphConfigError, GraphRunError, NodeStuckError, Problem, QueueFullError, TimestampError,
                     UserError, VpipeError)
from .graph import Context, Graph
from .registry import register
from .timestamp import Packet, Timestamp

__all__ = [
    "Any", "Calculator", "Context", "Graph", "GraphConfigError", "GraphRunError", "Input", "NodeStuckError", "Output",
    "Packet", "Problem", "QueueFullError", "STOP", "SideInput", "SideOutput", "Timestamp",
    "TimestampError", "UserError", "VpipeError", "calculator", "register", "registry",
]
