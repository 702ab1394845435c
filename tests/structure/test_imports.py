"""The layout's import rules: pipeline/ imports no calculator, vision or engine library, and the
built-in library imports with no engine installed (a missing one is an error naming the extra)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENGINES = ["onnxruntime", "openvino", "ncnn", "mediapipe", "tensorrt", "tflite2onnx", "ai_edge_litert"]
VISION = ["cv2", "av", "calculators", "apps"] + ENGINES


def run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_pipeline_imports_no_vision_engine_or_calculators():
    r = run("import sys, pipeline\n"
            "from pipeline import Graph, testing\n"
            f"bad = [m for m in {VISION!r} if m in sys.modules]\n"
            "print(bad)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]", f"pipeline imported {r.stdout.strip()}"


def test_calculators_import_without_any_engine():
    blocked = "".join(f"sys.modules[{m!r}] = None\n" for m in ENGINES)
    r = run("import sys\n" + blocked +
            "import calculators\n"
            "from pipeline import registry\n"
            "assert 'Inference' in registry.names() and 'VideoSource' in registry.names()\n"
            "print('ok')")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


def test_the_catalog_imports_no_calculator_vision_or_engine_library():
    # `vpipe models list` needs the catalog only: no calculator family, OpenCV, PyAV or engine.
    r = run("import sys, models.catalog\n"
            "models.catalog.entries()\n"
            f"bad = sorted({{m.split('.')[0] for m in sys.modules}} & set({VISION!r} + ['numpy', 'pipeline']))\n"
            "print(bad)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]", f"models.catalog imported {r.stdout.strip()}"
