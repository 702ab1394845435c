"""MediaPipe's landmark filters (mediapipe/util/filtering/, v0.10.21), timestamp-aware, pure Python.

- :class:`LowPassFilter`: exponential smoothing; the first value passes through.
- :class:`OneEuroFilter`: the 1-euro filter (Casiez et al.) with MediaPipe's details: the sampling
  frequency follows the timestamps, the derivative is of the *raw* values times ``value_scale``.
- :class:`RelativeVelocityFilter`: MediaPipe's velocity filter (windowed velocity, legacy distance).
- :class:`OneEuroArray`: as many One Euro filters as an array has values, stepped together in
  numpy (what :class:`LandmarksSmoother` runs): the same operations in the same order as
  :class:`OneEuroFilter` per value, so the same floats (tests/landmarks/test_fast_paths.py).
- :class:`LandmarksSmoother`: one filter per landmark coordinate of one object, with MediaPipe's
  object scale (mean of width and height of the points, or of a given rect) as value scale.
"""

from __future__ import annotations

import math

import numpy as np


class LowPassFilter:
    def __init__(self, alpha: float) -> None:
        self.alpha = alpha
        self.initialized = False
        self.raw = 0.0
        self.stored = 0.0

    def apply(self, value: float, alpha: float | None = None) -> float:
        if alpha is not None and 0.0 <= alpha <= 1.0:
            self.alpha = alpha
        result = self.alpha * value + (1.0 - self.alpha) * self.stored if self.initialized else value
        self.initialized = True
        self.raw, self.stored = value, result
        return result


class OneEuroFilter:
    def __init__(self, frequency: float = 30.0, min_cutoff: float = 1.0, beta: float = 0.0,
                 derivate_cutoff: float = 1.0) -> None:
        self.frequency, self.min_cutoff, self.beta, self.derivate_cutoff = frequency, min_cutoff, beta, derivate_cutoff
        self.x = LowPassFilter(self._alpha(min_cutoff))
        self.dx = LowPassFilter(self._alpha(derivate_cutoff))
        self.last_time = 0  # MediaPipe's kUninitializedTimestamp

    def _alpha(self, cutoff: float) -> float:
        te = 1.0 / self.frequency
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / te)

    def apply(self, timestamp_us: int, value_scale: float, value: float) -> float:
        t = int(timestamp_us) * 1000
        if self.last_time >= t:
            return value
        if self.last_time != 0 and t != 0:
            self.frequency = 1.0 / ((t - self.last_time) * 1e-9)
        self.last_time = t
        dvalue = (value - self.x.raw) * value_scale * self.frequency if self.x.initialized else 0.0
        edvalue = self.dx.apply(dvalue, self._alpha(self.derivate_cutoff))
        cutoff = self.min_cutoff + self.beta * abs(edvalue)
        return self.x.apply(value, self._alpha(cutoff))


class OneEuroArray:
    """:class:`OneEuroFilter` on every value of an array at once. The filters of one array are
    created and stepped together, so their clock (last time, frequency, initialised) is one; their
    values, derivatives and alphas are arrays. Each step is OneEuroFilter.apply's arithmetic,
    elementwise and in its order (IEEE operations on float64 give the same result in numpy as on
    Python floats), including LowPassFilter's rule that an alpha outside [0, 1] (a negative
    ``beta``) keeps the previous one."""

    def __init__(self, shape: tuple[int, ...], frequency: float = 30.0, min_cutoff: float = 1.0,
                 beta: float = 0.0, derivate_cutoff: float = 1.0) -> None:
        self.frequency, self.min_cutoff, self.beta, self.derivate_cutoff = frequency, min_cutoff, beta, derivate_cutoff
        self.shape = tuple(shape)
        self.last_time = 0
        self.initialized = False
        self.x_alpha = np.full(self.shape, self._alpha(min_cutoff))
        self.dx_alpha = self._alpha(derivate_cutoff)
        self.x_raw = self.x_stored = self.dx_stored = np.zeros(self.shape)

    def _alpha(self, cutoff):
        te = 1.0 / self.frequency
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / te)

    def apply(self, timestamp_us: int, value_scale: float, value: np.ndarray) -> np.ndarray:
        """The filtered values (float64, ``value``'s shape); ``value`` is left as it is."""
        value = np.asarray(value, np.float64)
        t = int(timestamp_us) * 1000
        if self.last_time >= t:
            return value.copy()
        if self.last_time != 0 and t != 0:
            self.frequency = 1.0 / ((t - self.last_time) * 1e-9)
        self.last_time = t
        alpha_d = self._alpha(self.derivate_cutoff)
        if 0.0 <= alpha_d <= 1.0:
            self.dx_alpha = alpha_d
        if self.initialized:
            dvalue = (value - self.x_raw) * value_scale * self.frequency
            edvalue = self.dx_alpha * dvalue + (1.0 - self.dx_alpha) * self.dx_stored
        else:
            edvalue = np.zeros(self.shape)
        alpha = self._alpha(self.min_cutoff + self.beta * np.abs(edvalue))
        self.x_alpha = np.where((alpha >= 0.0) & (alpha <= 1.0), alpha, self.x_alpha)
        result = self.x_alpha * value + (1.0 - self.x_alpha) * self.x_stored if self.initialized else value.copy()
        self.initialized = True
        self.x_raw, self.x_stored, self.dx_stored = value.copy(), result, edvalue
        return result


