"""Flow calculators: pass-through, flow limiting, gating, sequence sources and collection."""

from .basic import Collector, Counter, Gate, PassThrough
from .flow_limiter import FlowLimiter

__all__ = ["Collector", "Counter", "FlowLimiter", "Gate", "PassThrough"]
