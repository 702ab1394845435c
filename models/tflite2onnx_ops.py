"""TFLite ops that ``tflite2onnx`` 0.4 lacks, registered into its operator factory.

    from models.tflite2onnx_ops import register
    register()                # idempotent; models/convert.py calls it before tflite2onnx.convert

``DEPTH_TO_SPACE`` (in MediaPipe's BlazeFace full range and pose detector): TFLite's NHWC op moves
``input[b, h, w, (i * bs + j) * C + c]`` to ``output[b, h * bs + i, w * bs + j, c]``, which is
ONNX ``DepthToSpace`` in ``DCR`` mode on NCHW tensors (opset 11). As for tflite2onnx's own
layout-bound ops (Conv, Resize), the input and output are marked NHWC -> NCHW and the graph's
layout propagation inserts the transposes where a neighbour needs them.
"""

from __future__ import annotations

__all__ = ["register"]

_registered = False


def register() -> None:
    global _registered
    if _registered:
        return
    import tflite
    from tflite2onnx.layout import Layout
    from tflite2onnx.op.common import OpFactory, Operator

    class DepthToSpace(Operator):
        TypeMapping = {tflite.BuiltinOperator.DEPTH_TO_SPACE: "DepthToSpace"}

        def __init__(self, TFactory, index):
            super().__init__(TFactory, index)
            self.attrs["mode"] = "DCR"
            self.setInited()

        @property
        def type(self):
            return "DepthToSpace"

        def parse(self):
            op = self.tflite
            assert op.InputsLength() == 1 and op.OutputsLength() == 1
            it = self.parseInput(0, Layout("NHWC", "NCHW"))
            assert len(it.shape) == 4, "DEPTH_TO_SPACE takes a 4-D NHWC tensor"
            self.parseOutput(0, Layout("NHWC", "NCHW"))
            options = tflite.DepthToSpaceOptions()
            raw = op.BuiltinOptions()
            options.Init(raw.Bytes, raw.Pos)
            self.attrs["blocksize"] = int(options.BlockSize())
            self.setParsed()

        def propagatableTensors(self):
            return []

        def transform(self):
            pass

    if tflite.BuiltinOperator.DEPTH_TO_SPACE not in OpFactory.registry:
        OpFactory.register(DepthToSpace)
    _registered = True
