"""The built-in calculator library.

Importing this package registers every built-in calculator. Engines and optional libraries are
imported where they are used, so this import works with none of them installed.
"""

from . import annotate, flow, image, inference, landmarks, postprocess, sinks, sources  # noqa: F401 - registers
