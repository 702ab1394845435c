"""A pytest plugin that makes the vision and engine libraries impossible to import, for the tests of
the framework alone: ``python -m pytest -p tests.import_blocker tests/pipeline``.

``pipeline/`` never imports OpenCV, PyAV or an engine, and its tests must show it: run under this
plugin (``tests/structure/test_framework_without_vision.py`` does, in a subprocess), an import of one
of them anywhere a framework test reaches, now or in a future change, fails that test with an error
naming the library. Tests of the calculator library that happen to live beside them carry the
``vision`` mark and are skipped here (they run in the ordinary suite).
"""

from __future__ import annotations

import importlib.abc
import sys

import pytest

BLOCKED = ("cv2", "av", "onnxruntime", "openvino", "ncnn", "mediapipe", "tensorrt", "tflite2onnx", "ai_edge_litert")


class BlockedImport(ImportError):
    pass


class _Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise BlockedImport(f"import of {name} blocked: the framework's tests run without vision and engine "
                                f"libraries (tests/import_blocker.py); pipeline/ must not need {name.split('.')[0]}")
        return None


already = sorted(m for m in BLOCKED if m in sys.modules)
if already:
    raise RuntimeError(f"tests.import_blocker: {', '.join(already)} imported before the blocker was installed")
sys.meta_path.insert(0, _Blocker())


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="needs vision/engine libraries (tests.import_blocker is on)")
    for item in items:
        if item.get_closest_marker("vision") is not None:
            item.add_marker(skip)
