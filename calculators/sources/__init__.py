"""Sources: calculators that bring frames into a graph (video files and streams, cameras, images, test patterns;
MediaSource picks among them by what its ``source`` is)."""

from calculators.sources.camera import CameraSource
from calculators.sources.common import MediaError, VideoInfo
from calculators.sources.images import ImageSource
from calculators.sources.media import MediaSource, source_kind
from calculators.sources.synthetic import SyntheticSource, synthetic_frame
from calculators.sources.video import VideoReader, VideoSource

__all__ = ["CameraSource", "ImageSource", "MediaError", "MediaSource", "SyntheticSource", "VideoInfo", "VideoReader",
           "VideoSource", "source_kind", "synthetic_frame"]
