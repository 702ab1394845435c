"""The loops a ready graph is measured against, each a whole process like ``vpipe run``:

    python tests/bench/face_loops.py LOOP VIDEO OUT

- ``tasks``: MediaPipe Tasks' ``FaceDetector`` fed by PyAV in a plain loop (what a MediaPipe user
  writes): decode to RGB, ``detect``, one JSON line per frame.
- ``hand_blazeface``: the best a user could write by hand for ``graphs/face_detection.yaml`` with
  only ``detections``: two threads, PyAV decoding I420 (slice threads) in one, a queue of 8, and in
  the other the letterbox warp of the three planes straight into the 128x128 tensor, the colour
  conversion of the tensor only, BlazeFace on OpenVINO with one thread, SSD decoding of the boxes
  whose raw logit passes the threshold, weighted NMS, projection, one JSON line per frame. The
  model compiles while the first frames decode. Nothing of vpipe is imported but the catalog (to
  find the model file), so its figures are the bound the framework is held to.
- ``hand_blazeface_litert``: the same loop with BlazeFace on LiteRT (``ai_edge_litert``'s
  interpreter, XNNPACK, one thread) instead of OpenVINO: the bound with the other runtime a user
  could pick by hand (the faster of the two is the bound).
- ``hand_blazeface_litert_best``: the LiteRT loop with the two things a user could still do better
  by hand: the decoder's slice threads on (FFmpeg's thread count, as the graph's MediaSource
  decodes: the decoding thread's frame then takes less wall time, at more CPU), and the planes
  sampled by strided slices where the letterbox's scale is a whole number of pixels (1280x720).
- ``bare_centerface``: ``graphs/face_detection_centerface.yaml`` with only ``detections`` as two
  threads around the bare engine (ONNX Runtime, as ``engine: auto`` picks on a CPU): decode to
  RGB, vpipe's ``image_to_tensor``, ``decode_centerface``, ``hard_nms``, ``project_detections``
  (ONNX Runtime's threads not spinning, as the graph sets them).
- ``bare_selfie``: ``graphs/selfie_segmentation.yaml`` with ``output`` as two threads around
  MediaPipe Tasks' ``ImageSegmenter``: decode to RGB, segment, ``blur_background``, x264 encode
  with VideoWriter's settings into ``OUT.mp4``.

Each loop also writes ``OUT.stages.json``: the CPU seconds (``time.thread_time``) of each stage in
its own thread, and the frame count, so the benchmark can show the floor of every stage measured
in the same run. JSON lines use the format of ``JsonlWriter`` (flushed per line, as it does).
"""

from __future__ import annotations

import json
import math
import queue
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_END = object()


class Stages:
    """CPU seconds per stage, measured with ``time.thread_time`` in the thread that runs it."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = {}
        self.frames = 0

    def add(self, stage: str, t0: float) -> float:
        t = time.thread_time()
        self.cpu[stage] = self.cpu.get(stage, 0.0) + t - t0
        return t

    def write(self, out: Path) -> None:
        Path(f"{out}.stages.json").write_text(json.dumps({"frames": self.frames, "cpu_s": self.cpu}))


def pts_us(pts: int, time_base) -> int:
    """A presentation time in microseconds, rounded as VideoSource rounds it."""
    return (pts * time_base.numerator * 1_000_000 + time_base.denominator // 2) // time_base.denominator


def decoder_thread(video: Path, fmt: str, q: queue.Queue, stages: Stages, thread_type: str,
                   slice_threads: int = 1) -> threading.Thread:
    """Decodes ``video`` into ``q`` as (timestamp_us, array) in ``fmt`` (PyAV's names), then _END.
    ``slice_threads``: with ``SLICE``, FFmpeg's thread count (1: every slice in this thread; 0:
    FFmpeg's choice, one per core, as the graph's MediaSource decodes)."""
    import av

    def run() -> None:
        try:
            with av.open(str(video)) as c:
                s = c.streams.video[0]
                s.thread_type = thread_type
                if thread_type == "SLICE":  # 1: no slice threads, both slices of a frame decode in this thread
                    s.codec_context.thread_count = slice_threads
                tb = s.time_base
                t0 = time.thread_time()
                for f in c.decode(s):
                    item = (pts_us(f.pts, tb), f.to_ndarray(format=fmt))
                    t0 = stages.add("decode", t0)
                    q.put(item)
                    t0 = time.thread_time()
        finally:
            q.put(_END)

    t = threading.Thread(target=run, name="decode", daemon=True)
    t.start()
    return t


def jsonl_line(t_us: int, dets: list[dict]) -> str:
    return json.dumps({"timestamp_us": t_us, "detections": dets}, allow_nan=False) + "\n"


def det_dict(box, score: float, kps) -> dict:
    return {"box": [round(v, 2) for v in box], "score": round(score, 4), "label": "face",
            "keypoints": [[round(x, 2), round(y, 2)] for x, y in kps]}


def frames_from(q: queue.Queue):
    """The decoder thread's (timestamp_us, array) items, up to its end mark."""
    while True:
        item = q.get()
        if item is _END:
            return
        yield item


