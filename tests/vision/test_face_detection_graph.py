"""The ready graphs on the real carphone video with the real models.

Accuracy reference: MediaPipe Tasks' FaceDetector on the same model file and the same decoded
frames. Tasks truncates boxes to whole pixels (DetectionTransformationCalculator casts xmin and
width to int), which at 176x144 alone costs up to ~0.1 IoU, hence the thresholds.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.vision.conftest import iou

pytestmark = pytest.mark.timeout(180)


def _run(name, side, stream):
    import calculators  # noqa: F401
    from apps.demo import build_graph

    graph = build_graph(name)
    got = []
    graph.observe(stream, lambda p: got.append((p.timestamp, p.value)))
    graph.run(side)
    return got


@pytest.fixture(scope="module")
def tasks_faces(blazeface_path, carphone_frames):
    """{timestamp: [(x0, y0, x1, y1), ...]} from MediaPipe Tasks' FaceDetector."""
    mp = pytest.importorskip("mediapipe", reason="MediaPipe Tasks is the accuracy reference: pip install vpipe[mediapipe]")
    from mediapipe.tasks.python import BaseOptions, vision

    detector = vision.FaceDetector.create_from_options(vision.FaceDetectorOptions(
        base_options=BaseOptions(model_asset_path=str(blazeface_path)), min_detection_confidence=0.5,
        min_suppression_threshold=0.3))
    try:
        out = {}
        for t, rgb in carphone_frames:
            res = detector.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb)))
            out[t] = [(d.bounding_box.origin_x, d.bounding_box.origin_y,
                       d.bounding_box.origin_x + d.bounding_box.width,
                       d.bounding_box.origin_y + d.bounding_box.height) for d in res.detections]
    finally:
        detector.close()
    return out


def test_face_detection_agrees_with_mediapipe_tasks(carphone_path, tasks_faces):
    got = dict(_run("face_detection", {"source": str(carphone_path), "engine": "auto"}, "faces"))
    assert sorted(got) == sorted(tasks_faces), "the graph must emit detections at every frame's timestamp"
    ious = []
    for t, ref in tasks_faces.items():
        det = got[t]
        assert len(det) == len(ref), f"frame at {t} us: graph found {len(det)} faces, Tasks {len(ref)}"
        used = set()
        for box in ref:
            scores = [(iou(box, d), i) for i, d in enumerate(det.xyxy) if i not in used]
            best, i = max(scores)
            used.add(i)
            ious.append(best)
    ious = np.array(ious)
    assert len(ious) >= 100, f"carphone should show a face on nearly every frame, got {len(ious)} boxes"
    assert ious.min() >= 0.85, f"worst IoU {ious.min():.3f} < 0.85 (frame {int(ious.argmin())})"
    share = float((ious >= 0.9).mean())
    print(f"\nface_detection vs Tasks on {len(ious)} boxes: worst IoU {ious.min():.3f}, mean {ious.mean():.3f}, "
          f">= 0.9 on {share:.1%} of frames")
    assert share >= 0.95, f"IoU >= 0.9 on {share:.1%} of frames, expected >= 95% (mean {ious.mean():.3f})"


def test_face_detection_writes_jsonl_and_video(carphone_path, tmp_path, carphone_frames):
    import av

    out, jsonl = tmp_path / "annotated.mp4", tmp_path / "faces.jsonl"
    _run("face_detection", {"source": str(carphone_path), "output": str(out), "detections": str(jsonl)}, "faces")
    lines = [json.loads(s) for s in jsonl.read_text().splitlines()]
    assert [r["timestamp_us"] for r in lines] == [t for t, _ in carphone_frames]
    h, w = carphone_frames[0][1].shape[:2]
    with_face = 0
    for r in lines:
        assert set(r) == {"timestamp_us", "detections"}
        for d in r["detections"]:
            assert set(d) >= {"box", "score", "label", "keypoints"}
            x0, y0, x1, y1 = d["box"]
            assert -w * 0.1 < x0 < x1 < w * 1.1 and -h * 0.1 < y0 < y1 < h * 1.1, d["box"]
            assert 0.5 <= d["score"] <= 1.0 and d["label"] == "face"
            assert len(d["keypoints"]) == 6 and all(len(k) == 2 for k in d["keypoints"])
        with_face += bool(r["detections"])
    assert with_face >= 0.95 * len(lines)
    with av.open(str(out)) as c:
        frames = sum(1 for _ in c.decode(video=0))
        assert (c.streams.video[0].width, c.streams.video[0].height) == (w, h)
    assert frames == len(carphone_frames)


def test_centerface_finds_the_face_on_95_percent_of_frames(carphone_path, centerface_path, carphone_frames):
    got = _run("face_detection_centerface", {"source": str(carphone_path), "model": str(centerface_path)}, "faces")
    assert len(got) == len(carphone_frames)
    found = sum(1 for _, d in got if len(d) >= 1)
    assert found >= 0.95 * len(got), f"CenterFace found a face on {found}/{len(got)} frames"
    # the face is where BlazeFace puts it (the man's head, left of centre, upper half)
    centres = np.array([((d.xyxy[0, 0] + d.xyxy[0, 2]) / 2, (d.xyxy[0, 1] + d.xyxy[0, 3]) / 2) for _, d in got if len(d)])
    assert 40 < np.median(centres[:, 0]) < 120 and 40 < np.median(centres[:, 1]) < 100, np.median(centres, 0)


def test_selfie_segmentation_blurs_only_the_background(carphone_path, carphone_frames):
    pytest.importorskip("mediapipe", reason="selfie segmentation runs on MediaPipe Tasks: pip install vpipe[mediapipe]")
    import calculators  # noqa: F401
    from apps.demo import build_graph

    side = {"source": str(carphone_path)}
    graph = build_graph("selfie_segmentation")
    masks, blurred = {}, {}
    graph.observe("mask", lambda p: masks.__setitem__(p.timestamp, p.value))
    graph.observe("blurred", lambda p: blurred.__setitem__(p.timestamp, p.value))
    graph.run(side)
    assert len(blurred) == len(carphone_frames)
    frames = dict(carphone_frames)
    t = sorted(blurred)[30]
    m, src, out = masks[t].data, frames[t].astype(np.int16), blurred[t].data.astype(np.int16)
    assert m.shape == src.shape[:2]
    person, background = m > 0.95, m < 0.05
    assert person.mean() > 0.1 and background.mean() > 0.1, "carphone has both a person and a background"
    assert np.abs(out - src)[person].mean() < 2.0, "the person must stay sharp"
    assert np.abs(out - src)[background].mean() > 3.0, "the background must be blurred"
