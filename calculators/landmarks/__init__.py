"""Landmark calculators (MediaPipe's face mesh, hands and pose as graphs): regions of interest,
the tracking loop, landmark decoding and smoothing.

Pure functions live in ``geometry`` (rects, ROI maps), ``decode`` (tensors to points), ``filters``
(One Euro, velocity, low-pass) and ``connections`` (MediaPipe's landmark connection lists, data);
the calculators in ``rects``, ``tracking`` and ``landmarks`` wrap them.
"""

from calculators.landmarks import face_refinement, landmarks, rects, tracking  # noqa: F401  (registers them)
