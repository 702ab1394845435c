"""The built-in calculator library.

Importing this package registers every built-in calculator. Engines and optional libraries are
imported where they are used, so this import works with none of them installed.
"""

import importlib as _importlib

_FAMILIES = ("flow", "sources", "sinks", "image", "inference", "postprocess", "annotate")

for _family in _FAMILIES:
    try:
        _importlib.import_module(f"{__name__}.{_family}")
    except ModuleNotFoundError as _e:  # a family still being written has no __init__ yet
        if _e.name != f"{__name__}.{_family}":
            raise
