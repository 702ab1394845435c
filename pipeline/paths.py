"""The files a run reads and writes: an output that is an input, or two outputs on one file, are
refused before anything runs.

A calculator's options say which of them name files, in their schema:
``Field(..., json_schema_extra={"file": "read"})`` for what it reads (a video, an image, a
folder or glob of images) and ``{"file": "write"}`` for what it creates or truncates (a video,
JSON lines; a pattern such as ``out/f_{index:05d}.png`` stands for every file it can make).
``check_files`` compares them once the side packets are resolved, by the file itself where it
exists (so a symbolic or hard link to an input is caught) and by its absolute path where not.
URLs (``rtsp://``...) and catalog names (``sample:``) are not files of the user's and are not
compared.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import re
from dataclasses import dataclass

from .errors import Problem

_FIELD = re.compile(r"\{[^{}]*\}")


@dataclass(frozen=True)
class _Use:
    node: str
    calculator: str
    option: str
    path: str  # as given
    file: str | None  # the spec's file and line, for the problem
    line: int | None


def file_options(options_model) -> dict[str, str]:
    """{option name: "read" | "write"} declared by an options schema."""
    if options_model is None:
        return {}
    out = {}
    for name, field in getattr(options_model, "model_fields", {}).items():
        extra = field.json_schema_extra
        if isinstance(extra, dict) and extra.get("file") in ("read", "write"):
            out[name] = extra["file"]
    return out


def _is_local(path) -> bool:
    if not isinstance(path, str) or not path:
        return False
    if path.startswith("file://"):
        return True
    return "://" not in path and not re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:(?![\\/])", path)


def _strip(path: str) -> str:
    return path[len("file://"):] if path.startswith("file://") else path


def _key(path: str):
    """What identifies a file: (device, inode) when it exists, else its absolute real path."""
    try:
        st = os.stat(path)
        return ("inode", st.st_dev, st.st_ino)
    except OSError:
        return ("path", os.path.realpath(path))


def _read_files(path: str) -> list[str]:
    """The files a read option names: the file, a folder's files, or a glob's matches."""
    if os.path.isdir(path):
        try:
            return [os.path.join(path, n) for n in sorted(os.listdir(path))]
        except OSError:
            return []
    if glob.has_magic(path):
        return sorted(glob.glob(path))
    return [path]


def check_files(nodes) -> list[Problem]:
    """``nodes``: (node name, calculator name, options model class, options instance, file, line)
    per node. Returns a problem for each write that would overwrite a read file or another write."""
    reads: list[tuple[_Use, object]] = []
    writes: list[tuple[_Use, object, str | None]] = []  # (use, key, glob pattern or None)
    for name, calculator, model, options, file, line in nodes:
        for option, role in file_options(model).items():
            value = getattr(options, option, None)
            if not _is_local(value):
                continue
            use = _Use(name, calculator, option, value, file, line)
            path = _strip(value)
            if role == "read":
                for f in _read_files(path):
                    reads.append((use, _key(f)))
            elif _FIELD.search(path):
                pattern = os.path.realpath(_FIELD.sub("*", path))
                writes.append((use, None, pattern))
            else:
                writes.append((use, _key(path), None))
    problems = []
    for i, (w, wkey, pattern) in enumerate(writes):
        for r, rkey in reads:
            if (wkey is not None and wkey == rkey) or (
                    pattern is not None and rkey[0] == "inode" and _matches(pattern, r.path)):
                problems.append(Problem(w.file, w.line, (
                    f"node '{w.node}' ({w.calculator}) would overwrite {w.path!r} (option {w.option}), "
                    f"which node '{r.node}' ({r.calculator}) reads (option {r.option}): an output must not "
                    "be an input; give it another path")))
                break
        else:
            for w2, wkey2, pattern2 in writes[:i]:
                same = (wkey is not None and wkey == wkey2) or (
                    pattern is not None and pattern == pattern2) or (
                    pattern is not None and wkey2 is not None and fnmatch.fnmatch(os.path.realpath(_strip(w2.path)), pattern)) or (
                    pattern2 is not None and wkey is not None and fnmatch.fnmatch(os.path.realpath(_strip(w.path)), pattern2))
                if same:
                    problems.append(Problem(w.file, w.line, (
                        f"node '{w.node}' ({w.calculator}) would write {w.path!r} (option {w.option}), which node "
                        f"'{w2.node}' ({w2.calculator}) writes too (option {w2.option}): give each output its "
                        "own path")))
                    break
    return problems


def _matches(pattern: str, path: str) -> bool:
    for f in _read_files(_strip(path)):
        if fnmatch.fnmatch(os.path.realpath(f), pattern):
            return True
    return False
