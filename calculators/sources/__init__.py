"""Sources: calculators that bring frames into a graph (video files and streams, cameras, images, test patterns)."""

from calculators.sources.camera import CameraSource
from calculators.sources.common import MediaError, VideoInfo
from calculators.sources.images import ImageSource
from calculators.sources.synthetic import SyntheticSource, synthetic_frame
from calculators.sources.video import VideoReader, VideoSource

__all__ = ["CameraSource", "ImageSource", "MediaError", "SyntheticSource", "VideoInfo", "VideoReader",
           "VideoSource", "synthetic_frame"]