def write_detections(q: queue.Queue, stages: Stages, out: Path, detect) -> None:
    """The detector thread of a JSON-lines loop: ``detect(array, t0)`` returns the frame's
    detections (``det_dict``s) and the thread clock after its last stage; one line per frame."""
    with open(out, "w", encoding="utf-8") as f:
        for t_us, data in frames_from(q):
            dets, t0 = detect(data, time.thread_time())
            f.write(jsonl_line(t_us, dets))
            f.flush()
            stages.frames += 1
            stages.add("sink", t0)


# --------------------------------------------------------------------------------- tasks
def tasks(video: Path, out: Path) -> None:
    import av
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    from models.catalog import resolve

    stages = Stages()
    det = vision.FaceDetector.create_from_options(vision.FaceDetectorOptions(
        base_options=BaseOptions(model_asset_path=str(resolve("zoo:blazeface-short")))))
    try:
        with av.open(str(video)) as c, open(out, "w", encoding="utf-8") as f:
            s = c.streams.video[0]
            s.thread_type = "AUTO"
            tb = s.time_base
            t0 = time.thread_time()
            for frame in c.decode(s):
                rgb = frame.to_ndarray(format="rgb24")
                t0 = stages.add("decode", t0)
                result = det.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb))
                t0 = stages.add("detect", t0)
                h, w = rgb.shape[:2]
                dets = []
                for d in result.detections:
                    b = d.bounding_box
                    dets.append(det_dict([b.origin_x, b.origin_y, b.origin_x + b.width, b.origin_y + b.height],
                                         d.categories[0].score, [(k.x * w, k.y * h) for k in d.keypoints]))
                f.write(jsonl_line(pts_us(frame.pts, tb), dets))
                f.flush()
                stages.frames += 1
                t0 = stages.add("sink", t0)
    finally:
        det.close()
    stages.write(out)


