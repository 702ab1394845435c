"""The layout's import rules: pipeline/ imports no calculator, vision or engine library, and the
built-in library imports with no engine installed (a missing one is an error naming the extra)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENGINES = ["onnxruntime", "openvino", "ncnn", "mediapipe", "tensorrt", "tflite2onnx", "ai_edge_litert"]
VISION = ["cv2", "av", "calculators", "apps", "ray"] + ENGINES


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
            "registry.load_builtins()  # every module of every family\n"
            "assert registry.find('Inference') and registry.find('MediaPipeFaceDetector')\n"
            "print('ok')")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


def test_ray_is_imported_only_by_a_ray_run():
    r = run("import sys\n"
            "import calculators, apps.cluster, apps.cluster.cli\n"
            "from apps import cli\n"
            "sys.argv = ['vpipe', 'run', '--help']\n"
            "try:\n"
            "    cli.main()\n"
            "except SystemExit:\n"
            "    pass\n"
            "print('ray' in sys.modules)")
    assert r.returncode == 0, r.stderr
    assert "--inputs" in r.stdout and "--ray" in r.stdout
    assert r.stdout.strip().splitlines()[-1] == "False", "vpipe run --help or import calculators imported ray"


def test_the_catalog_imports_no_calculator_vision_or_engine_library():
    # `vpipe models list` needs the catalog only: no calculator family, OpenCV, PyAV or engine.
    r = run("import sys, models.catalog\n"
            "models.catalog.entries()\n"
            f"bad = sorted({{m.split('.')[0] for m in sys.modules}} & set({VISION!r} + ['numpy', 'pipeline']))\n"
            "print(bad)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]", f"models.catalog imported {r.stdout.strip()}"


# ---------------------------------------------------------------------------------------------
# What each command imports: only what it uses (the registry imports a calculator's module when a
# graph names it; engines when a model is loaded; rich/typer only in the CLI; matplotlib never
# unless a chart is drawn).

ENGINE_MODULES = ["calculators.inference.onnxruntime_engine", "calculators.inference.openvino_engine",
                  "calculators.inference.ncnn_engine", "calculators.inference.tensorrt_engine",
                  "calculators.inference.litert_engine", "calculators.inference.mediapipe_tasks"]


def vpipe_modules(*argv: str, tmp_path: Path) -> set[str]:
    """The modules loaded by ``vpipe ARGV`` in a fresh process (read from ``sys.modules`` at exit)."""
    out = tmp_path / "modules.txt"
    code = ("import atexit, runpy, sys\n"
            f"atexit.register(lambda: open({str(out)!r}, 'w').write('\\n'.join(sorted(sys.modules))))\n"
            f"sys.argv = ['vpipe', *{list(argv)!r}]\n"
            "runpy.run_module('apps.cli', run_name='__main__')\n")
    r = run(code)
    assert r.returncode == 0, f"vpipe {' '.join(argv)} failed: {r.stderr[-2000:]}"
    return set(out.read_text().split())


def tops(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def test_import_calculators_and_pipeline_load_no_opencv_engine_or_calculator_module():
    r = run("import sys, calculators, pipeline\n"
            "from pipeline import registry\n"
            "assert len(registry.names()) >= 40\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('cv2', 'av', 'numpy', 'networkx', 'pydantic',\n"
            "                                                          'typer', 'rich', 'matplotlib')\n"
            "             or m.split('.')[0] in " + repr(ENGINES) + " or m.count('.') >= 2 and m.startswith('calculators.')))")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]", f"import calculators, pipeline loaded {r.stdout.strip()}"


def test_loading_a_graph_in_python_imports_no_cli_library_and_only_its_calculators():
    r = run("import sys\n"
            "from pipeline import Graph\n"
            "Graph.from_yaml('face_detection')\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('typer', 'rich', 'matplotlib', 'apps', 'mediapipe')\n"
            "             or m.startswith(('calculators.landmarks.landmarks', 'calculators.inference.mediapipe_tasks'))))\n"
            "print('calculators.inference.calculator' in sys.modules)")
    assert r.returncode == 0, r.stderr
    bad, named = r.stdout.strip().splitlines()
    assert bad == "[]", f"Graph.from_yaml('face_detection') imported {bad}"
    assert named == "True"


def test_vpipe_help_and_models_list_load_no_framework_vision_or_engine(tmp_path):
    for argv in (["--help"], ["models", "list"]):
        loaded = vpipe_modules(*argv, tmp_path=tmp_path)
        bad = tops(loaded) & {"cv2", "av", "numpy", "networkx", "calculators", "matplotlib", *ENGINES}
        assert not bad, f"vpipe {' '.join(argv)} imported {sorted(bad)}"
        assert "pipeline.graph" not in loaded, f"vpipe {' '.join(argv)} imported the scheduler (pipeline.graph)"
        assert {"typer", "rich"} <= tops(loaded)  # the CLI's own libraries: the check above is not vacuous
    assert "models.catalog" in loaded


def test_validate_imports_the_named_calculators_and_no_engine(tmp_path):
    loaded = vpipe_modules("validate", "face_detection", tmp_path=tmp_path)
    assert {"calculators.sources.media", "calculators.inference.calculator", "calculators.image.image_to_tensor",
            "calculators.sinks.files"} <= loaded
    bad = [m for m in loaded if m.split(".")[0] in (*ENGINES, "matplotlib", "ray", "networkx")
           or m in ENGINE_MODULES or m.startswith(("calculators.landmarks.landmarks", "calculators.postprocess.segmentation"))]
    assert not bad, f"vpipe validate face_detection imported {sorted(bad)}"


def test_a_face_detection_run_imports_its_calculators_and_one_engine(tmp_path):
    from tests.assets import resolve_or_skip

    resolve_or_skip("sample:carphone")
    resolve_or_skip("zoo:blazeface-short")
    out = tmp_path / "d.jsonl"
    loaded = vpipe_modules("run", "face_detection", "--set", f"detections={out}", "-q", tmp_path=tmp_path)
    assert out.read_text().count("\n") > 100, "the run wrote no detections"
    engines = sorted(m for m in ENGINE_MODULES if m in loaded)
    assert len(engines) == 1 and engines[0] != "calculators.inference.mediapipe_tasks", \
        f"engine auto must load one engine wrapper, got {engines}"
    assert {"av", "cv2"} <= tops(loaded)  # the source decodes with PyAV, ImageToTensor resamples with OpenCV
    unused = [m for m in loaded if m.startswith(("calculators.landmarks.landmarks", "calculators.landmarks.rects",
                                                  "calculators.landmarks.tracking", "calculators.postprocess.segmentation",
                                                  "calculators.sources.synthetic", "calculators.image.crop",
                                                  "calculators.image.color_convert", "calculators.flow.basic"))]
    assert not unused, f"the run imported calculator modules its graph does not name: {sorted(unused)}"
    library = {"onnxruntime_engine": "onnxruntime", "openvino_engine": "openvino", "ncnn_engine": "ncnn",
               "tensorrt_engine": "tensorrt", "litert_engine": "ai_edge_litert"}[engines[0].rsplit(".", 1)[1]]
    others = tops(loaded) & ({"mediapipe", "matplotlib", "ray", "tflite2onnx", "ai_edge_litert", "onnxruntime", "openvino",
                              "ncnn", "tensorrt"} - {library})
    assert library in tops(loaded) and not others, f"the run imported libraries it does not use: {sorted(others)}"
    # Start-up (issue 15): what a run does not need is not imported (networkx only names a cycle in
    # a broken graph; OpenVINO's conversion tools only convert; an HTTP server or client only serves
    # a preview or downloads a model; the batch and stream machinery, the other commands, and with
    # -q the progress bar, are not this command's).
    not_needed = sorted(m for m in loaded if tops({m}) == {"networkx"} or m.startswith((
        "openvino.tools", "apps.cluster.batch", "apps.cluster.live", "rich.progress", "apps.gen_reference",
        "http.server", "http.client", "urllib.request"))
        or (m.startswith("apps.cmd_") and m != "apps.cmd_run"))
    assert not not_needed, f"vpipe run face_detection -q imported what it does not use: {not_needed}"
