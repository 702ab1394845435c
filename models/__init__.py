"""Models and sample media, apart from the calculators that run them.

- ``catalog``: the named models and sample videos of ``catalog.yaml``, pulled once into a per-user
  cache and verified by checksum (``resolve("zoo:blazeface-short")``).
- ``convert``: conversion between model formats (ONNX, OpenVINO IR, ncnn, TensorRT), checked
  against the source model on real frames.
- ``task_bundle``: MediaPipe Tasks ``.task`` bundles written from plain ``.tflite`` models.

Importing this package (or ``models.catalog``) loads no calculator, engine or OpenCV, so
``vpipe models list`` starts at once.
"""
