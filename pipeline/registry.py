"""The calculator registry: calculator names to classes, each module imported only when needed.

Calculators register by name (``@register``). The built-in library is found through the
``vpipe.calculators`` entry point group (so ``pipeline`` never imports ``calculators``); user
calculators come only from modules loaded explicitly (``pipeline.plugins``: ``--plugin`` on the
command line, or a graph file's ``plugins:`` with the user's consent).

A module named by an entry point may declare ``CALCULATORS``, a mapping from each calculator name
it provides to the module that registers it (``calculators/__init__.py`` gathers its families'
tables). The registry then knows every name without importing any of those modules, and imports
one only when a graph names one of its calculators: a face detection graph loads neither the
landmark family nor a MediaPipe wrapper, and ``names()`` (what ``did_you_mean`` offers, what
``vpipe calculators`` lists) still sees them all. An entry point module without a table is
imported at once and registers what it defines, as a plugin does.

A table cannot go stale silently: a module under a tabled package that registers a name its table
does not give it is refused when it registers, and ``tests/structure/test_registry.py`` imports
every module of the built-in library and compares what registers with the table.
"""

from __future__ import annotations

import importlib
import importlib.util
import threading

_REGISTRY: dict[str, type] = {}
_INDEX: dict[str, str] = {}  # calculator name -> the module that registers it (from the tables)
_TABLED: list[str] = []  # packages whose calculators are all in the index: "calculators."
_lock = threading.RLock()
_index_state = "none"  # none -> loading -> loaded


def register(cls=None, *, name: str | None = None):
    """Registers a calculator class (usable as ``@register`` or ``register(cls, name=...)``)."""

    def do(c):
        from .calculator import Calculator

        if not (isinstance(c, type) and issubclass(c, Calculator)):
            raise TypeError(f"register() expects a Calculator subclass, got {c!r}")
        n = name or c.__name__
        _load_index()
        existing = _REGISTRY.get(n)
        if existing is not None and existing is not c and (
            existing.__module__, existing.__qualname__) != (c.__module__, c.__qualname__):
            raise ValueError(
                f"calculator name '{n}' is already registered by {existing.__module__}.{existing.__qualname__}"
            )
        _check_table(n, c.__module__)
        c.name = n
        _REGISTRY[n] = c
        return c

    if cls is not None:
        return do(cls)
    return do


def _check_table(n: str, module: str) -> None:
    """A name taken by a table's module, or a tabled module registering what its table lacks."""
    indexed = _INDEX.get(n)
    if indexed is not None and indexed != module:
        raise ValueError(f"calculator name '{n}' is already taken by the calculator {indexed} registers")
    if indexed is None:
        for pkg in _TABLED:
            if module.startswith(pkg):
                top = pkg.rstrip(".")
                raise ValueError(f"calculator '{n}' of {module} is missing from the table of {top} "
                                 f"(CALCULATORS in its family's __init__.py): add '{n}': "
                                 f"'{module.rsplit('.', 1)[-1]}' there")


def _load_index() -> None:
    """Reads the ``vpipe.calculators`` entry points once: their tables into the index; a module
    without a table is imported (it registers its calculators)."""
    global _index_state
    if _index_state == "loaded":
        return
    with _lock:
        if _index_state != "none":  # loaded meanwhile, or loading in this thread (an import registering)
            return
        _index_state = "loading"
        try:
            from importlib.metadata import entry_points

            modules = [ep.value.split(":")[0] for ep in entry_points(group="vpipe.calculators")]
            if not modules:
                # A source tree that is not pip-installed: the built-in package is still importable by name.
                modules = ["calculators"] if importlib.util.find_spec("calculators") is not None else []
            for m in modules:
                module = importlib.import_module(m)
                table = getattr(module, "CALCULATORS", None)
                if table is None:
                    continue
                for n, where in table.items():
                    _INDEX.setdefault(n, where)
                _TABLED.append(m + ".")
        finally:
            _index_state = "loaded"


def load_builtins() -> None:
    """Imports every module the tables name: what listing every calculator's contract needs (the
    reference docs, ``vpipe calculators``); loading a graph never needs it."""
    _load_index()
    for n in list(_INDEX):
        find(n)


def find(name: str):
    """The class registered as ``name`` (importing the module its table names), else None."""
    cls = _REGISTRY.get(name)
    if cls is not None:
        return cls
    _load_index()
    module = _INDEX.get(name)
    if module is None:
        return _REGISTRY.get(name)  # an entry point without a table may have registered it meanwhile
    importlib.import_module(module)
    cls = _REGISTRY.get(name)
    if cls is None:
        raise RuntimeError(f"calculator '{name}': its table names module {module}, which registered no calculator "
                           f"of that name (a stale CALCULATORS table; tests/structure/test_registry.py checks them)")
    return cls


def get(name: str) -> type:
    cls = find(name)
    if cls is None:
        raise KeyError(unknown_message(name))
    return cls


def names() -> list[str]:
    """Every known calculator name: registered ones and those the tables name (nothing is imported)."""
    _load_index()
    return sorted(set(_REGISTRY) | set(_INDEX))


def unknown_message(name: str, unloaded: list[str] | None = None) -> str:
    """``unloaded``: the plugins the graph names that were not loaded (the calculator may be theirs)."""
    from .errors import did_you_mean

    hint = did_you_mean(name, names())
    if unloaded:
        return (f"unknown calculator '{name}'{hint}; it may come from the graph's plugin "
                f"{', '.join(repr(p) for p in unloaded)}, which was not loaded (see above)")
    return (f"unknown calculator '{name}'{hint} (a user calculator is known once its plugin is loaded: "
            "--plugin MODULE_OR_FILE.py, or the graph's 'plugins:' list)")
