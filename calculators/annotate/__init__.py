"""Annotation: the Annotate calculator (drawing helpers in ``draw``)."""

from calculators.annotate import annotate  # noqa: F401  (registers it)
