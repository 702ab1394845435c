"""Fixtures for the landmark graph tests: real videos as decoded frames, MediaPipe's own pipeline
(mediapipe 0.10.21's legacy solutions, in their own environment) as the reference, and a runner
for the ready graphs that collects each frame's landmarks and the nodes' stats."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from models.catalog import CatalogError, resolve

HERE = Path(__file__).parent
REPO = HERE.parent.parent
MP_ENV = Path(os.environ.get("VPIPE_MP_ENV", "/work/envs/mp01021"))


def mp_python() -> Path:
    """The mediapipe 0.10.21 interpreter, or a skip saying how to make it."""
    py = MP_ENV / "bin" / "python"
    if not py.exists():
        pytest.skip(f"no mediapipe 0.10.21 environment at {MP_ENV} (scripts/setup.sh makes it; by hand: "
                    "bash tests/bench/make_mp_env.sh; or set VPIPE_MP_ENV)")
    return py


@dataclass
class Clip:
    path: Path            # the video file the graphs decode
    frames: Path          # .npy of its RGB frames, as PyAV decodes them (what MediaPipe is fed)
    timestamps: Path      # .npy of the frames' presentation times in microseconds
    size: tuple[int, int]
    count: int


def decode_clip(path: Path, out: Path, max_frames: int | None = None) -> Clip:
    import av

    frames, stamps = [], []
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        for f in c.decode(video=0):
            frames.append(f.to_ndarray(format="rgb24"))
            stamps.append(int(round(f.pts * s.time_base * 1_000_000)))
            if max_frames and len(frames) >= max_frames:
                break
    arr = np.stack(frames)
    np.save(out / f"{path.stem}.npy", arr)
    np.save(out / f"{path.stem}_ts.npy", np.asarray(stamps, np.int64))
    return Clip(path, out / f"{path.stem}.npy", out / f"{path.stem}_ts.npy", (arr.shape[2], arr.shape[1]), len(arr))


def _sample(name: str) -> Path:
    try:
        return resolve(f"sample:{name}")
    except CatalogError as e:
        pytest.skip(f"sample {name} is not available: {e}")


@pytest.fixture(scope="session")
def clips_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("landmark_clips")


@pytest.fixture(scope="session")
def carphone_clip(clips_dir) -> Clip:
    return decode_clip(_sample("carphone"), clips_dir)


def make_720p(src: Path, dst: Path, frames: int) -> Path:
    """The first ``frames`` frames of ``src`` scaled to 1280x720 and encoded (H.264, near lossless)."""
    import av
    import cv2

    with av.open(str(src)) as c, av.open(str(dst), "w") as out:
        s = c.streams.video[0]
        o = out.add_stream("libx264", rate=s.average_rate or 30)
        o.width, o.height, o.pix_fmt = 1280, 720, "yuv420p"
        o.options = {"crf": "12", "preset": "veryfast"}
        for i, f in enumerate(c.decode(video=0)):
            if i >= frames:
                break
            big = cv2.resize(f.to_ndarray(format="rgb24"), (1280, 720), interpolation=cv2.INTER_CUBIC)
            for p in o.encode(av.VideoFrame.from_ndarray(big, format="rgb24")):
                out.mux(p)
        for p in o.encode():
            out.mux(p)
    return dst


@pytest.fixture(scope="session")
def carphone_720p_clip(clips_dir) -> Clip:
    """A 1280x720 version of carphone (its first 45 frames), made here."""
    return decode_clip(make_720p(_sample("carphone"), clips_dir / "carphone_720p.mp4", 45), clips_dir)


@pytest.fixture(scope="session")
def bigbuckbunny_clip(clips_dir) -> Clip:
    return decode_clip(_sample("bigbuckbunny"), clips_dir)


_reference_cache: dict = {}


def reference(solution: str, clip: Clip, options: dict | None = None, extra: list[str] | None = None) -> dict:
    """MediaPipe's own result on the clip's frames (timestamps fed as the clip's), cached per session."""
    key = (solution, str(clip.frames), json.dumps(options or {}, sort_keys=True), tuple(extra or ()))
    if key not in _reference_cache:
        out = clip.frames.with_name(f"ref_{solution}_{abs(hash(key))}.json")
        cmd = [str(mp_python()), str(HERE / "mp_reference.py"), solution, str(clip.frames), str(out),
               "--timestamps", str(clip.timestamps), "--options", json.dumps(options or {})] + (extra or [])
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"MediaPipe reference failed:\n{proc.stderr[-3000:]}"
        _reference_cache[key] = json.loads(out.read_text())
    return _reference_cache[key]


@dataclass
class GraphRun:
    frames: list            # [(timestamp, Landmarks)] per frame, in order
    stats: dict
    side: dict              # the run's side packets (given, defaulted and made by nodes)


def run_graph(name: str, stream: str, side_packets: dict, timeout: float = 300.0) -> GraphRun:
    from pipeline import Graph

    g = Graph.from_yaml(str(REPO / "graphs" / f"{name}.yaml"))
    got: list = []
    g.observe(stream, lambda p: got.append((p.timestamp, p.value)))
    g.start(side_packets)
    g.wait(timeout)
    return GraphRun(got, g.stats(), dict(g._side_values))


def compare(ref_frames: list, ours: list, size: tuple[int, int]) -> dict:
    """Agreement of our landmarks with MediaPipe's: the share of frames where both see the same
    number of objects, and per matched object the mean point distance over the object's box size
    (the larger side of the extent of MediaPipe's points), objects paired by nearest centre."""
    w, h = size
    same, errs = 0, []
    for r, (_, lm) in zip(ref_frames, ours):
        same += len(r) == len(lm)
        used = set()
        for obj in r:
            a = np.asarray(obj["landmarks"])[:, :2] * (w, h)
            best = None
            for j in range(len(lm)):
                if j in used:
                    continue
                d = np.linalg.norm(a.mean(0) - lm.points[j, :, :2].mean(0))
                if best is None or d < best[0]:
                    best = (d, j)
            if best is None:
                continue
            used.add(best[1])
            b = lm.points[best[1], :, :2]
            box = max(np.ptp(a[:, 0]), np.ptp(a[:, 1]))
            errs.append(float(np.linalg.norm(a - b, axis=1).mean() / box))
    errs_a = np.asarray(errs) if errs else np.asarray([np.inf])
    return {"frames": len(ref_frames), "same_presence": same / max(1, len(ref_frames)),
            "ref_present": sum(1 for r in ref_frames if r), "ours_present": sum(1 for _, lm in ours if len(lm)),
            "mean": float(errs_a.mean()), "p95": float(np.percentile(errs_a, 95)), "max": float(errs_a.max()),
            "matched": len(errs)}
