"""Sinks: calculators that take results out of a graph (video and image files, JSON lines, a window, a web preview;
MediaWriter picks a writer by what its ``path`` is)."""

# Which module of this family registers each calculator: the registry imports a module only when a
# graph names one of its calculators (tests/structure/test_registry.py checks this table).
CALCULATORS = {
    "Display": "display",
    "ImageWriter": "files",
    "JsonlWriter": "files",
    "MediaWriter": "media_writer",
    "VideoWriter": "video_writer",
    "WebPreview": "web_preview",
}
