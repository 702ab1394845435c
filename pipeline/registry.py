"""The calculator registry.

Calculators register by name. The built-in library is found through the ``vpipe.calculators``
entry point group (so ``pipeline`` never imports ``calculators``); user calculators come only from
modules loaded explicitly (``pipeline.plugins``: ``--plugin`` on the command line, or a graph file's
``plugins:`` with the user's consent).
"""

from __future__ import annotations

import importlib
import threading

_REGISTRY: dict[str, type] = {}
_lock = threading.Lock()
_builtins_loaded = False


def register(cls=None, *, name: str | None = None):
    """Registers a calculator class (usable as ``@register`` or ``register(cls, name=...)``)."""

    def do(c):
        from .calculator import Calculator

        if not (isinstance(c, type) and issubclass(c, Calculator)):
            raise TypeError(f"register() expects a Calculator subclass, got {c!r}")
        n = name or c.__name__
        existing = _REGISTRY.get(n)
        if existing is not None and existing is not c and (
            existing.__module__, existing.__qualname__) != (c.__module__, c.__qualname__):
            raise ValueError(
                f"calculator name '{n}' is already registered by {existing.__module__}.{existing.__qualname__}"
            )
        c.name = n
        _REGISTRY[n] = c
        return c

    if cls is not None:
        return do(cls)
    return do


def load_builtins() -> None:
    """Imports the modules of the ``vpipe.calculators`` entry point group, once."""
    global _builtins_loaded
    if _builtins_loaded:
        return
    with _lock:
        if _builtins_loaded:
            return
        from importlib.metadata import entry_points

        eps = list(entry_points(group="vpipe.calculators"))
        if not eps:
            # Running from a source tree that is not pip-installed: the built-in package is
            # still importable by name.
            try:
                importlib.import_module("calculators")
            except ModuleNotFoundError:
                pass
        for ep in eps:
            importlib.import_module(ep.value.split(":")[0])
        _builtins_loaded = True


def get(name: str) -> type:
    load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(unknown_message(name)) from None


def find(name: str):
    load_builtins()
    return _REGISTRY.get(name)


def names() -> list[str]:
    load_builtins()
    return sorted(_REGISTRY)


def unknown_message(name: str, unloaded: list[str] | None = None) -> str:
    """``unloaded``: the plugins the graph names that were not loaded (the calculator may be theirs)."""
    from .errors import did_you_mean

    hint = did_you_mean(name, names())
    if unloaded:
        return (f"unknown calculator '{name}'{hint}; it may come from the graph's plugin "
                f"{', '.join(repr(p) for p in unloaded)}, which was not loaded (see above)")
    return (f"unknown calculator '{name}'{hint} (a user calculator is known once its plugin is loaded: "
            "--plugin MODULE_OR_FILE.py, or the graph's 'plugins:' list)")
