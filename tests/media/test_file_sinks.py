"""ImageWriter and JsonlWriter on real files."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from calculators.sinks.files import to_jsonable
from calculators.sources.synthetic import synthetic_frame
from calculators.types import Detections, Image
from pipeline import GraphRunError

from .conftest import graph, wait_for


def test_image_writer_writes_each_frame_by_pattern(tmp_path):
    pattern = str(tmp_path / "out" / "f_{index:03d}_{timestamp}.png")
    g = graph({"calculator": "SyntheticSource", "outputs": {"FRAMES": "f"},
               "options": {"size": [64, 48], "fps": 10, "num_frames": 3}},
              {"calculator": "ImageWriter", "inputs": {"IMAGE": "f"}, "options": {"pattern": pattern}})
    g.run()
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["f_000_0.png", "f_001_100000.png", "f_002_200000.png"]
    for i, name in enumerate(names):  # PNG is lossless: the exact pattern comes back (BGR on disk)
        np.testing.assert_array_equal(cv2.imread(str(tmp_path / "out" / name)), synthetic_frame(i, 64, 48))


@pytest.mark.parametrize("pattern, message", [
    ("frame_{nope}.png", r"bad pattern .*fields: index, timestamp, name, stem"),
    ("frame_{index}.xyz", r"OpenCV cannot write images of type '.xyz'"),
])
def test_image_writer_bad_patterns(tmp_path, pattern, message):
    g = graph({"calculator": "SyntheticSource", "outputs": {"FRAMES": "f"}, "options": {"num_frames": 1}},
              {"calculator": "ImageWriter", "inputs": {"IMAGE": "f"}, "options": {"pattern": str(tmp_path / pattern)}})
    with pytest.raises(GraphRunError, match=message):
        g.run()


def test_image_writer_pattern_without_field_is_one_image(tmp_path):
    one = tmp_path / "one.png"
    g = graph({"calculator": "SyntheticSource", "outputs": {"FRAMES": "f"}, "options": {"size": [64, 48], "num_frames": 1}},
              {"calculator": "ImageWriter", "inputs": {"IMAGE": "f"}, "options": {"pattern": str(one)}})
    g.run()
    np.testing.assert_array_equal(cv2.imread(str(one)), synthetic_frame(0, 64, 48))
    g = graph({"calculator": "SyntheticSource", "outputs": {"FRAMES": "f"},
               "options": {"size": [64, 48], "fps": 10, "num_frames": 2}},
              {"calculator": "ImageWriter", "inputs": {"IMAGE": "f"}, "options": {"pattern": str(one)}})
    with pytest.raises(GraphRunError, match=r"one.png' holds one image and a second frame arrived at 100000 µs; "
                                            r"write to a folder \(out/\) or a pattern with \{index\} or \{name\}"):
        g.run()


def test_image_writer_names_outputs_after_their_source_images(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, name in enumerate(["IMG_0042.jpg", "beach.png"]):
        cv2.imwrite(str(photos / name), synthetic_frame(i, 64, 48))
    g = graph({"calculator": "ImageSource", "outputs": {"FRAMES": "f", "PATH": "p"}, "options": {"path": str(photos)}},
              {"calculator": "ImageWriter", "inputs": {"IMAGE": "f", "PATH": "p"},
               "options": {"pattern": str(tmp_path / "out" / "{stem}_x" / "{name}")}})
    g.run()
    assert sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*.*")) == [
        "IMG_0042_x/IMG_0042.jpg", "beach_x/beach.png"]
    # A frame without a source file (a video, a synthetic source) is named by its index.
    g = graph({"calculator": "SyntheticSource", "outputs": {"FRAMES": "f"}, "options": {"size": [64, 48], "num_frames": 2}},
              {"calculator": "ImageWriter", "inputs": {"IMAGE": "f"}, "options": {"pattern": str(tmp_path / "v" / "{name}")}})
    g.run()
    assert sorted(p.name for p in (tmp_path / "v").iterdir()) == ["frame_000000.png", "frame_000001.png"]


def test_image_writer_unwritable_folder(tmp_path):
    (tmp_path / "file").write_text("x")
    g = graph({"calculator": "SyntheticSource", "outputs": {"FRAMES": "f"}, "options": {"num_frames": 1}},
              {"calculator": "ImageWriter", "inputs": {"IMAGE": "f"},
               "options": {"pattern": str(tmp_path / "file" / "sub" / "{index}.png")}})
    with pytest.raises(GraphRunError, match=r"cannot create folder '.*file/sub': Not a directory"):
        g.run()


def test_jsonl_writer_one_flushed_line_per_timestamp(tmp_path):
    path = tmp_path / "out.jsonl"
    g = graph({"calculator": "JsonlWriter", "inputs": {"IN": "in"}, "options": {"path": str(path)}}, inputs=["in"])
    det = Detections(np.array([[1, 2, 30, 40.5]]), np.array([0.9]), labels=["face"],
                     keypoints=np.array([[[5, 6], [7, 8]]]))
    g.start()
    g.add_packet("in", det, 0)
    # Flushed per line: the line is on disk while the run is still going.
    wait_for(lambda: path.exists() and path.read_text().endswith("\n"), 10, "the first JSON line on disk")
    assert json.loads(path.read_text()) == {"timestamp_us": 0, "detections": [
        {"box": [1.0, 2.0, 30.0, 40.5], "score": 0.9, "label": "face", "keypoints": [[5.0, 6.0], [7.0, 8.0]]}]}
    g.add_packet("in", Detections.empty(), 33_333)
    g.add_packet("in", {"count": np.int64(3), "scores": np.array([0.5, 0.25], np.float32)}, 66_667)
    g.close_input("in")
    g.wait(10)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[1:] == [{"timestamp_us": 33_333, "detections": []},
                         {"timestamp_us": 66_667, "value": {"count": 3, "scores": [0.5, 0.25]}}]


def test_jsonl_writer_rejects_values_that_are_not_json(tmp_path):
    g = graph({"calculator": "JsonlWriter", "name": "log", "inputs": {"IN": "in"},
               "options": {"path": str(tmp_path / "x.jsonl")}}, inputs=["in"])
    g.start()
    g.add_packet("in", Image(np.zeros((4, 4, 3), np.uint8)), 5)
    g.close_input("in")
    with pytest.raises(GraphRunError, match=r"value at 5 µs cannot be written as JSON: an Image is not JSON-able"):
        g.wait(10)


def test_jsonl_writer_unwritable_path(tmp_path):
    (tmp_path / "file").write_text("x")
    g = graph({"calculator": "JsonlWriter", "inputs": {"IN": "in"},
               "options": {"path": str(tmp_path / "file" / "sub" / "x.jsonl")}}, inputs=["in"])
    with pytest.raises(GraphRunError, match=r"cannot create folder '.*file/sub': Not a directory"):
        g.run()


@pytest.mark.parametrize("calculator, name", [("JsonlWriter", "x.jsonl"), ("VideoWriter", "x.mp4")])
def test_writers_create_missing_folders_unless_make_dirs_is_false(tmp_path, calculator, name):
    target = tmp_path / "new" / "deeper" / name

    def run(make_dirs: bool) -> None:
        g = graph({"calculator": calculator, "inputs": {"IN" if calculator == "JsonlWriter" else "IMAGE": "in"},
                   "options": {"path": str(target), "make_dirs": make_dirs}}, inputs=["in"])
        g.start()
        for i in range(2):
            frame = Image(synthetic_frame(i, 64, 48), "BGR")
            g.add_packet("in", {"frame": i} if calculator == "JsonlWriter" else frame, i * 33_333)
        g.close_input("in")
        g.wait(30)

    with pytest.raises(GraphRunError, match=r"folder '.*new/deeper' does not exist"):
        run(False)
    assert not (tmp_path / "new").exists()
    run(True)
    assert target.stat().st_size > 0


@pytest.mark.parametrize("value, expected", [
    (np.float32(0.5), 0.5), (np.arange(3), [0, 1, 2]), ((1, "a"), [1, "a"]), (float("nan"), None),
    ({1: {"x": np.bool_(True)}}, {"1": {"x": True}}),
])
def test_to_jsonable(value, expected):
    assert to_jsonable(value) == expected
