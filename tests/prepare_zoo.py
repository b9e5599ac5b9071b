"""Models for the preparation tests, made with onnx.helper: what exporters write and what
TensorRT's parser trips over (old opsets with legacy broadcasting, constant subgraphs, shape
computations, missing shapes). No If/Loop.

Each ``ZooModel`` has feeds for random inputs and, for models onnxruntime cannot run as given
(opset 6), ``twin``: the same network written by hand at a current opset, the reference the
prepared model is compared with.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import build_models
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

Feeds = dict[str, np.ndarray]


@dataclass(frozen=True)
class ZooModel:
    name: str
    make: Callable[[], onnx.ModelProto]
    feeds: Callable[[np.random.Generator], Feeds]
    twin: Callable[[], onnx.ModelProto] | None = None


def _legacy_model(
    nodes: list[onnx.NodeProto],
    inputs: list[onnx.ValueInfoProto],
    outputs: list[onnx.ValueInfoProto],
    initializers: list[onnx.TensorProto],
    opset: int = 6,
) -> onnx.ModelProto:
    """IR version 3, as old exporters wrote: initializers are also graph inputs."""
    declared = [
        helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims))
        for tensor in initializers
    ]
    graph = helper.make_graph(nodes, "legacy", inputs + declared, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 3
    onnx.checker.check_model(model)
    return model


def _array(name: str, values: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(values, name)


def _rng_weights(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 0.5, size=shape).astype(np.float32)


# --- opset 6: legacy broadcasting ---------------------------------------------------------


def _broadcast_weights() -> list[onnx.TensorProto]:
    return [
        _array("channel_bias", _rng_weights((3,), 1)),
        _array("row", _rng_weights((5,), 2)),
        _array("plane", _rng_weights((4, 5), 3)),
        _array("two", np.array([2.0], np.float32)),
    ]


def legacy_broadcast() -> onnx.ModelProto:
    """Add/Mul/Sub/Div with ``broadcast=1``: along axis 1, trailing, a plane, a scalar."""
    nodes = [
        helper.make_node("Add", ["x", "channel_bias"], ["a"], broadcast=1, axis=1),
        helper.make_node("Mul", ["a", "two"], ["b"], broadcast=1),
        helper.make_node("Sub", ["b", "row"], ["c"], broadcast=1),
        helper.make_node("Div", ["c", "plane"], ["d"], broadcast=1, axis=2),
        helper.make_node("Relu", ["d"], ["y"]),
    ]
    return _legacy_model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 4, 5])],
        _broadcast_weights(),
    )


def legacy_broadcast_twin() -> onnx.ModelProto:
    weights = _broadcast_weights()
    weights[0] = _array("channel_bias", _rng_weights((3,), 1).reshape(3, 1, 1))
    nodes = [
        helper.make_node("Add", ["x", "channel_bias"], ["a"]),
        helper.make_node("Mul", ["a", "two"], ["b"]),
        helper.make_node("Sub", ["b", "row"], ["c"]),
        helper.make_node("Div", ["c", "plane"], ["d"]),
        helper.make_node("Relu", ["d"], ["y"]),
    ]
    return build_models._model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 4, 5])],
        weights,
    )


def _legacy_cnn_weights() -> list[onnx.TensorProto]:
    return [
        _array("w", _rng_weights((4, 3, 3, 3), 4)),
        _array("scale", np.linspace(0.5, 1.5, 4, dtype=np.float32)),
        _array("shift", _rng_weights((4,), 5)),
        _array("mean", _rng_weights((4,), 6)),
        _array("var", np.linspace(0.8, 1.2, 4, dtype=np.float32)),
        _array("bias", _rng_weights((4,), 7)),
        _array("flat_shape", np.array([1, 64], np.int64)),
        _array("fc", _rng_weights((64, 10), 8)),
        _array("fc_bias", _rng_weights((10,), 9)),
    ]


def legacy_cnn() -> onnx.ModelProto:
    """Opset 6 CNN: Conv, BatchNormalization (is_test), Add along channels, MaxPool, Reshape,
    Gemm with broadcast bias, Softmax."""
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node(
            "BatchNormalization", ["c", "scale", "shift", "mean", "var"], ["n"], is_test=1
        ),
        helper.make_node("Add", ["n", "bias"], ["nb"], broadcast=1, axis=1),
        helper.make_node("Relu", ["nb"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Reshape", ["p", "flat_shape"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc", "fc_bias"], ["logits"], broadcast=1),
        helper.make_node("Softmax", ["logits"], ["y"]),
    ]
    return _legacy_model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
        _legacy_cnn_weights(),
    )


def legacy_cnn_twin() -> onnx.ModelProto:
    weights = _legacy_cnn_weights()
    weights[5] = _array("bias", _rng_weights((4,), 7).reshape(4, 1, 1))
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "scale", "shift", "mean", "var"], ["n"]),
        helper.make_node("Add", ["n", "bias"], ["nb"]),
        helper.make_node("Relu", ["nb"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Reshape", ["p", "flat_shape"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc", "fc_bias"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["y"], axis=1),
    ]
    return build_models._model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
        weights,
    )


# --- opset 9: Upsample ---------------------------------------------------------------------


def upsample_opset9() -> onnx.ModelProto:
    """Conv then Upsample (removed after opset 9), whose scales the converter turns into
    Resize's."""
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Upsample", ["c", "scales"], ["y"], mode="nearest"),
    ]
    initializers = [
        _array("w", _rng_weights((2, 3, 3, 3), 10)),
        _array("scales", np.array([1.0, 1.0, 2.0, 2.0], np.float32)),
    ]
    return build_models._model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2, 8, 8])],
        initializers,
        opset=9,
    )


