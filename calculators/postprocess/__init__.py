"""Post-processing calculators: detection decoders, NMS, projection, tracking, segmentation masks.

Pure functions live in ``ssd``, ``centerface``, ``yolo``, ``nms``, ``geometry``, ``tracking`` and
``masks``; the calculators wrap them.
"""

from calculators.postprocess import decoders, detection_filters, segmentation  # noqa: F401  (registers them)