# ------------------------------------------------------------------------ hand_blazeface
def openvino_blazeface():
    """BlazeFace short range on OpenVINO, one thread: ``infer(tensor (1, 128, 128, 3))`` -> the
    model's two outputs."""
    import openvino as ov

    from models.catalog import resolve

    compiled = ov.Core().compile_model(str(resolve("zoo:blazeface-short")), "CPU",
                                       {"INFERENCE_NUM_THREADS": 1, "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()

    def infer(tensor):
        res = request.infer(tensor, share_inputs=True)
        return res[0], res[1]

    return infer


def litert_blazeface():
    """The same on LiteRT (TFLite's runtime, XNNPACK, the runtime MediaPipe runs), one thread."""
    from ai_edge_litert.interpreter import Interpreter

    from models.catalog import resolve

    interpreter = Interpreter(model_path=str(resolve("zoo:blazeface-short")), num_threads=1)
    interpreter.allocate_tensors()
    index = interpreter.get_input_details()[0]["index"]
    outputs = [d["index"] for d in interpreter.get_output_details()]

    def infer(tensor):
        interpreter.set_tensor(index, tensor)
        interpreter.invoke()
        return interpreter.get_tensor(outputs[0]), interpreter.get_tensor(outputs[1])

    return infer


def hand_blazeface(video: Path, out: Path, engine=openvino_blazeface, slice_threads: int = 1,
                   slices: bool = False) -> None:
    """``slice_threads``: the decoder's (decoder_thread); ``slices``: a letterbox whose scale is a
    whole number of pixels (1280x720 into 128x128) samples the planes by strided slices instead of
    ``cv2.warpAffine`` (the same pixels: bilinear sampling at whole pixels is the pixel)."""
    import cv2
    import numpy as np

    stages = Stages()
    q: queue.Queue = queue.Queue(maxsize=8)
    decoder = decoder_thread(video, "yuv420p", q, stages, "SLICE", slice_threads)  # decodes while the model compiles

    t0 = time.thread_time()
    infer = engine()
    t0 = stages.add("compile", t0)
    # MediaPipe's BlazeFace short-range anchors: strides 8, 16, 16, 16; 2 then 6 per cell; unit size.
    anchors = []
    for stride, per_cell in ((8, 2), (16, 6)):
        n = 128 // stride
        for y in range(n):
            for x in range(n):
                anchors += [((x + 0.5) / n, (y + 0.5) / n)] * per_cell
    anchor_xy = np.asarray(anchors, np.float32)
    logit_min = math.log(0.5 / 0.5) - 1e-3
    geometry: dict = {}

    def detect(data, t0):
        h = data.shape[0] * 2 // 3
        w = data.shape[1]
        y, u, v = data[:h], data[h:h + h // 4].reshape(h // 2, w // 2), data[h + h // 4:].reshape(h // 2, w // 2)
        if not geometry:  # letterbox: the frame's long side spans the tensor
            scale = 128.0 / max(w, h)
            ox, oy = (128 - w * scale) / 2, (128 - h * scale) / 2
            inv = np.array([[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]]) / 255.0
            m = np.linalg.inv(inv)
            geometry.update(luma=np.float64([[scale, 0, ox], [0, scale, oy]]),
                            chroma=np.float64([[2 * scale, 0, ox], [0, 2 * scale, oy]]),
                            yuv_to_rgb=np.hstack([m, -(m @ np.array([16.0, 128.0, 128.0]))[:, None]]),
                            to_frame=(1 / scale, -ox / scale, -oy / scale))
            step = max(w, h) / 128  # frame pixels per tensor pixel
            if slices and w >= h and step == int(step) and step % 2 == 0 and oy == int(oy):
                blank = np.empty((128, 128, 3), np.uint8)
                blank[...] = (16, 128, 128)  # the border: black in YUV
                geometry.update(blank=blank, step=int(step), rows=(int(oy), int(oy) + -(-h // int(step))))
        g = geometry
        if "blank" in g:
            planes, k, (r0, r1) = g["blank"].copy(), g["step"], g["rows"]
            planes[r0:r1, :, 0] = y[::k, ::k]
            planes[r0:r1, :, 1] = u[::k // 2, ::k // 2]
            planes[r0:r1, :, 2] = v[::k // 2, ::k // 2]
        else:
            planes = cv2.merge([
                cv2.warpAffine(y, g["luma"], (128, 128), flags=cv2.INTER_LINEAR, borderValue=(16,) * 4),
                cv2.warpAffine(u, g["chroma"], (128, 128), flags=cv2.INTER_LINEAR, borderValue=(128,) * 4),
                cv2.warpAffine(v, g["chroma"], (128, 128), flags=cv2.INTER_LINEAR, borderValue=(128,) * 4)])
        tensor = cv2.transform(planes, g["yuv_to_rgb"]).astype(np.float32)
        tensor *= 2.0 / 255.0
        tensor -= 1.0
        t0 = stages.add("tensor", t0)
        boxes, scores = infer(tensor[None])
        if boxes.shape[-1] != 16:
            boxes, scores = scores, boxes
        t0 = stages.add("inference", t0)
        logits = scores.reshape(-1)
        near = np.flatnonzero(logits >= logit_min)
        sc = (1.0 / (1.0 + np.exp(-np.clip(logits[near], -100, 100).astype(np.float64)))).astype(np.float32)
        near, sc = near[sc >= 0.5], sc[sc >= 0.5]
        raw = boxes.reshape(-1, 16)[near]
        centre = raw[:, 0:2] / 128.0 + anchor_xy[near]
        half = raw[:, 2:4] / 256.0
        xyxy = np.concatenate([centre - half, centre + half], axis=1) * 128.0
        kps = (raw[:, 4:16].reshape(-1, 6, 2) / 128.0 + anchor_xy[near][:, None]) * 128.0
        dets = []
        order = list(np.argsort(-sc, kind="stable"))
        while order:  # MediaPipe's weighted NMS at IoU 0.3
            top = order[0]
            b = xyxy[order]
            iw = np.clip(np.minimum(b[:, 2], b[0, 2]) - np.maximum(b[:, 0], b[0, 0]), 0, None)
            ih = np.clip(np.minimum(b[:, 3], b[0, 3]) - np.maximum(b[:, 1], b[0, 1]), 0, None)
            inter = iw * ih
            area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
            iou = inter / np.maximum(area + area[0] - inter, 1e-12)
            members = [order[i] for i in np.flatnonzero(iou > 0.3)] or [top]
            wt = sc[members][:, None]
            box = (xyxy[members] * wt).sum(axis=0) / wt.sum()
            kp = (kps[members] * wt[:, :, None]).sum(axis=0) / wt.sum()
            s_, tx, ty = g["to_frame"]
            dets.append(det_dict((box * s_ + [tx, ty, tx, ty]).tolist(), float(sc[top]),
                                 (kp * s_ + [tx, ty]).tolist()))
            order = [order[i] for i in np.flatnonzero(iou <= 0.3) if order[i] != top]
        return dets, stages.add("post", t0)

    write_detections(q, stages, out, detect)
    decoder.join()
    stages.write(out)


# ------------------------------------------------------------------------ bare_centerface
def bare_centerface(video: Path, out: Path) -> None:
    stages = Stages()
    q: queue.Queue = queue.Queue(maxsize=8)
    decoder = decoder_thread(video, "rgb24", q, stages, "AUTO")  # the graph's VideoSource defaults

    from calculators.image.ops import image_to_tensor
    from calculators.inference.engine import EngineOptions
    from calculators.inference.selection import engine_class, pick_engine
    from calculators.postprocess.centerface import decode_centerface
    from calculators.postprocess.geometry import project_detections
    from calculators.postprocess.nms import hard_nms
    from calculators.types import Detections, Image
    from models.catalog import resolve

    t0 = time.thread_time()
    model = resolve("zoo:centerface")
    # The graph's engine settings: ONNX Runtime's pool sleeps between calls instead of spinning.
    engine = engine_class(pick_engine(model))(model, EngineOptions.with_extra(
        {"session_config": {"session.intra_op.allow_spinning": "0"}}))
    t0 = stages.add("compile", t0)
    def detect(rgb, t0):
        tensor, transform = image_to_tensor(Image(rgb, "RGB"), (320, 256), "letterbox", layout="NCHW")
        t0 = stages.add("tensor", t0)
        outs = engine.infer([tensor.data])
        t0 = stages.add("inference", t0)
        by_ch: dict[int, list] = {}
        for a in outs:
            by_ch.setdefault(a.shape[1], []).append(a)
        xyxy, s, kp = decode_centerface(by_ch[1][0], by_ch[2][0], by_ch[2][1], by_ch[10][0], threshold=0.5)
        det = Detections(xyxy, s, None, ("face",) * len(s), kp)
        det = det.select(hard_nms(det.xyxy, det.scores, 0.3))
        det = project_detections(det, transform)
        return det.to_json(), stages.add("post", t0)

    write_detections(q, stages, out, detect)
    decoder.join()
    engine.close()
    stages.write(out)


# ---------------------------------------------------------------------------- bare_selfie
def bare_selfie(video: Path, out: Path) -> None:
    stages = Stages()
    q: queue.Queue = queue.Queue(maxsize=8)
    decoder = decoder_thread(video, "rgb24", q, stages, "AUTO")

    import av
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    from calculators.postprocess.masks import blur_background
    from calculators.sinks.video_writer import video_frame
    from calculators.types import Image
    from models.catalog import resolve

    t0 = time.thread_time()
    seg = vision.ImageSegmenter.create_from_options(vision.ImageSegmenterOptions(
        base_options=BaseOptions(model_asset_path=str(resolve("zoo:selfie-segmentation"))),
        output_confidence_masks=True, output_category_mask=False))
    t0 = stages.add("compile", t0)
    try:
        with av.open(f"{out}.mp4", "w") as o:  # OUT.mp4: the container comes from the extension
            enc = None
            for _, rgb in frames_from(q):
                t0 = time.thread_time()
                result = seg.segment(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb))
                mask = result.confidence_masks[0].numpy_view().reshape(rgb.shape[:2])
                t0 = stages.add("inference", t0)
                blurred = blur_background(rgb, mask, 31)
                t0 = stages.add("post", t0)
                if enc is None:
                    enc = o.add_stream("libx264", rate=30)
                    enc.width, enc.height, enc.pix_fmt = rgb.shape[1], rgb.shape[0], "yuv420p"
                    enc.options = {"crf": "23", "preset": "veryfast"}
                for p in enc.encode(video_frame(Image(blurred, "RGB"))):
                    o.mux(p)
                stages.frames += 1
                stages.add("sink", t0)
            if enc is not None:
                for p in enc.encode():
                    o.mux(p)
    finally:
        seg.close()
    decoder.join()
    stages.write(out)


def hand_blazeface_litert(video: Path, out: Path) -> None:
    hand_blazeface(video, out, litert_blazeface)


def hand_blazeface_litert_best(video: Path, out: Path) -> None:
    hand_blazeface(video, out, litert_blazeface, slice_threads=0, slices=True)


LOOPS = {"tasks": tasks, "hand_blazeface": hand_blazeface, "hand_blazeface_litert": hand_blazeface_litert,
         "hand_blazeface_litert_best": hand_blazeface_litert_best,
         "bare_centerface": bare_centerface, "bare_selfie": bare_selfie}

if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    if len(sys.argv) != 4 or sys.argv[1] not in LOOPS:
        raise SystemExit(f"usage: python {Path(__file__).name} {{{','.join(LOOPS)}}} VIDEO OUT")
    LOOPS[sys.argv[1]](Path(sys.argv[2]), Path(sys.argv[3]))
