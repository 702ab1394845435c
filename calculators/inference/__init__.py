"""Inference calculators: ``Inference`` (ONNX Runtime, OpenVINO, TensorRT, ncnn) and the MediaPipe
Tasks calculators. No runtime is imported here: each engine module imports its library when a
model is loaded, so this package imports with none of them installed."""

# Which module of this family registers each calculator: the registry imports a module only when a
# graph names one of its calculators (tests/structure/test_registry.py checks this table).
CALCULATORS = {
    "Inference": "calculator",
    "MediaPipeFaceDetector": "mediapipe_tasks",
    "MediaPipeHandLandmarker": "mediapipe_tasks",
    "MediaPipeImageSegmenter": "mediapipe_tasks",
    "MediaPipePoseLandmarker": "mediapipe_tasks",
}
