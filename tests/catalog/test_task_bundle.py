"""The mediapipe-task-bundle transform: real Tasks bundles from the catalog's MediaPipe models, with
the right metadata per member, deterministic, atomic, and clear errors for bad definitions."""

from __future__ import annotations

import hashlib
import importlib.util
import textwrap
import zipfile

import pytest

from models import catalog
from models.catalog import CatalogError, Entry, cached_path, entry, pull, resolve, sha256_file

needs_mp = pytest.mark.skipif(importlib.util.find_spec("mediapipe") is None,
                              reason="mediapipe not installed (pip install vpipe[mediapipe])")

# What MediaPipe's legacy CPU graphs feed each model (ImageToTensorCalculator output_tensor_float_range).
EXPECTED = {
    "hand-landmarker": {"hand_detector.tflite": ("palm-detection-full", 0.0, 255.0),
                        "hand_landmarks_detector.tflite": ("hand-landmark-full", 0.0, 255.0)},
    "pose-landmarker": {"pose_detector.tflite": ("pose-detection", 127.5, 127.5),
                        "pose_landmarks_detector.tflite": ("pose-landmark-full", 0.0, 255.0)},
}


def _metadata(model: bytes):
    """(ModelT, ModelMetadataT) of a TFLite flatbuffer holding Tasks metadata."""
    from mediapipe.tasks.metadata import metadata_schema_py_generated as meta
    from mediapipe.tasks.metadata import schema_py_generated as tfl

    m = tfl.ModelT.InitFromObj(tfl.Model.GetRootAsModel(model, 0))
    found = [x for x in m.metadata or [] if x.name == b"TFLITE_METADATA"]
    assert len(found) == 1, "one TFLITE_METADATA entry"
    raw = bytes(m.buffers[found[0].buffer].data)
    assert raw[4:8] == b"M001"
    return m, meta.ModelMetadataT.InitFromObj(meta.ModelMetadata.GetRootAsModelMetadata(raw, 0))


@needs_mp
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bundle_members_carry_tasks_metadata(name):
    from mediapipe.tasks.metadata import metadata_schema_py_generated as meta
    from mediapipe.tasks.metadata import schema_py_generated as tfl

    path = resolve(f"zoo:{name}")
    assert path.name == entry(name).filename and path.suffix == ".task"
    with zipfile.ZipFile(path) as z:
        assert z.namelist() == list(EXPECTED[name])
        for member, (source, mean, std) in EXPECTED[name].items():
            info = z.getinfo(member)
            assert info.compress_type == zipfile.ZIP_STORED
            data_offset = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
            assert data_offset % 16 == 0, f"{member} starts at {data_offset}: Tasks maps members in place"
            m, md = _metadata(z.read(member))
            sub = md.subgraphMetadata[0]
            image = sub.inputTensorMetadata[0]
            assert image.content.contentPropertiesType == meta.ContentProperties.ImageProperties
            assert image.content.contentProperties.colorSpace == meta.ColorSpaceType.RGB
            norm = image.processUnits[0].options
            assert (list(norm.mean), list(norm.std)) == ([mean], [std]), f"{name}/{member}"
            lo, hi = entry(source).input["range"]
            assert (list(image.stats.min), list(image.stats.max)) == ([lo], [hi])
            outputs = [m.subgraphs[0].tensors[i].name.decode() for i in m.subgraphs[0].outputs]
            assert [t.name.decode() for t in sub.outputTensorMetadata] == outputs
            # The model itself is untouched: same tensors, same weights as the catalog's file;
            # only the metadata buffer is new (or replaced, where MediaPipe shipped older metadata).
            raw = resolve(f"zoo:{source}").read_bytes()
            orig = tfl.ModelT.InitFromObj(tfl.Model.GetRootAsModel(raw, 0))
            had = [x.buffer for x in orig.metadata or [] if x.name == b"TFLITE_METADATA"]
            assert len(m.buffers) == len(orig.buffers) + (0 if had else 1)
            for i, (a, b) in enumerate(zip(orig.buffers, m.buffers)):
                if i not in had:
                    assert (a.data is None and b.data is None) or bytes(a.data) == bytes(b.data)
            assert [t.name for t in orig.subgraphs[0].tensors] == [t.name for t in m.subgraphs[0].tensors]
            if had:  # Google's own metadata, where the model has some, agrees on the normalisation
                _, theirs = _metadata(raw)
                norm0 = theirs.subgraphMetadata[0].inputTensorMetadata[0].processUnits[0].options
                assert set(norm0.mean) == {mean} and set(norm0.std) == {std}, f"{source}: {norm0.mean}/{norm0.std}"


@needs_mp
def test_raw_models_are_refused_and_bundles_load(tmp_path):
    """Why the transform exists: Tasks refuses the same models zipped without metadata."""
    from mediapipe.tasks.python import BaseOptions, vision

    raw = tmp_path / "raw.task"
    with zipfile.ZipFile(raw, "w") as z:
        for member, (source, _, _) in EXPECTED["pose-landmarker"].items():
            z.write(resolve(f"zoo:{source}"), member)
    for path, ok in ((raw, False), (resolve("zoo:pose-landmarker"), True)):
        options = vision.PoseLandmarkerOptions(base_options=BaseOptions(model_asset_path=str(path)))
        if ok:
            vision.PoseLandmarker.create_from_options(options).close()
        else:
            with pytest.raises(Exception, match="NormalizationOptions"):
                vision.PoseLandmarker.create_from_options(options)


