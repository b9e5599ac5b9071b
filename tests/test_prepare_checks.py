"""Preparation never returns a model worse than the one it got: opset-6 PRelu slopes keep their
per-channel meaning, and a prepared model that onnx's strict shape inference (or onnxruntime)
refuses, where the model as given passes, is an error naming the node and what preparation did."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx.version_converter
import pytest
from onnx import TensorProto, helper, numpy_helper

import trtfast
from trtfast import reference
from trtfast.prepare import prepare, prepare_with_report

SLOPE = np.array([0.5, -2.0, 0.25], np.float32)


def prelu_opset6() -> onnx.ModelProto:
    """y = PRelu(x, slope) at opset 6, where a slope of shape (C,) is per channel (axis 1)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 5])
    # IR version 3 lists initializers among the inputs, as exporters of opset 6 did.
    slope = helper.make_tensor_value_info("slope", TensorProto.FLOAT, [3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 5])
    graph = helper.make_graph(
        [helper.make_node("PRelu", ["x", "slope"], ["y"], name="prelu")],
        "prelu",
        [x, slope],
        [y],
        [numpy_helper.from_array(SLOPE, "slope")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 6)], ir_version=3)


def per_channel_prelu(x: np.ndarray) -> np.ndarray:
    slope = SLOPE.reshape(1, 3, 1, 1)
    return np.where(x >= 0, x, x * slope).astype(np.float32)


def test_onnx_converter_alone_leaves_an_opset6_prelu_slope_that_no_longer_broadcasts() -> None:
    onnxruntime = pytest.importorskip("onnxruntime")
    converted = onnx.version_converter.convert_version(prelu_opset6(), 17)
    (slope,) = converted.graph.initializer
    assert list(slope.dims) == [3]  # now broadcast against the last axis (5): refused
    session = onnxruntime.InferenceSession(
        converted.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    with pytest.raises(Exception, match="broadcast"):
        session.run(None, {"x": np.ones((1, 3, 4, 5), np.float32)})


def test_opset6_prelu_slopes_stay_per_channel() -> None:
    prepared, report = prepare_with_report(prelu_opset6(), opset=17)
    assert (report.opset_from, report.opset_to) == (6, 17)
    onnx.shape_inference.infer_shapes(prepared, check_type=True, strict_mode=True)
    onnxruntime = pytest.importorskip("onnxruntime")
    session = onnxruntime.InferenceSession(
        prepared.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    x = np.random.default_rng(0).standard_normal((1, 3, 4, 5), dtype=np.float32)
    (y,) = session.run(None, {"x": x})
    np.testing.assert_allclose(y, per_channel_prelu(x), rtol=1e-6)


@pytest.mark.skipif(
    reference.unavailable_reason("rtx") is not None, reason="TensorRT-RTX is not installed"
)
def test_tensorrt_rtx_builds_a_prepared_opset6_prelu(tmp_path: Path) -> None:
    source = tmp_path / "prelu.onnx"
    onnx.save(prelu_opset6(), str(source))
    info = reference.build(
        source, edition="rtx", output=tmp_path / "prelu.engine", prepare="always", progress=False
    )
    assert info.build_options["prepare"]["applied"]
    assert info.build_options["prepare"]["opset"][1] >= 7


def test_a_prepared_model_worse_than_the_one_given_is_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A shape step that records a shape the operator contradicts stands for any preparation
    # step gone wrong: the model as given passes strict inference, the prepared one does not.
    prepare_package = sys.modules["trtfast.prepare"]
    infer_shapes = prepare_package._infer_shapes

    def contradicting(proto: onnx.ModelProto, **options: Any) -> tuple[onnx.ModelProto, bool]:
        proto, symbolic = infer_shapes(proto, **options)
        proto.graph.output[0].type.tensor_type.shape.dim[3].dim_value = 6
        return proto, symbolic

    monkeypatch.setattr(prepare_package, "_infer_shapes", contradicting)
    onnx.shape_inference.infer_shapes(prelu_opset6(), check_type=True, strict_mode=True)
    with pytest.raises(trtfast.BuildError) as raised:
        prepare(prelu_opset6(), opset=17, fold_constants=False)
    message = str(raised.value)
    assert "preparation broke the model: onnx's strict shape inference refuses" in message
    assert "node name: prelu" in message
    assert "opset 6 -> 17" in message  # what preparation did
    assert "prepare='never'" in message


def test_a_model_that_fails_as_given_is_not_blamed_on_preparation() -> None:
    # Refused by strict inference before and after: preparation made nothing worse.
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "b"], ["y"], name="add")],
        "add",
        [x],
        [y],
        [numpy_helper.from_array(np.zeros(4, np.float32), "b")],  # (4,) never broadcasts to (2, 3)
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(onnx.shape_inference.InferenceError):
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    prepare(model, opset=17, fold_constants=False)
