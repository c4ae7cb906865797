"""ONNX export of TrafficSignNet (``neonsign export-onnx``), without PyTorch.

The graph is written with the ``onnx`` package's helpers (the ``onnx`` extra), opset 17:
input ``x`` float32 (N, 3, 32, 32), output ``logits`` float32 (N, 43)::

    Conv 3x3 -> Relu -> MaxPool 2x2 -> Conv 3x3 -> Relu -> MaxPool 2x2 -> Flatten
    -> Gemm (fc1, transB) -> Relu -> Gemm (fc2, transB)

A quantized model directory (:mod:`neonsign.quantize`) exports as a QDQ model: its int8
per-channel weights and int32 biases as DequantizeLinear initialisers (axis 0), and a
QuantizeLinear/DequantizeLinear pair at each point where neonsign's int8 engine quantizes an
activation (the input: int8, zero point 0, which is neonsign's uint8 with zero point 128; after
each pool and fc1: uint8, zero point 0), with the card's scales. ONNX Runtime fuses those into
its integer kernels; its requantization rounds in float, so its logits match neonsign's int8
engine in top-1, not bit for bit.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ._fileio import atomic_write
from .errors import MissingDependencyError

__all__ = ["OPSET", "build_model", "export_onnx"]

OPSET = 17
F32 = npt.NDArray[np.float32]


def _onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:
        raise MissingDependencyError(
            "ONNX export needs the onnx package: pip install 'neonsign[onnx]'"
        ) from exc
    return onnx


def _fp32_graph(h: Any, sd: Mapping[str, F32]) -> tuple[list[Any], list[Any]]:
    """(nodes, initialisers) of the float32 graph."""
    inits = [h.from_array(np.asarray(v, np.float32), name) for name, v in sd.items()]
    n = h.make_node
    nodes = [
        n("Conv", ["x", "conv1.weight", "conv1.bias"], ["c1"], kernel_shape=[3, 3]),
        n("Relu", ["c1"], ["r1"]),
        n("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        n("Conv", ["p1", "conv2.weight", "conv2.bias"], ["c2"], kernel_shape=[3, 3]),
        n("Relu", ["c2"], ["r2"]),
        n("MaxPool", ["r2"], ["p2"], kernel_shape=[2, 2], strides=[2, 2]),
        n("Flatten", ["p2"], ["f"], axis=1),
        n("Gemm", ["f", "fc1.weight", "fc1.bias"], ["h1"], transB=1),
        n("Relu", ["h1"], ["h"]),
        n("Gemm", ["h", "fc2.weight", "fc2.bias"], ["logits"], transB=1),
    ]
    return nodes, inits


def _qdq_graph(
    h: Any, sd: Mapping[str, F32], quantization: Mapping[str, Any]
) -> tuple[list[Any], list[Any]]:
    """(nodes, initialisers) of the QDQ graph (module doc)."""
    from .quantize import engine_params

    params = engine_params(sd, quantization)
    act = quantization["activation_scales"]
    s_in = {"conv1": act["input"], "conv2": act["pool1"], "fc1": act["pool2"], "fc2": act["fc1"]}
    n = h.make_node
    inits: list[Any] = []
    nodes: list[Any] = []

    def const(name: str, value: npt.ArrayLike, dtype: Any) -> str:
        inits.append(h.from_array(np.asarray(value, dtype), name))
        return name

    def qdq(src: str, name: str, scale: float, signed: bool) -> str:
        zp_type = np.int8 if signed else np.uint8
        s = const(f"{name}.scale", scale, np.float32)
        z = const(f"{name}.zero_point", 0, zp_type)
        nodes.append(n("QuantizeLinear", [src, s, z], [f"{name}.q"]))
        nodes.append(n("DequantizeLinear", [f"{name}.q", s, z], [f"{name}.dq"]))
        return f"{name}.dq"

    def weights(layer: str) -> tuple[str, str]:
        sw = np.asarray(quantization["weight_scales"][layer], np.float64)
        wq = const(f"{layer}.weight_q", params[f"{layer}.weight"], np.int8)
        ws = const(f"{layer}.weight_scale", sw, np.float32)
        wz = const(f"{layer}.weight_zp", np.zeros(len(sw)), np.int8)
        nodes.append(n("DequantizeLinear", [wq, ws, wz], [f"{layer}.w"], axis=0))
        # int32 bias in units of s_in * s_w (without neonsign's uint8 input zero point fold)
        bscale = s_in[layer] * sw
        bq = np.clip(np.rint(np.asarray(sd[f"{layer}.bias"], np.float64) / bscale), -(2**30), 2**30)
        bqn = const(f"{layer}.bias_q", bq, np.int32)
        bs = const(f"{layer}.bias_scale", bscale, np.float32)
        bz = const(f"{layer}.bias_zp", np.zeros(len(sw)), np.int32)
        nodes.append(n("DequantizeLinear", [bqn, bs, bz], [f"{layer}.b"], axis=0))
        return f"{layer}.w", f"{layer}.b"

    x = qdq("x", "input", act["input"], signed=True)
    for layer, pool in (("conv1", "pool1"), ("conv2", "pool2")):
        w, b = weights(layer)
        nodes.append(n("Conv", [x, w, b], [f"{layer}.out"], kernel_shape=[3, 3]))
        nodes.append(n("Relu", [f"{layer}.out"], [f"{layer}.relu"]))
        nodes.append(
            n("MaxPool", [f"{layer}.relu"], [f"{pool}.out"], kernel_shape=[2, 2], strides=[2, 2])
        )
        x = qdq(f"{pool}.out", pool, act[pool], signed=False)
    nodes.append(n("Flatten", [x], ["features"], axis=1))
    w, b = weights("fc1")
    nodes.append(n("Gemm", ["features", w, b], ["fc1.out"], transB=1))
    nodes.append(n("Relu", ["fc1.out"], ["fc1.relu"]))
    x = qdq("fc1.relu", "fc1", act["fc1"], signed=False)
    w, b = weights("fc2")
    nodes.append(n("Gemm", [x, w, b], ["logits"], transB=1))
    return nodes, inits


def build_model(
    state_dict: Mapping[str, F32], quantization: Mapping[str, Any] | None = None
) -> Any:
    """The ``onnx.ModelProto`` of TrafficSignNet with these weights (QDQ when ``quantization``,
    a card's section, is given), checked with ``onnx.checker``."""
    onnx = _onnx()
    h = onnx.helper
    h.from_array = onnx.numpy_helper.from_array
    if quantization:
        nodes, inits = _qdq_graph(h, state_dict, quantization)
    else:
        nodes, inits = _fp32_graph(h, state_dict)
    graph = h.make_graph(
        nodes,
        "TrafficSignNet-int8" if quantization else "TrafficSignNet",
        [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 3, 32, 32])],
        [h.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["n", 43])],
        initializer=inits,
    )
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", OPSET)], producer_name="neonsign")
    model.ir_version = 8  # opset 17's IR: readable by every ONNX Runtime that runs opset 17
    onnx.checker.check_model(model)
    return model


def export_onnx(model: str | os.PathLike[str], out: str | os.PathLike[str]) -> tuple[Path, str]:
    """Export the model at ``model`` (any source :func:`neonsign.artifacts.load_any` reads) to
    the ONNX file ``out`` (written atomically); returns (path, "fp32" or "int8 (QDQ)")."""
    from .artifacts import load_any

    state_dict, card = load_any(model)
    quantization = card.get("quantization")
    proto = build_model(state_dict, quantization)
    path = Path(out)
    data = proto.SerializeToString()
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
    return path, "int8 (QDQ)" if quantization else "fp32"