class RelativeVelocityFilter:
    _MAX_DURATION_NS = 1_000_000_000 // 30

    def __init__(self, window_size: int = 5, velocity_scale: float = 10.0) -> None:
        self.window_size, self.velocity_scale = window_size, velocity_scale
        self.window: list[tuple[float, int]] = []  # newest first: (distance, duration ns)
        self.last_value = 0.0
        self.last_scale = 1.0
        self.last_time = -1
        self.low_pass = LowPassFilter(1.0)

    def apply(self, timestamp_us: int, value_scale: float, value: float) -> float:
        t = int(timestamp_us) * 1000
        if self.last_time >= t:
            return value
        if self.last_time == -1:
            alpha = 1.0
        else:
            distance = value * value_scale - self.last_value * self.last_scale
            duration = t - self.last_time
            cum_d, cum_t = distance, duration
            limit = (1 + len(self.window)) * self._MAX_DURATION_NS
            for d, dt in self.window:
                if cum_t + dt > limit:
                    break
                cum_d += d
                cum_t += dt
            velocity = cum_d / (cum_t * 1e-9)
            alpha = 1.0 - 1.0 / (1.0 + self.velocity_scale * abs(velocity))
            self.window.insert(0, (distance, duration))
            del self.window[self.window_size:]
        self.last_value, self.last_scale, self.last_time = value, value_scale, t
        return self.low_pass.apply(value, alpha)


def object_scale(points: np.ndarray) -> float:
    """MediaPipe's object scale of one object's (K, 2+) points: the mean of its width and height."""
    lo, hi = points[:, :2].min(axis=0), points[:, :2].max(axis=0)
    return float(((hi[0] - lo[0]) + (hi[1] - lo[1])) / 2.0)


class LandmarksSmoother:
    """Smooths one object's (K, 3) landmarks over time: ``filter`` one_euro | velocity, with the
    parameters of MediaPipe's LandmarksSmoothingCalculatorOptions."""

    def __init__(self, filter: str = "one_euro", *, frequency: float = 30.0, min_cutoff: float = 1.0,
                 beta: float = 0.0, derivate_cutoff: float = 1.0, window_size: int = 5,
                 velocity_scale: float = 10.0, min_allowed_object_scale: float = 1e-6,
                 disable_value_scaling: bool = False) -> None:
        if filter not in ("one_euro", "velocity"):
            raise ValueError(f"filter must be one_euro or velocity, got {filter!r}")
        self.kind = filter
        self.params = dict(frequency=frequency, min_cutoff=min_cutoff, beta=beta, derivate_cutoff=derivate_cutoff) \
            if filter == "one_euro" else dict(window_size=window_size, velocity_scale=velocity_scale)
        self.min_scale = min_allowed_object_scale
        self.disable_value_scaling = disable_value_scaling
        self.filters: list | None = None

    def reset(self) -> None:
        self.filters = None

    def apply(self, timestamp_us: int, points: np.ndarray, scale: float | None = None) -> np.ndarray:
        """The smoothed (K, 3) points; ``scale``: the object scale (default: from the points)."""
        value_scale = 1.0
        if self.disable_value_scaling:
            pass
        else:
            s = object_scale(points) if scale is None else scale
            if s < self.min_scale:
                return points
            value_scale = 1.0 / s
        if self.kind == "one_euro":
            if not isinstance(self.filters, OneEuroArray) or self.filters.shape != points.shape:
                self.filters = OneEuroArray(points.shape, **self.params)
            return self.filters.apply(timestamp_us, value_scale, points)
        if self.filters is None or len(self.filters) != points.size:
            self.filters = [RelativeVelocityFilter(**self.params) for _ in range(points.size)]
        flat = points.reshape(-1)
        out = np.array([f.apply(timestamp_us, value_scale, float(v)) for f, v in zip(self.filters, flat)],
                       np.float64)
        return out.reshape(points.shape)
