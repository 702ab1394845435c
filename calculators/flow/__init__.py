"""Flow calculators: pass-through, flow limiting, gating, sequence sources and collection."""

# Which module of this family registers each calculator: the registry imports a module only when a
# graph names one of its calculators (tests/structure/test_registry.py checks this table).
CALCULATORS = {
    "Collector": "basic",
    "Counter": "basic",
    "FlowLimiter": "flow_limiter",
    "Gate": "basic",
    "PassThrough": "basic",
}
