"""Post-processing calculators: detection decoders, NMS, projection, tracking, segmentation masks.

Pure functions live in ``ssd``, ``centerface``, ``yolo``, ``nms``, ``geometry``, ``tracking`` and
``masks``; the calculators wrap them.
"""

# Which module of this family registers each calculator: the registry imports a module only when a
# graph names one of its calculators (tests/structure/test_registry.py checks this table).
CALCULATORS = {
    "BackgroundEffect": "segmentation",
    "CenterFaceDecoder": "decoders",
    "IouTracking": "detection_filters",
    "MaskToImage": "segmentation",
    "NonMaxSuppression": "detection_filters",
    "ProjectDetections": "detection_filters",
    "SegmentationMask": "segmentation",
    "SsdDetectionsDecoder": "decoders",
    "YoloDecoder": "decoders",
}
