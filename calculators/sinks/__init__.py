"""Sinks: calculators that take results out of a graph (video and image files, JSON lines, a window, a web preview;
MediaWriter picks a writer by what its ``path`` is)."""

from calculators.sinks.display import Display
from calculators.sinks.files import ImageWriter, JsonlWriter
from calculators.sinks.media_writer import MediaWriter, output_kind
from calculators.sinks.video_writer import VideoFileWriter, VideoWriter
from calculators.sinks.web_preview import WebPreview

__all__ = ["Display", "ImageWriter", "JsonlWriter", "MediaWriter", "VideoFileWriter", "VideoWriter", "WebPreview", "output_kind"]
