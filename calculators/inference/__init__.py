"""Inference calculators: ``Inference`` (ONNX Runtime, OpenVINO, TensorRT, ncnn) and the MediaPipe
Tasks calculators. No runtime is imported here: each engine module imports its library when a
model is loaded, so this package imports with none of them installed."""

from .calculator import Inference, InferenceOptions  # noqa: F401  (registers Inference)
from .mediapipe_tasks import (  # noqa: F401  (registers the MediaPipe calculators)
    MediaPipeFaceDetector,
    MediaPipeHandLandmarker,
    MediaPipeImageSegmenter,
    MediaPipePoseLandmarker,
)
