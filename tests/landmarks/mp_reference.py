"""MediaPipe's own pipeline on frames, as the reference for the landmark graphs (and the benchmark
baseline). Runs under mediapipe==0.10.21 (its legacy ``mp.solutions``), in its own environment
(tests/bench/make_mp_env.sh), never imported by the project:

    /work/envs/mp01021/bin/python tests/landmarks/mp_reference.py face_mesh frames.npy out.json \
        [--timestamps ts.npy] [--options '{"max_num_faces": 1}'] [--decode] [--checksum-frames 0 59]

``frames.npy``: (N, H, W, 3) uint8 RGB. Writes JSON: {"frames": [[object, ...] per frame], "seconds":
wall time of the process() loop, "cpu_s": the process's CPU time (user + sys, every thread) in that
time}; each object is {"landmarks": [[x, y, z], ...] normalised as MediaPipe gives them,
"visibility": [...], "label": handedness label, "label_score": ...}. The solution's models are
loaded before the timed loop (its graph waited on until idle after start-up: MediaPipe opens its
calculators, loading the models, on its own threads, which the first process() call would wait for).
``--decode``: ``frames`` is a video file, decoded in the loop as a MediaPipe user writes it: PyAV
(its default decoder threading) to RGB (``to_ndarray(format="rgb24")``), then ``process()``, frame
after frame; timed from the first decode to the last result; the timestamps are the frames' own
(``--timestamps`` is not read). Also writes "decoder": the decoder's threading as it ran.
``--checksum-frames I ...``: also {"checksums": {I: sha1 of frame I's RGB bytes}}, hashed after the
timed loop (to check two loops were fed the same frames).
``--rects`` (hands): also the rects MediaPipe computed on each frame from palm detections and from
landmarks ({"rects": [{"palm": [...], "landmarks": [...]} per frame]}, NormalizedRect fields).
``--timestamps``: microseconds per frame, fed as MediaPipe's packet timestamps (the smoothing
filters read them), instead of the solution's 33333 us steps.
``--masks PATH`` (pose with ``enable_segmentation``): also each frame's segmentation mask, as a
(N, H, W) float32 .npy (NaN where MediaPipe gave none).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time

import numpy as np


def _objects(result, name: str) -> list[dict]:
    if name == "face_mesh":
        groups, labels = result.multi_face_landmarks or [], None
    elif name == "hands":
        groups = result.multi_hand_landmarks or []
        labels = [(h.classification[0].label, h.classification[0].score) for h in (result.multi_handedness or [])]
    else:
        groups, labels = ([result.pose_landmarks] if result.pose_landmarks else []), None
    out = []
    for i, g in enumerate(groups):
        obj = {"landmarks": [[lm.x, lm.y, lm.z] for lm in g.landmark],
               "visibility": [lm.visibility for lm in g.landmark]}
        if labels:
            obj["label"], obj["label_score"] = labels[i]
        out.append(obj)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("solution", choices=["face_mesh", "hands", "pose"])
    ap.add_argument("frames")
    ap.add_argument("out")
    ap.add_argument("--timestamps")
    ap.add_argument("--options", default="{}")
    ap.add_argument("--rects", action="store_true")
    ap.add_argument("--masks")
    ap.add_argument("--decode", action="store_true", help="frames is a video file, decoded with PyAV in the loop")
    ap.add_argument("--checksum-frames", type=int, nargs="*", default=[])
    args = ap.parse_args()
    import mediapipe as mp

    opts = json.loads(args.options)
    cls = {"face_mesh": mp.solutions.face_mesh.FaceMesh, "hands": mp.solutions.hands.Hands,
           "pose": mp.solutions.pose.Pose}[args.solution]
    if args.decode:
        if args.rects or args.masks:
            raise SystemExit("--decode times the plain loop: not with --rects or --masks")
        return decode_loop(cls, args.solution, opts, args.frames, args.out, args.checksum_frames)
    frames = np.load(args.frames, mmap_mode="r")
    stamps = np.load(args.timestamps) if args.timestamps else None
    results, rects = [], []
    if args.rects:
        if args.solution != "hands":
            raise SystemExit("--rects is for hands")
        from mediapipe.python.solution_base import SolutionBase

        sol = SolutionBase(
            binary_graph_path="mediapipe/modules/hand_landmark/hand_landmark_tracking_cpu.binarypb",
            side_inputs={"model_complexity": opts.get("model_complexity", 1), "num_hands": opts.get("max_num_hands", 2),
                         "use_prev_landmarks": True},
            outputs=["multi_hand_landmarks", "multi_handedness", "hand_rects_from_palm_detections",
                     "hand_rects_from_landmarks"])
        as_dict = lambda rs: [{"x_center": r.x_center, "y_center": r.y_center, "width": r.width,  # noqa: E731
                               "height": r.height, "rotation": r.rotation} for r in (rs or [])]
        for i in range(len(frames)):
            if stamps is not None:
                sol._simulated_timestamp = int(stamps[i]) - 33333
            r = sol.process({"image": np.ascontiguousarray(frames[i])})
            results.append(_objects(r, "hands"))
            rects.append({"palm": as_dict(r.hand_rects_from_palm_detections),
                          "landmarks": as_dict(r.hand_rects_from_landmarks)})
        sol.close()
        with open(args.out, "w") as f:
            json.dump({"frames": results, "rects": rects, "seconds": 0.0}, f)
        return
    masks = np.full(frames.shape[:3], np.nan, np.float32) if args.masks else None
    with cls(**opts) as sol:
        sol._graph.wait_until_idle()  # its models loaded (see the docstring)
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(len(frames)):
            if stamps is not None:  # process() adds 33333 before stamping the packets
                sol._simulated_timestamp = int(stamps[i]) - 33333
            r = sol.process(np.ascontiguousarray(frames[i]))
            results.append(_objects(r, args.solution))
            if masks is not None and getattr(r, "segmentation_mask", None) is not None:
                masks[i] = r.segmentation_mask
        seconds, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    if masks is not None:
        np.save(args.masks, masks)
    checksums = {i: _sha1(frames[i]) for i in args.checksum_frames if i < len(frames)}
    with open(args.out, "w") as f:
        json.dump({"frames": results, "seconds": seconds, "cpu_s": cpu_s, "checksums": checksums}, f)


def _sha1(rgb) -> str:
    return hashlib.sha1(np.ascontiguousarray(rgb).tobytes()).hexdigest()


def decode_loop(cls, solution: str, opts: dict, video: str, out: str, checksum_frames: list[int]) -> None:
    """The plain loop a MediaPipe user writes: decode a frame with PyAV, process it, the next."""
    import av

    keep = set(checksum_frames)
    results, kept = [], {}
    with cls(**opts) as sol, av.open(video) as container:
        sol._graph.wait_until_idle()  # its models loaded, as for the pre-decoded loop
        stream = container.streams.video[0]
        t0, c0 = time.perf_counter(), time.process_time()
        for i, frame in enumerate(container.decode(stream)):
            rgb = frame.to_ndarray(format="rgb24")
            # process() adds 33333 before stamping; the frame's own time, as decode_clip() gives the other loop
            sol._simulated_timestamp = int(round(frame.pts * stream.time_base * 1_000_000)) - 33333
            results.append(_objects(sol.process(rgb), solution))
            if i in keep:
                kept[i] = rgb
        seconds, cpu_s = time.perf_counter() - t0, time.process_time() - c0
        ctx = stream.codec_context
        decoder = {"thread_type": ctx.thread_type.name, "thread_count": ctx.thread_count}
    with open(out, "w") as f:
        json.dump({"frames": results, "seconds": seconds, "cpu_s": cpu_s, "decoder": decoder,
                   "checksums": {i: _sha1(rgb) for i, rgb in sorted(kept.items())}}, f)


if __name__ == "__main__":
    main()
