"""Reading model outputs however the Inference calculator packs them (pure, no graph needed)."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from calculators.types import Tensor


def output_arrays(value: Any) -> list[tuple[str | None, np.ndarray]]:
    """(name, array) pairs from a Tensor, a Tensors/list/tuple of them, a dict or a bare array."""
    if isinstance(value, Tensor):
        return [(value.name, value.data)]
    if isinstance(value, np.ndarray):
        return [(None, value)]
    if isinstance(value, dict):
        return [(str(k), v.data if isinstance(v, Tensor) else np.asarray(v)) for k, v in value.items()]
    if isinstance(value, (list, tuple)):
        out = []
        for item in value:
            out.extend(output_arrays(item))
        return out
    raise TypeError(f"expected model outputs (Tensor, Tensors, list or dict of arrays), got {type(value).__name__}")


def pick(arrays: list[tuple[str | None, np.ndarray]], name: str | None, test: Callable[[np.ndarray], bool],
         what: str) -> np.ndarray:
    """The array called ``name`` or else the only one passing ``test``; a clear error otherwise."""
    if name is not None:
        for n, a in arrays:
            if n == name:
                return a
        raise ValueError(f"no model output named {name!r} for {what}; outputs are "
                         f"{[(n, a.shape) for n, a in arrays]}")
    found = [a for _, a in arrays if test(a)]
    if len(found) != 1:
        raise ValueError(f"cannot tell which model output holds {what}: {len(found)} candidates among "
                         f"{[(n, a.shape) for n, a in arrays]}; name it in the options")
    return found[0]


def named_or_first(arrays: list[tuple[str | None, np.ndarray]], name: str | None, what: str) -> np.ndarray:
    """The array called ``name`` (an error listing the outputs when there is none), else the first."""
    if name is not None:
        return pick(arrays, name, lambda a: True, what)
    if not arrays:
        raise ValueError(f"the model gave no outputs to read {what} from")
    return arrays[0][1]
