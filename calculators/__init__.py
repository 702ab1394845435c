"""The built-in calculator library, one subpackage per family.

Importing this package imports no calculator, no OpenCV and no engine: each family's
``__init__.py`` declares ``CALCULATORS`` (calculator name -> the module of the family that
registers it), gathered here into one table that the registry reads through the
``vpipe.calculators`` entry point (``pipeline/registry.py``). A graph that names a calculator makes
the registry import that calculator's module, and only it. Engines and optional libraries are
imported where they are used, so every module imports with none of them installed.
"""

from . import annotate, flow, image, inference, landmarks, postprocess, sinks, sources

FAMILIES = (annotate, flow, image, inference, landmarks, postprocess, sinks, sources)

CALCULATORS = {name: f"{family.__name__}.{module}" for family in FAMILIES
               for name, module in family.CALCULATORS.items()}