# --- constant subgraphs ----------------------------------------------------------------------


def constant_subgraph() -> onnx.ModelProto:
    """Positions from Range over a Constant, a ConstantOfShape mask, the count of a constant's
    NonZero: all computable before running (9 foldable nodes)."""
    one = np.ones(1, np.float32)
    nodes = [
        helper.make_node("Constant", [], ["length"], value=_array("", np.array(8, np.int64))),
        helper.make_node("Range", ["start", "length", "step"], ["positions"]),
        helper.make_node("Cast", ["positions"], ["positions_float"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["positions_float", "frequency"], ["phase"]),
        helper.make_node("Sin", ["phase"], ["encoding"]),
        helper.make_node("ConstantOfShape", ["mask_shape"], ["ones"], value=_array("", one)),
        helper.make_node("NonZero", ["pattern"], ["where_set"]),
        helper.make_node("ReduceSum", ["where_set"], ["count"], keepdims=0),
        helper.make_node("Add", ["x", "encoding"], ["shifted"]),
        helper.make_node("Mul", ["shifted", "ones"], ["masked"]),
        helper.make_node("Cast", ["count"], ["count_float"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["masked", "count_float"], ["y"]),
    ]
    initializers = [
        _array("start", np.array(0, np.int64)),
        _array("step", np.array(1, np.int64)),
        _array("frequency", np.array(0.25, np.float32)),
        _array("mask_shape", np.array([8], np.int64)),
        _array("pattern", np.array([0, 3, 0, 1, 1], np.int64)),
    ]
    return build_models._model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])],
        initializers,
    )


def integer_arithmetic() -> onnx.ModelProto:
    """int64 tokens through integer arithmetic with constant subgraphs: results compare
    exactly."""
    nodes = [
        helper.make_node("Range", ["zero", "six", "one"], ["offsets"]),
        helper.make_node("Mul", ["offsets", "three"], ["scaled_offsets"]),
        helper.make_node("Mul", ["tokens", "seven"], ["scaled"]),
        helper.make_node("Add", ["scaled", "scaled_offsets"], ["shifted"]),
        helper.make_node("Mod", ["shifted", "vocabulary"], ["ids"]),
        helper.make_node("ReduceMax", ["ids"], ["largest"], axes=[1], keepdims=0),
        helper.make_node("ArgMax", ["ids"], ["position"], axis=1, keepdims=0),
    ]
    initializers = [
        _array(name, np.array(value, np.int64))
        for name, value in (
            ("zero", 0),
            ("six", 6),
            ("one", 1),
            ("three", 3),
            ("seven", 7),
            ("vocabulary", 50),
        )
    ]
    return build_models._model(
        nodes,
        [helper.make_tensor_value_info("tokens", TensorProto.INT64, ["batch", 6])],
        [
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", 6]),
            helper.make_tensor_value_info("largest", TensorProto.INT64, ["batch"]),
            helper.make_tensor_value_info("position", TensorProto.INT64, ["batch"]),
        ],
        initializers,
        opset=13,
    )


