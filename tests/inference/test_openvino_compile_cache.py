"""OpenVINO's model cache: a model compiled once is imported from its blob by the next process
(what makes a second `vpipe run` start sooner), in the ``cache_dir`` option's folder or the catalog's
cache; ``CACHE_DIR: ""`` turns it off; models with MediaPipe's custom ops are never cached. And the
engine imports ``openvino`` without its model-conversion tools, which ``openvino.convert_model``
still reaches."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import calculators  # noqa: F401  (registers the built-ins)
from calculators.inference import model_cache
from pipeline import Graph
from tests.assets import resolve_or_skip

from .conftest import needs_ov

ROOT = Path(__file__).resolve().parents[2]

pytestmark = needs_ov


def _open(model: Path, **options):
    """(the loaded OpenVINO engine, its output on a fixed input) of a graph with one Inference
    node; the graph is closed again before returning."""
    g = Graph.from_dict({"name": "cache", "inputs": ["in"], "nodes": [
        {"calculator": "Inference", "inputs": {"TENSORS": "in"}, "outputs": {"TENSORS": "out"},
         "options": {"model": str(model), "engine": "openvino", **options}}]})
    g.start()
    try:
        (shared,) = [s for k, s in model_cache._cache.items() if k[0] == str(model.resolve()) and s.refs]
        engine = shared.engine
        x = np.random.default_rng(0).random(engine.inputs[0].shape, dtype=np.float32)
        return engine, engine.infer([x])
    finally:
        g.close_all_inputs()
        g.wait(30)


def _blobs(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.blob")) if folder.exists() else []


def test_the_second_load_is_imported_from_the_cache_dir_option(tmp_path, blazeface):
    folder = tmp_path / "compiled"
    first, out1 = _open(blazeface, cache_dir=str(folder))
    assert not first.from_cache
    assert len(_blobs(folder)) == 1, f"no blob written to the cache_dir option's folder: {list(tmp_path.rglob('*'))}"
    second, out2 = _open(blazeface, cache_dir=str(folder))
    assert second is not first and second.from_cache, "the second load compiled the model again"
    assert all(np.array_equal(a, b) for a, b in zip(out1, out2)), "the cached model computes something else"


def test_the_default_cache_is_in_the_catalog_cache(tmp_path, monkeypatch, blazeface):
    monkeypatch.setenv("VPIPE_CACHE", str(tmp_path / "vpipe"))
    first, _ = _open(blazeface, threads=1)  # threads: a key of its own in the shared-model cache
    assert len(_blobs(tmp_path / "vpipe" / "openvino")) == 1
    second, _ = _open(blazeface, threads=1)
    assert not first.from_cache and second.from_cache


def test_cache_dir_empty_in_the_config_turns_it_off(tmp_path, monkeypatch, blazeface):
    monkeypatch.setenv("VPIPE_CACHE", str(tmp_path / "vpipe"))
    off = {"config": {"CACHE_DIR": ""}}
    first, _ = _open(blazeface, engine_options=off)
    second, _ = _open(blazeface, engine_options=off)
    assert not first.from_cache and not second.from_cache
    assert _blobs(tmp_path) == []


def test_a_model_with_mediapipe_custom_ops_is_not_cached(tmp_path):
    pytest.importorskip("tflite")
    model = resolve_or_skip("zoo:face-landmark-with-attention")
    folder = tmp_path / "compiled"
    engine, _ = _open(Path(model), cache_dir=str(folder))
    assert not engine.from_cache
    assert _blobs(folder) == [], "a model whose ops are Python functions was written to the cache"


def test_openvino_is_imported_without_its_conversion_tools_which_stay_reachable():
    code = ("import sys\n"
            "from calculators.inference.openvino_engine import runtime\n"
            "ov = runtime()\n"
            "print('openvino.tools.ovc' in sys.modules)\n"
            "convert = ov.convert_model\n"
            "import openvino.tools.ovc\n"
            "print(convert is openvino.tools.ovc.convert_model)\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["False", "True"], r.stdout


def test_models_compiled_at_once_with_the_cache_leave_the_locale_alone(tmp_path, blazeface):
    """OpenVINO's cached compile sets the C locale to "C" and back; two at once (a graph opens its
    models concurrently) left the process in "C", Python's preferred encoding ASCII. Two threads
    loading two models through the cache, several times, must leave it as it was."""
    import locale
    import threading

    from calculators.inference.engine import EngineOptions
    from calculators.inference.openvino_engine import OpenVinoEngine
    from models.catalog import resolve

    models = [blazeface, resolve("zoo:palm-detection-lite")]
    before = locale.setlocale(locale.LC_ALL)
    errors: list = []

    def load(path: Path) -> None:
        try:
            for _ in range(6):
                OpenVinoEngine(path, EngineOptions(cache_dir=str(tmp_path / "compiled")))
        except BaseException as e:  # noqa: BLE001 - reported by the test below
            errors.append(e)

    threads = [threading.Thread(target=load, args=(m,)) for m in models]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
        assert not t.is_alive(), "a model load did not finish in 120 s"
    assert not errors, errors
    assert locale.setlocale(locale.LC_ALL) == before, "concurrent cached compiles changed the C locale"
    assert locale.getpreferredencoding(False).lower() == "utf-8"  # "UTF-8", or "utf-8" in UTF-8 mode
