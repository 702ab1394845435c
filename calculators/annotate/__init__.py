"""Annotation: the Annotate calculator (drawing helpers in ``draw``)."""

# Which module of this family registers each calculator: the registry imports a module only when a
# graph names one of its calculators (tests/structure/test_registry.py checks this table).
CALCULATORS = {"Annotate": "annotate"}
