"""Landmark calculators (MediaPipe's face mesh, hands and pose as graphs): regions of interest,
the tracking loop, landmark decoding and smoothing.

Pure functions live in ``geometry`` (rects, ROI maps), ``decode`` (tensors to points), ``filters``
(One Euro, velocity, low-pass) and ``connections`` (MediaPipe's landmark connection lists, data);
the calculators in ``rects``, ``tracking`` and ``landmarks`` wrap them.
"""

# Which module of this family registers each calculator: the registry imports a module only when a
# graph names one of its calculators (tests/structure/test_registry.py checks this table).
CALCULATORS = {
    "AssociateRects": "rects",
    "DetectionsToRects": "rects",
    "DetectorGate": "tracking",
    "LandmarksSmoothing": "landmarks",
    "LandmarksToRects": "rects",
    "PreviousLoopback": "tracking",
    "RectTransformation": "rects",
    "TensorsToLandmarks": "landmarks",
}
