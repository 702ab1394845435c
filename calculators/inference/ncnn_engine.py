"""ncnn engine: ``.param`` + ``.bin`` models (e.g. made from ONNX by ``vpipe convert MODEL --to ncnn``).

``device``: ``cpu`` (``auto``) or ``vulkan`` / ``vulkan:N`` / ``gpu[:N]`` (ncnn's Vulkan compute).
``threads`` sets ``opt.num_threads``; the ``light_mode`` option sets ``opt.lightmode`` (free
intermediate blobs early). ``precision``: fp32 (default, faithful) turns off every reduced-precision
path that ncnn enables by default (``use_fp16_packed/storage/arithmetic``, ``use_bf16_storage``);
fp16 turns the fp16 flags on, bf16 the bf16 storage; int8 turns on int8 inference (an int8 model,
quantized with ncnn2int8, is needed for it to matter).

ncnn's blobs carry no batch axis: inputs are batched arrays (``N x C x H x W``) and each sample runs
through its own ``Extractor`` (the ncnn way; ``Net`` is safe to share between extractors), so one
model serves concurrent requests. Used through the ``Inference`` calculator (``engine: ncnn``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .engine import DeviceError, Engine, EngineOptions, ModelLoadError, TensorSpec, require


class NcnnEngine(Engine):
    """An ``ncnn.Net`` behind the engine interface."""

    name = "ncnn"

    def __init__(self, path: Path, options: EngineOptions) -> None:
        super().__init__(path, options)
        ncnn = require("ncnn", "ncnn")
        self._ncnn = ncnn
        bin_path = path.with_suffix(".bin")
        # ncnn does not validate much before it dereferences; check the magic first so a wrong
        # file is a clear error rather than a crash.
        with open(path, "rb") as f:
            magic = f.readline().strip()
        if magic != b"7767517":
            raise ModelLoadError(f"{path} is not an ncnn .param file (first line {magic[:20]!r}, expected 7767517)")
        kind, _, index = options.device.lower().partition(":")
        net = ncnn.Net()
        opt = net.opt
        if kind in ("auto", "cpu"):
            opt.use_vulkan_compute = False
            self.device = "cpu"
        elif kind in ("vulkan", "gpu"):
            count = ncnn.get_gpu_count()
            i = int(index or 0)
            if i >= count:
                raise DeviceError(f"ncnn: device {options.device!r} needs Vulkan GPU {i}, but {count} are available")
            opt.use_vulkan_compute = True
            net.set_vulkan_device(i)
            self.device = f"vulkan:{i}"
        else:
            raise DeviceError(f"ncnn: unknown device {options.device!r}; use cpu, vulkan[:N] or auto")
        opt.num_threads = options.threads or (os.cpu_count() or 1)
        opt.lightmode = options.light_mode
        fp16 = options.precision == "fp16"
        opt.use_fp16_packed = fp16
        opt.use_fp16_storage = fp16
        opt.use_fp16_arithmetic = fp16
        opt.use_bf16_storage = options.precision == "bf16"
        opt.use_int8_inference = options.precision == "int8"
        for k, v in options.extra_dict().get("opt", {}).items():
            setattr(opt, k, v)
        if net.load_param(str(path)) != 0:
            raise ModelLoadError(f"ncnn could not parse {path}")
        if not bin_path.is_file():
            raise ModelLoadError(f"ncnn model weights not found: {bin_path} (next to {path.name})")
        if net.load_model(str(bin_path)) != 0:
            raise ModelLoadError(f"ncnn could not load the weights {bin_path} (truncated or not for this .param?)")
        self.net = net
        # ncnn blobs are float32 with no shape until run.
        self.inputs = [TensorSpec(n, None, np.dtype(np.float32)) for n in net.input_names()]
        self.outputs = [TensorSpec(n, None, np.dtype(np.float32)) for n in net.output_names()]
        self._in_names = [s.name for s in self.inputs]
        self._out_names = [s.name for s in self.outputs]

    def _one(self, samples: Sequence[np.ndarray]) -> list[np.ndarray]:
        Mat = self._ncnn.Mat
        ex = self.net.create_extractor()
        for name, a in zip(self._in_names, samples):
            ex.input(name, Mat(np.ascontiguousarray(a)))
        outs = []
        for name in self._out_names:
            ret, m = ex.extract(name)
            if ret != 0:
                raise RuntimeError(f"ncnn: extracting blob {name!r} failed with code {ret}")
            outs.append(np.array(m))
        return outs

    def infer(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        n = arrays[0].shape[0]
        if n == 1:
            return [o[None] for o in self._one([a[0] for a in arrays])]
        per = [self._one([a[b] for a in arrays]) for b in range(n)]
        return [np.stack([p[i] for p in per]) for i in range(len(self._out_names))]

    def close(self) -> None:
        if getattr(self, "net", None) is not None:
            self.net.clear()
            self.net = None
