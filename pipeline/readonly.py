"""Payloads are handed out read-only: the arrays in a packet are frozen when it is sent.

Packets are passed by reference, so with fan-out two consumers share one array. A calculator that
wrote into a frame it received would silently change what its siblings see (a VideoWriter beside
an annotator that draws in place records the drawings, or black frames). Freezing makes that
mistake an error at the write, raised inside the calculator that made it (numpy's
``ValueError: assignment destination is read-only``), so the run stops naming the node; a
calculator that wants to change a frame works on a copy (``image.data.copy()``).

What is frozen: a numpy array payload, the array fields of a dataclass payload (``Image``,
``Tensor``, ``Detections``...: the fields annotated ``ndarray``), and the arrays in a tuple, list
or dict payload of at most ``MAX_ITEMS`` items, one level deep. Freezing sets
``ndarray.flags.writeable = False`` on the array sent and copies nothing. The producer's own array
is frozen too: once sent, it belongs to the graph.

Cost, per packet sent: the freezer is looked up by the payload's type in a dict (``FREEZERS``,
filled on first sight of a type), so a payload with no array (an int, a string, a record of
scalars) costs one dict lookup; an array costs a flags check (a few hundred nanoseconds).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

MAX_ITEMS = 64  # containers larger than this are not walked (cost per packet stays bounded)

_ndarray = np.ndarray


def _freeze_array(a: np.ndarray) -> None:
    flags = a.flags
    if flags.writeable:
        flags.writeable = False


def _freeze_items(values) -> None:
    if len(values) <= MAX_ITEMS:
        for v in values:
            f = FREEZERS.get(v.__class__, _new)
            if f is not None:
                f(v)


def _freeze_dict(d: dict) -> None:
    if len(d) <= MAX_ITEMS:
        _freeze_items(tuple(d.values()))


def _freezer_for(t: type) -> Callable | None:
    if issubclass(t, _ndarray):
        return _freeze_array
    if dataclasses.is_dataclass(t):
        fields = dataclasses.fields(t)
        arrays = tuple(f.name for f in fields if "ndarray" in str(f.type))
        if not arrays:
            return None

        def freeze_fields(v) -> None:
            for name in arrays:
                a = getattr(v, name)
                if a is not None and a.__class__ is _ndarray:
                    flags = a.flags
                    if flags.writeable:
                        flags.writeable = False
                elif isinstance(a, _ndarray):
                    _freeze_array(a)

        return freeze_fields
    if issubclass(t, (tuple, list)):
        return _freeze_items
    if issubclass(t, dict):
        return _freeze_dict
    return None


def _new(value) -> None:
    """First sight of a payload type: find its freezer, remember it, apply it."""
    f = FREEZERS[value.__class__] = _freezer_for(value.__class__)
    if f is not None:
        f(value)


# payload type -> its freezer (None: nothing to freeze); Stream.send reads it inline
FREEZERS: dict[type, Callable | None] = {t: None for t in (int, float, str, bytes, bool, type(None))}


def freeze(value) -> None:
    """Makes the arrays of a payload read-only (see the module docstring for which)."""
    f = FREEZERS.get(value.__class__, _new)
    if f is not None:
        f(value)
