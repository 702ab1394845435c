"""Options of the MediaPipe Tasks calculators, each shown by what it changes on real frames:
min_score (every calculator), min_suppression_threshold, num_poses, category and device."""

from __future__ import annotations

import numpy as np
import pytest

import calculators  # noqa: F401  (registers the built-ins)
from calculators.types import Image
from models.catalog import resolve
from pipeline import GraphRunError
from pipeline.testing import run_calculator

from .conftest import needs_mp

pytestmark = needs_mp


@pytest.fixture(scope="module")
def faces():
    """Frames 0, 30, 60 of carphone (one face each, scores 0.92-0.97) at timestamps 0, 1, 2."""
    import av

    frames = []
    with av.open(str(resolve("sample:carphone"))) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i % 30 == 0:
                frames.append(Image(f.to_ndarray(format="rgb24")))
            if len(frames) == 3:
                break
    return frames


def _found(calculator, images, **options) -> list:
    out = run_calculator(calculator, inputs={"IMAGE": list(enumerate(images))}, options=options)
    (values,) = out.values()
    return [v for _, v in values]


def test_face_detector_min_score(faces):
    default = _found("MediaPipeFaceDetector", faces, model="zoo:blazeface-short")
    strict = _found("MediaPipeFaceDetector", faces, model="zoo:blazeface-short", min_score=0.95)
    assert [len(d) for d in default] == [1, 1, 1]
    assert 0 < sum(len(d) for d in strict) < 3
    assert all((d.scores >= 0.95).all() for d in strict)


def test_face_detector_min_suppression_threshold(faces):
    # the detector's overlapping candidates of one face: merged at 0.3, all kept when only
    # near-identical boxes count as the same face
    merged = _found("MediaPipeFaceDetector", faces[:1], model="zoo:blazeface-short")
    kept = _found("MediaPipeFaceDetector", faces[:1], model="zoo:blazeface-short", min_suppression_threshold=0.99)
    assert len(merged[0]) == 1 and len(kept[0]) > 3, (len(merged[0]), len(kept[0]))


@pytest.fixture(scope="module")
def two_people(faces):
    return Image(np.concatenate([faces[0].data, faces[0].data], axis=1))


def test_pose_landmarker_num_poses_and_min_score(two_people):
    def poses(**options):
        return len(_found("MediaPipePoseLandmarker", [two_people], model="zoo:pose-landmarker", **options)[0])

    assert poses() == 1
    assert poses(num_poses=2) == 2
    assert poses(num_poses=2, min_score=0.99) == 0


def test_hand_landmarker_min_score():
    import av

    frames = []
    with av.open(str(resolve("sample:bigbuckbunny"))) as c:  # the bunny's paws, frames 40-112
        for i, f in enumerate(c.decode(video=0)):
            if 40 <= i <= 112 and i % 8 == 0:
                frames.append(Image(f.to_ndarray(format="rgb24")))
            if i > 112:
                break
    default = sum(len(d) for d in _found("MediaPipeHandLandmarker", frames, model="zoo:hand-landmarker"))
    low = sum(len(d) for d in _found("MediaPipeHandLandmarker", frames, model="zoo:hand-landmarker", min_score=0.1))
    high = sum(len(d) for d in _found("MediaPipeHandLandmarker", frames, model="zoo:hand-landmarker", min_score=0.99))
    assert high < default <= low and default > 0, (high, default, low)


def test_image_segmenter_category(faces):
    (mask,) = _found("MediaPipeImageSegmenter", faces[:1], model="zoo:selfie-segmentation", category=0)
    (default,) = _found("MediaPipeImageSegmenter", faces[:1], model="zoo:selfie-segmentation")
    assert np.array_equal(mask.data, default.data)  # the selfie model has one mask: category 0
    with pytest.raises(GraphRunError, match=r"category 1 asked, the model has 1 mask\(s\)"):
        _found("MediaPipeImageSegmenter", faces[:1], model="zoo:selfie-segmentation", category=1)


def _gpu_delegate_works() -> bool:
    from mediapipe.tasks.python import BaseOptions, vision

    try:
        vision.FaceDetector.create_from_options(vision.FaceDetectorOptions(base_options=BaseOptions(
            model_asset_path=str(resolve("zoo:blazeface-short")), delegate=BaseOptions.Delegate.GPU))).close()
        return True
    except Exception:  # noqa: BLE001 - MediaPipe says no GPU with RuntimeError/ValueError
        return False


@pytest.mark.parametrize("calculator, model", [
    ("MediaPipeFaceDetector", "zoo:blazeface-short"), ("MediaPipeImageSegmenter", "zoo:selfie-segmentation"),
    ("MediaPipeHandLandmarker", "zoo:hand-landmarker"), ("MediaPipePoseLandmarker", "zoo:pose-landmarker"),
])
def test_device_gpu_reaches_the_delegate(faces, calculator, model):
    """device: gpu asks MediaPipe for its GPU delegate: where MediaPipe has none (no EGL here),
    the node fails in open saying so; device: cpu runs."""
    if _gpu_delegate_works():
        pytest.skip("MediaPipe's GPU delegate works on this machine: nothing to refuse")
    assert len(_found(calculator, faces[:1], model=model, device="cpu")) == 1
    with pytest.raises(GraphRunError, match="could not use the GPU delegate"):
        _found(calculator, faces[:1], model=model, device="gpu")