@needs_mp
def test_bundle_is_deterministic_and_stamped(tmp_path):
    a = pull("hand-landmarker", cache=tmp_path / "a")
    b = pull("hand-landmarker", cache=tmp_path / "b")
    assert a.read_bytes() == b.read_bytes(), "the same sources give the same bundle bytes"
    assert a.with_name(a.name + ".sha256").read_text().strip() == sha256_file(a)
    e = entry("hand-landmarker")
    assert e.sha256 is None and e.derived.sources() == ["palm-detection-full", "hand-landmark-full"]
    key = a.parent.name
    assert key.endswith(f"-mediapipe-task-bundle-v{catalog._TRANSFORM_VERSIONS['mediapipe-task-bundle']}") and a.parent == cached_path(e, tmp_path / "a").parent
    # Nothing but the sources, the bundle and its stamp: no temporary file is left behind.
    names = sorted(p.name for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert names == sorted(["hand_landmarker.task", "hand_landmarker.task.sha256",
                            "palm_detection_full.tflite", "hand_landmark_full.tflite"])


@needs_mp
def test_corrupt_bundle_is_rebuilt(tmp_path):
    path = pull("pose-landmarker", cache=tmp_path)
    good = path.read_bytes()
    path.write_bytes(good[:-10] + b"0123456789")
    assert not catalog.is_cached("pose-landmarker", tmp_path)
    assert pull("pose-landmarker", cache=tmp_path).read_bytes() == good


def test_normalization_maps_pixels_onto_the_range():
    pytest.importorskip("mediapipe")
    from models.task_bundle import TaskBundleError, normalization

    assert normalization((0, 1)) == (0.0, 255.0)
    assert normalization((-1, 1)) == (127.5, 127.5)
    assert normalization((0, 255)) == (0.0, 1.0)
    with pytest.raises(TaskBundleError, match=r"value range \[1, 1\] is empty"):
        normalization((1, 1))


@needs_mp
def test_not_a_tflite_model_is_named(tmp_path):
    from models.task_bundle import TaskBundleError, add_tasks_metadata, write_task_bundle

    with pytest.raises(TaskBundleError, match=r"junk: not a TFLite flatbuffer"):
        add_tasks_metadata(b"\0" * 64, name="x", value_range=(0, 1), where="junk")
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"PK\3\4 not a model")
    with pytest.raises(TaskBundleError, match=r"bundle member hand_detector\.tflite \(.*bad\.tflite\): not a TFLite"):
        write_task_bundle([("hand_detector.tflite", bad, (0, 1))], tmp_path / "x.task")


def test_derivation_schema_rejects_mixed_forms():
    base = dict(name="x", kind="model", task="t", format="task", filename="x.task", licence="none")
    with pytest.raises(ValueError, match="mediapipe-task-bundle takes `members`"):
        Entry(**base, derived={"transform": "mediapipe-task-bundle", "from": "pose-detection"})
    with pytest.raises(ValueError, match="onnx-dynamic-shape takes one source entry in `from`"):
        Entry(**base, derived={"transform": "onnx-dynamic-shape",
                               "members": {"a.tflite": {"from": "pose-detection", "range": [0, 1]}}})


@pytest.fixture
def custom_catalog(tmp_path, monkeypatch):
    """Point the catalog at a YAML written by the test (restored afterwards)."""
    def use(text: str):
        path = tmp_path / "catalog.yaml"
        path.write_text(textwrap.dedent(text))
        monkeypatch.setattr(catalog, "CATALOG_FILE", path)
        catalog._catalog.cache_clear()
        return path

    yield use
    catalog._catalog.cache_clear()


def _bundle_entry(source: str) -> str:
    """A bundle entry 'bundle' with one member, hand_detector.tflite made from ``source`` ([0, 1])."""
    return f"""
      bundle:
        kind: model
        task: t
        format: task
        filename: b.task
        licence: none
        derived:
          transform: mediapipe-task-bundle
          members: {{hand_detector.tflite: {{from: {source}, range: [0, 1]}}}}
    """


def _model_entry(name: str, path, data: bytes, value_range="[0, 1]") -> str:
    return f"""
      {name}:
        kind: model
        task: t
        format: tflite
        filename: {name}.tflite
        licence: none
        sha256: {hashlib.sha256(data).hexdigest()}
        size: {len(data)}
        input: {{range: {value_range}}}
        sources: [{{path: {path}}}]
    """


def test_member_range_must_match_the_source_entry(tmp_path, custom_catalog):
    src = tmp_path / "m.tflite"
    src.write_bytes(b"x" * 16)
    custom_catalog("entries:" + _model_entry("det", src, b"x" * 16, "[-1, 1]") + _bundle_entry("det"))
    with pytest.raises(CatalogError, match=r"bundle member hand_detector.tflite gives range \[0.0, 1.0\] but 'det' records \[-1, 1\]"):
        catalog.entries()


def test_unknown_member_source_is_named(custom_catalog):
    custom_catalog("entries:" + _bundle_entry("no-such-model"))
    with pytest.raises(CatalogError, match=r"entry 'bundle' derives from unknown 'no-such-model'"):
        catalog.entries()


@needs_mp
def test_failed_derive_names_the_member_and_caches_nothing(tmp_path, custom_catalog):
    junk = b"definitely not a tflite model"
    src = tmp_path / "junk.tflite"
    src.write_bytes(junk)
    custom_catalog("entries:" + _model_entry("det", src, junk) + _bundle_entry("det"))
    cache = tmp_path / "cache"
    with pytest.raises(CatalogError, match=r"catalog entry 'bundle': bundle member hand_detector\.tflite \(entry 'det', .*det\.tflite\): not a TFLite flatbuffer"):
        pull("bundle", cache=cache)
    left = sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*") if p.is_file())
    assert left == ["models/det/det.tflite"], "only the verified source is cached, no bundle, no temp file"