# --- Shape -> Gather -> Reshape chains -------------------------------------------------------


def _shape_chain(dims: list[int | str]) -> onnx.ModelProto:
    """x [b, t, 8] -> Reshape to [b*t, 8] through Shape, Gather, Mul, Unsqueeze, Concat ->
    MatMul."""
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "index0"], ["b"], axis=0),
        helper.make_node("Gather", ["shape", "index1"], ["t"], axis=0),
        helper.make_node("Mul", ["b", "t"], ["bt"]),
        helper.make_node("Unsqueeze", ["bt", "axis0"], ["bt_1d"]),
        helper.make_node("Concat", ["bt_1d", "features"], ["target_shape"], axis=0),
        helper.make_node("Reshape", ["x", "target_shape"], ["rows"]),
        helper.make_node("MatMul", ["rows", "w"], ["y"]),
    ]
    initializers = [
        _array("index0", np.array(0, np.int64)),
        _array("index1", np.array(1, np.int64)),
        _array("axis0", np.array([0], np.int64)),
        _array("features", np.array([8], np.int64)),
        _array("w", _rng_weights((8, 5), 11)),
    ]
    return build_models._model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, None])],
        initializers,
    )


def shape_chain_static() -> onnx.ModelProto:
    return _shape_chain([2, 4, 8])


def shape_chain_dynamic() -> onnx.ModelProto:
    return _shape_chain(["batch", "steps", 8])


def missing_shapes() -> onnx.ModelProto:
    """Nothing but the inputs' shapes: no value_info, the output's dimensions unknown."""
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Transpose", ["r"], ["t"], perm=[1, 0]),
        helper.make_node("ReduceSum", ["t", "axes"], ["y"], keepdims=0),
    ]
    initializers = [_array("w", _rng_weights((6, 4), 12)), _array("axes", np.array([1], np.int64))]
    return build_models._model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])],
        initializers,
    )


# --- the zoo -----------------------------------------------------------------------------------


def _floats(**shapes: tuple[int, ...]) -> Callable[[np.random.Generator], Feeds]:
    return lambda rng: {
        name: rng.normal(size=shape).astype(np.float32) for name, shape in shapes.items()
    }


def _mlp_feeds(rng: np.random.Generator) -> Feeds:
    return {
        "features": rng.normal(size=(5, 32)).astype(np.float32),
        "mask": (rng.random((5, 8)) > 0.5).astype(np.int64),
    }


def _tokens(rng: np.random.Generator) -> Feeds:
    return {"tokens": rng.integers(0, 1000, size=(4, 6))}


ZOO: tuple[ZooModel, ...] = (
    ZooModel("mlp", build_models.mlp, _mlp_feeds),
    ZooModel("cnn", build_models.cnn, _floats(images=(2, 3, 16, 16))),
    ZooModel("legacy_broadcast", legacy_broadcast, _floats(x=(2, 3, 4, 5)), legacy_broadcast_twin),
    ZooModel("legacy_cnn", legacy_cnn, _floats(x=(1, 3, 8, 8)), legacy_cnn_twin),
    ZooModel("upsample_opset9", upsample_opset9, _floats(x=(2, 3, 4, 4))),
    ZooModel("constant_subgraph", constant_subgraph, _floats(x=(3, 8))),
    ZooModel("integer_arithmetic", integer_arithmetic, _tokens),
    ZooModel("shape_chain_static", shape_chain_static, _floats(x=(2, 4, 8))),
    ZooModel("shape_chain_dynamic", shape_chain_dynamic, _floats(x=(3, 5, 8))),
    ZooModel("missing_shapes", missing_shapes, _floats(x=(3, 6))),
)
