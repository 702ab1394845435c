"""Payloads are handed out read-only: the arrays in a packet are frozen when it is sent.

Packets are passed by reference, so with fan-out two consumers share one array. A calculator that
wrote into a frame it received would silently change what its siblings see (a VideoWriter beside
an annotator that draws in place records the drawings, or black frames). Freezing makes that
mistake an error at the write, raised inside the calculator that made it (numpy's
``ValueError: assignment destination is read-only``), so the run stops naming the node; a
calculator that wants to change a frame works on a copy (``image.data.copy()``).

What is frozen: a numpy array payload, the arrays held by a dataclass payload (``Image``,
``Tensor``, ``Detections``...), and those in a tuple, list or dict payload of at most
``MAX_ITEMS`` items, one level deep. Freezing sets ``ndarray.flags.writeable = False`` on the
array sent, which costs a few hundred nanoseconds and copies nothing. The producer's own array is
frozen too: once sent, it belongs to the graph.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

MAX_ITEMS = 64  # containers larger than this are not walked (cost per packet stays bounded)

_ndarray = np.ndarray
_freezers: dict[type, Callable | None] = {}


def _freeze_array(a: np.ndarray) -> None:
    if a.flags.writeable:
        a.flags.writeable = False


def _freeze_items(values) -> None:
    if len(values) <= MAX_ITEMS:
        for v in values:
            if isinstance(v, _ndarray):
                _freeze_array(v)
            elif dataclasses.is_dataclass(v):
                freeze(v)


def _freezer_for(t: type) -> Callable | None:
    if issubclass(t, _ndarray):
        return _freeze_array
    if dataclasses.is_dataclass(t):
        names = tuple(f.name for f in dataclasses.fields(t))

        def freeze_fields(v) -> None:
            for name in names:
                a = getattr(v, name, None)
                if isinstance(a, _ndarray):
                    _freeze_array(a)
                elif isinstance(a, (tuple, list)):
                    _freeze_items(a)

        return freeze_fields
    if issubclass(t, (tuple, list)):
        return _freeze_items
    if issubclass(t, dict):
        return lambda d: _freeze_items(tuple(d.values())) if len(d) <= MAX_ITEMS else None
    return None


def freeze(value) -> None:
    """Makes the arrays of a payload read-only (see the module docstring for which)."""
    t = type(value)
    try:
        f = _freezers[t]
    except KeyError:
        f = _freezers[t] = _freezer_for(t)
    if f is not None:
        f(value)
