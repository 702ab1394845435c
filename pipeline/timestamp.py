"""Timestamps and packets.

A timestamp is an ``int`` of microseconds (plain ints keep the hot path cheap). The special values
sit at the ends of the int64 range, in this order::

    UNSET < UNSTARTED < PRESTREAM < MIN ... MAX < POSTSTREAM < DONE

Arithmetic is meaningful only between MIN and MAX.
"""

from __future__ import annotations

from typing import Any, NamedTuple

_I64_MIN = -(2**63)
_I64_MAX = 2**63 - 1


class Timestamp:
    """Namespace of the special timestamp values and helpers."""

    UNSET = _I64_MIN
    UNSTARTED = _I64_MIN + 1
    PRESTREAM = _I64_MIN + 2
    MIN = _I64_MIN + 3
    MAX = _I64_MAX - 3
    POSTSTREAM = _I64_MAX - 2
    DONE = _I64_MAX - 1  # reserve _I64_MAX (one past DONE) for internal "never"

    _NAMES = {
        _I64_MIN: "Unset", _I64_MIN + 1: "Unstarted", _I64_MIN + 2: "PreStream",
        _I64_MAX - 2: "PostStream", _I64_MAX - 1: "Done",
    }

    @staticmethod
    def name(t: int | None) -> str:
        """A readable form: the special value's name or the microseconds."""
        if t is None:
            return "none"
        special = Timestamp._NAMES.get(t)
        if special:
            return special
        if t == Timestamp.MIN:
            return "Min"
        if t == Timestamp.MAX:
            return "Max"
        return str(t)

    @staticmethod
    def is_range_value(t: int) -> bool:
        return Timestamp.MIN <= t <= Timestamp.MAX

    @staticmethod
    def check(t: Any) -> int:
        """Validates a user-given packet timestamp: an int in [MIN, MAX], or POSTSTREAM (a last
        packet, after which the stream is done). PRESTREAM is refused: a stream's first allowed
        timestamp is MIN (vpipe has no packets before the stream; what comes before every packet
        is a side packet)."""
        if isinstance(t, bool) or not isinstance(t, int):
            try:
                import numpy as np  # numpy ints are welcome

                if isinstance(t, np.integer):
                    t = int(t)
                else:
                    raise TypeError
            except TypeError:
                raise TypeError(f"timestamp must be an int of microseconds, got {type(t).__name__}: {t!r}") from None
        if not (Timestamp.MIN <= t <= Timestamp.MAX or t == Timestamp.POSTSTREAM):
            if t == Timestamp.PRESTREAM:
                raise ValueError("timestamp PreStream is not taken: a stream's first allowed timestamp is Min "
                                 "(give what comes before every packet as a side packet)")
            raise ValueError(f"timestamp {Timestamp.name(t)} is outside [Min, Max] and not PostStream")
        return t


class Packet(NamedTuple):
    """An immutable payload with its timestamp. The payload is shared by reference, never copied."""

    value: Any
    timestamp: int

    def __repr__(self) -> str:
        return f"Packet(t={Timestamp.name(self.timestamp)}, value={type(self.value).__name__})"
