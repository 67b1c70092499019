"""A small ONNX model with u2net's interface, for tests that run rembg for real (no download).

Input ``1x3x320x320`` float (rembg's normalised image), outputs ``1x1x320x320`` masks (u2net's first
output is the one rembg reads; a second side output stands in for u2net's others). The mask is a
per-pixel colour rule, ``sigmoid(bias - gain * (r + g + b))`` on the normalised channels: near 1 for
dark or saturated pixels, near 0 for a white background. Built with the ``onnx`` helper API.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: u2net's input side and the tiny model's colour rule.
U2NET_SIDE = 320
GAIN = 6.0
BIAS = 18.0
#: ONNX opset of the model (supported by the pinned onnxruntime).
OPSET = 17


def tiny_u2net_bytes() -> bytes:
    """The serialized tiny model."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.full((1, 3, 1, 1), -GAIN, dtype=np.float32), "weight")
    bias = numpy_helper.from_array(np.array([BIAS], dtype=np.float32), "bias")
    nodes = [
        helper.make_node("Conv", ["input.1", "weight", "bias"], ["logits"], kernel_shape=[1, 1]),
        helper.make_node("Sigmoid", ["logits"], ["mask"]),
        helper.make_node("Identity", ["mask"], ["side_mask"]),
    ]
    side = [1, 1, U2NET_SIDE, U2NET_SIDE]
    graph = helper.make_graph(
        nodes, "tiny_u2net",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, U2NET_SIDE, U2NET_SIDE])],
        [helper.make_tensor_value_info("mask", TensorProto.FLOAT, side),
         helper.make_tensor_value_info("side_mask", TensorProto.FLOAT, side)],
        initializer=[weight, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def write_tiny_u2net(path: Path) -> Path:
    """Write the tiny model to ``path`` (e.g. ``tmp_path / "u2net.onnx"``) and return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tiny_u2net_bytes())
    return path
