"""Small ONNX models made with onnx.helper, for the build-side tests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def _model(
    nodes: Sequence[onnx.NodeProto],
    inputs: Sequence[onnx.ValueInfoProto],
    outputs: Sequence[onnx.ValueInfoProto],
    initializers: Sequence[onnx.TensorProto] = (),
    opset: int = OPSET,
) -> onnx.ModelProto:
    graph = helper.make_graph(list(nodes), "test", list(inputs), list(outputs), list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _weights(name: str, shape: Sequence[int], seed: int, scale: float = 0.5) -> onnx.TensorProto:
    values = np.random.default_rng(seed).normal(0.0, scale, size=shape).astype(np.float32)
    return numpy_helper.from_array(values, name)


def cnn(batch: int | str = "batch") -> onnx.ModelProto:
    """Conv -> BatchNorm -> Relu -> MaxPool -> Conv -> GlobalAveragePool -> Gemm -> Softmax."""
    nodes = [
        helper.make_node("Conv", ["images", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "g", "beta", "mean", "var"], ["n1"]),
        helper.make_node("Relu", ["n1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("GlobalAveragePool", ["c2"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"]),
        helper.make_node("Gemm", ["flat", "wf", "bf"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    initializers = [
        _weights("w1", [8, 3, 3, 3], 1),
        _weights("b1", [8], 2),
        numpy_helper.from_array(np.linspace(0.5, 1.5, 8, dtype=np.float32), "g"),
        _weights("beta", [8], 3, 0.1),
        _weights("mean", [8], 4, 0.1),
        numpy_helper.from_array(np.linspace(0.8, 1.2, 8, dtype=np.float32), "var"),
        _weights("w2", [16, 8, 3, 3], 5, 0.2),
        _weights("wf", [10, 16], 6),
        _weights("bf", [10], 7, 0.1),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, 16, 16])],
        [
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [batch, 10]),
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 10]),
        ],
        initializers,
    )


def mlp() -> onnx.ModelProto:
    """MatMul/Add/Gelu-ish MLP with an int64 mask cast to float, as exporters write them."""
    nodes = [
        helper.make_node("MatMul", ["features", "w1"], ["h1"]),
        helper.make_node("Add", ["h1", "b1"], ["h1b"]),
        helper.make_node("Tanh", ["h1b"], ["t1"]),
        helper.make_node("MatMul", ["t1", "w2"], ["h2"]),
        helper.make_node("Cast", ["mask"], ["mask_float"], to=TensorProto.FLOAT),
        helper.make_node("Constant", [], ["half"], value_float=0.5),
        helper.make_node("Mul", ["mask_float", "half"], ["mask_half"]),
        helper.make_node("Add", ["h2", "mask_half"], ["scores"]),
        helper.make_node("ReduceMean", ["scores"], ["mean"], axes=[1], keepdims=1),
    ]
    initializers = [
        _weights("w1", [32, 64], 11, 0.2),
        _weights("b1", [64], 12, 0.1),
        _weights("w2", [64, 8], 13, 0.2),
    ]
    return _model(
        nodes,
        [
            helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 32]),
            helper.make_tensor_value_info("mask", TensorProto.INT64, ["batch", 8]),
        ],
        [
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 8]),
            helper.make_tensor_value_info("mean", TensorProto.FLOAT, ["batch", 1]),
        ],
        initializers,
        opset=13,
    )


def identity(shape: Sequence[int | str | None], name: str = "x") -> onnx.ModelProto:
    dims = [None if dim is None else dim for dim in shape]
    return _model(
        [helper.make_node("Identity", [name], ["y"])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)],
    )


def two_inputs() -> onnx.ModelProto:
    """tokens [batch, seq] int64 and mask [batch, seq] float, plus a static bias [4]."""
    nodes = [
        helper.make_node("Cast", ["tokens"], ["tokens_float"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["tokens_float", "mask"], ["sum"]),
        helper.make_node("ReduceSum", ["sum"], ["total"], keepdims=0),
        helper.make_node("Add", ["total", "bias"], ["out"]),
    ]
    return _model(
        nodes,
        [
            helper.make_tensor_value_info("tokens", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["batch", "seq"]),
            helper.make_tensor_value_info("bias", TensorProto.FLOAT, [4]),
        ],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [4])],
    )


def deep_mlp(depth: int, width: int = 32) -> onnx.ModelProto:
    """MatMul + Relu repeated ``depth`` times: slow to build (TensorRT-RTX spends over ten
    seconds of a CPU on 1500 layers, mostly in one phase without progress), quick to write."""
    nodes, initializers = [], []
    previous = "x"
    for index in range(depth):
        initializers.append(_weights(f"w{index}", [width, width], index, 0.05))
        nodes.append(helper.make_node("MatMul", [previous, f"w{index}"], [f"m{index}"]))
        output = "y" if index == depth - 1 else f"r{index}"
        nodes.append(helper.make_node("Relu", [f"m{index}"], [output]))
        previous = output
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, width])],
        initializers,
    )


def reshape_by_input(batch: int | str = "batch") -> onnx.ModelProto:
    """y = reshape(x, target): `target` is a shape-tensor input (its values decide y's shape)."""
    return _model(
        [helper.make_node("Reshape", ["x", "target"], ["y"], name="reshape")],
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 16]),
            helper.make_tensor_value_info("target", TensorProto.INT64, [2]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["rows", "columns"])],
    )
