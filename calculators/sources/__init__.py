"""Sources: calculators that bring frames into a graph (video files and streams, cameras, images, test patterns;
MediaSource picks among them by what its ``source`` is)."""

# Which module of this family registers each calculator: the registry imports a module only when a
# graph names one of its calculators (tests/structure/test_registry.py checks this table).
CALCULATORS = {
    "CameraSource": "camera",
    "ImageSource": "images",
    "MediaSource": "media",
    "SyntheticSource": "synthetic",
    "VideoSource": "video",
}
