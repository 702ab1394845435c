"""User calculator modules (plugins): loading one by module name or file path, and the consent a
graph file needs before vpipe imports one for it.

A plugin is Python code; a graph file is data from anywhere. So a graph file's ``plugins:`` list
only *names* modules, and vpipe imports a named plugin only with the user's consent, which is one of:

- it is already loaded: ``vpipe run --plugin face_blur``, or ``import face_blur`` (or
  ``pipeline.plugins.load("face_blur")``) in Python before the graph is loaded;
- it is in the user's allowlist, ``plugins:`` in the user config file (``user_config_path()``:
  ``$VPIPE_CONFIG``, else ``$XDG_CONFIG_HOME/vpipe/config.yaml``, else ``~/.config/vpipe/config.yaml``);
  an entry ``my_pkg`` also allows its submodules (``my_pkg.calcs``);
- the graph file is trusted: ``vpipe run --trust`` (also ``validate``, ``viz``, ``profile``), or
  ``Graph.from_yaml(path, trust=True)``; trust covers the subgraphs the file includes.

A plugin is named by a module name (``my_pkg.calcs``, imported from ``sys.path`` as it is: the current
folder is not added to it) or by a file path (anything ending in ``.py`` or holding a ``/``:
``./face_blur.py``, relative to the current folder on the command line and to the graph file's folder
in a graph file). A file is imported once, as a module named after its stem.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import threading
from pathlib import Path
from types import ModuleType

from .errors import GraphConfigError, UserError

_lock = threading.RLock()
_files: dict[Path, ModuleType] = {}  # resolved path -> module, for plugins loaded from a file


class PluginError(UserError):
    """A plugin that cannot be found or imported; the message says what was tried."""


def is_path(ref: str) -> bool:
    """A plugin reference that names a file (``./face_blur.py``, ``/x/y.py``) rather than a module."""
    return ref.endswith(".py") or "/" in ref or os.sep in ref


def _file_of(ref: str, base_dir: Path | None) -> Path:
    p = Path(ref).expanduser()
    if not p.is_absolute():
        p = (base_dir or Path.cwd()) / p
    return p.resolve()


def is_loaded(ref: str, base_dir: Path | None = None) -> bool:
    """Whether ``ref`` is already imported (so naming it again runs no code)."""
    if is_path(ref):
        return _file_of(ref, base_dir) in _files
    return ref in sys.modules


def load(ref: str, base_dir: Path | None = None) -> ModuleType:
    """Imports a plugin by module name or file path (relative to ``base_dir``, default the current
    folder); raises ``PluginError`` saying which of the two was tried and why it failed."""
    with _lock:
        if is_path(ref):
            return _load_file(ref, _file_of(ref, base_dir))
        return _load_module(ref, base_dir)


def _load_module(ref: str, base_dir: Path | None) -> ModuleType:
    try:
        return importlib.import_module(ref)
    except ModuleNotFoundError as e:
        if e.name is not None and (ref == e.name or ref.startswith(e.name + ".")):
            beside = (base_dir or Path.cwd()) / f"{ref.replace('.', '/')}.py"
            hint = (f"; the file {beside} is not on the import path: name it by its path, ./{ref}.py"
                    if beside.is_file() else "; a plugin file is named by its path, e.g. ./my_calcs.py")
            raise PluginError(f"cannot load plugin '{ref}': tried it as a module name, and no module named "
                              f"'{e.name}' is on the import path{hint}") from e
        raise PluginError(f"cannot load plugin '{ref}': importing it failed: {type(e).__name__}: {e}") from e
    except Exception as e:  # noqa: BLE001 - whatever the module raises, the user must see it
        raise PluginError(f"cannot load plugin '{ref}': importing it failed: {type(e).__name__}: {e}") from e


def _load_file(ref: str, path: Path) -> ModuleType:
    if path in _files:
        return _files[path]
    why = "it ends in .py" if ref.endswith(".py") else "it holds a '/'"
    if not path.is_file():
        what = "is a folder, not a Python file" if path.is_dir() else "does not exist"
        raise PluginError(f"cannot load plugin '{ref}': tried it as a file path ({why}), and {path} {what}")
    name = path.stem if path.stem.isidentifier() else "vpipe_plugin_" + "".join(
        c if c.isalnum() else "_" for c in path.stem)
    existing = sys.modules.get(name)
    if existing is not None:
        origin = getattr(existing, "__file__", None)
        if origin and Path(origin).resolve() == path:
            _files[path] = existing
            return existing
        raise PluginError(f"cannot load plugin '{ref}': its module name '{name}' is already taken by "
                          f"{origin or 'a built-in module'}; rename the file")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"cannot load plugin '{ref}': {path} is not a Python module file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before running it, as an import does (dataclasses, pickling need it)
    try:
        spec.loader.exec_module(module)
    except BaseException as e:
        sys.modules.pop(name, None)
        if not isinstance(e, Exception):
            raise
        raise PluginError(f"cannot load plugin '{ref}' ({path}): importing it failed: "
                          f"{type(e).__name__}: {e}") from e
    _files[path] = module
    return module


# ---------------------------------------------------------------------------------------------
# Consent


def user_config_path() -> Path:
    """The user's vpipe config file: ``$VPIPE_CONFIG``, else under ``$XDG_CONFIG_HOME`` (``~/.config``)."""
    explicit = os.environ.get("VPIPE_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "vpipe" / "config.yaml"


USER_CONFIG_KEYS = ("plugins",)


def allowlist() -> list[str]:
    """The plugins the user allows every graph file to import (``plugins:`` in the user config)."""
    from .errors import Problem
    from .graph_yaml import decode, load_yaml

    path = user_config_path()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as e:
        raise GraphConfigError([Problem(str(path), None, f"cannot read the vpipe config file: {e.strerror}")]) from None
    cfg = load_yaml(decode(data, str(path)), str(path))
    if cfg is None:
        return []
    if not isinstance(cfg, dict):
        raise GraphConfigError([Problem(str(path), 1, "the vpipe config file must be a mapping, e.g. "
                                                      "'plugins: [my_package.calculators]'")])
    for key in cfg:
        if key not in USER_CONFIG_KEYS:
            raise GraphConfigError([Problem(str(path), cfg.line_of(key), f"unknown key {key!r} in the vpipe config "
                                                                         f"file (known: {', '.join(USER_CONFIG_KEYS)})")])
    allowed = cfg.get("plugins") or []
    if isinstance(allowed, str):
        allowed = [allowed]
    if not isinstance(allowed, list) or not all(isinstance(a, str) for a in allowed):
        raise GraphConfigError([Problem(str(path), cfg.line_of("plugins"),
                                        "'plugins' must be a list of module names or file paths")])
    return list(allowed)


def is_allowed(ref: str, base_dir: Path | None, allowed: list[str]) -> bool:
    """Whether the allowlist names ``ref``: the same module or a package above it, or the same file."""
    if is_path(ref):
        target = _file_of(ref, base_dir)
        config_dir = user_config_path().parent
        return any(is_path(a) and _file_of(a, config_dir) == target for a in allowed)
    return any(not is_path(a) and (ref == a or ref.startswith(a + ".")) for a in allowed)


def consent_hint(ref: str) -> str:
    """How a user gives consent for ``ref``, for an error message."""
    return (f"plugins are code, so vpipe imports one only with your consent: --plugin {ref} (in Python: import "
            f"it first, or trust=True), --trust for this graph file, or list it under 'plugins:' in "
            f"{user_config_path()}")
