"""ONNX-level preparation: loading, hashing and fp16/bf16 conversion, checked numerically with
onnxruntime (fp16) and onnx's reference evaluator (bf16, which onnxruntime's CPU kernels lack)."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
from pathlib import Path

import build_models
import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import trtfast
from trtfast import prepare as prepare_function
from trtfast.errors import BuildError, BuildOptionError
from trtfast.prepare import is_quantized, load, model_inputs, parser_input

LOW_TYPES = {"fp16": TensorProto.FLOAT16, "bf16": TensorProto.BFLOAT16}


def run_ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    return [np.asarray(value) for value in session.run(None, feeds)]


def run_reference(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return [np.asarray(value) for value in ReferenceEvaluator(model).run(None, feeds)]


def io_types(model: onnx.ModelProto) -> list[tuple[str, int]]:
    return [
        (value.name, value.type.tensor_type.elem_type)
        for value in (*model.graph.input, *model.graph.output)
    ]


def assert_converted(model: onnx.ModelProto, converted: onnx.ModelProto, precision: str) -> None:
    """IO names and types unchanged; every weight and every inner value in the target type."""
    low = LOW_TYPES[precision]
    assert io_types(converted) == io_types(model)
    for tensor in converted.graph.initializer:
        assert tensor.data_type != TensorProto.FLOAT, tensor.name
    inferred = onnx.shape_inference.infer_shapes(converted)
    boundary = {value.name for value in (*converted.graph.input, *converted.graph.output)}
    inner_float = [
        value.name
        for value in inferred.graph.value_info
        if value.name not in boundary and value.type.tensor_type.elem_type == TensorProto.FLOAT
    ]
    assert inner_float == []
    assert any(value.type.tensor_type.elem_type == low for value in inferred.graph.value_info)


def cnn_feeds(batch: int = 2) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"images": rng.random((batch, 3, 16, 16), dtype=np.float32)}


def mlp_feeds() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    mask = (rng.random((5, 8)) > 0.5).astype(np.int64)
    return {"features": rng.normal(size=(5, 32)).astype(np.float32), "mask": mask}


@pytest.mark.parametrize(
    ("make", "feeds"), [(build_models.cnn, cnn_feeds), (build_models.mlp, mlp_feeds)]
)
def test_fp16_matches_fp32_in_onnxruntime(make, feeds):
    model = make()
    converted = prepare_function(model, precision="fp16")
    assert_converted(model, converted, "fp16")
    # A consistent model: ONNX's strict type checking accepts it.
    onnx.shape_inference.infer_shapes(converted, check_type=True, strict_mode=True)
    expected = run_ort(model, feeds())
    actual = run_ort(converted, feeds())
    for want, got in zip(expected, actual, strict=True):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-2, atol=5e-3 * np.abs(want).max())
        # fp16 really ran: the results differ from fp32 by more than float32 rounding.
        assert not np.array_equal(got, want)


@pytest.mark.parametrize(
    ("make", "feeds"), [(build_models.cnn, cnn_feeds), (build_models.mlp, mlp_feeds)]
)
def test_bf16_matches_fp32_in_reference_evaluator(make, feeds):
    model = make()
    converted = prepare_function(model, precision="bf16")
    assert_converted(model, converted, "bf16")
    expected = run_reference(model, feeds())
    actual = run_reference(converted, feeds())
    for want, got in zip(expected, actual, strict=True):
        assert got.dtype == np.float32
        # bf16 keeps 8 significant bits: about 0.4% per rounding.
        np.testing.assert_allclose(got, want, rtol=5e-2, atol=2e-2 * np.abs(want).max())
        assert not np.array_equal(got, want)


def test_bf16_weights_round_to_nearest_even():
    import ml_dtypes

    model = build_models.mlp()
    converted = prepare_function(model, precision="bf16")
    original = numpy_helper.to_array(model.graph.initializer[0])
    weights = numpy_helper.to_array(converted.graph.initializer[0])
    assert weights.dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(weights, original.astype(ml_dtypes.bfloat16))


def test_fp32_without_preparation_returns_the_model_unchanged_and_never_modifies_the_caller():
    model = build_models.cnn()
    before = model.SerializeToString(deterministic=True)
    unprepared = prepare_function(model, fold_constants=False, infer_shapes=False)
    assert unprepared.SerializeToString(deterministic=True) == before
    prepare_function(model)
    prepare_function(model, precision="fp16")
    prepare_function(model, precision="bf16")
    assert model.SerializeToString(deterministic=True) == before


def test_fp16_saturates_weights_beyond_its_range(caplog):
    nodes = [helper.make_node("Mul", ["x", "scale"], ["y"])]
    scale = numpy_helper.from_array(np.array([1e6, -1e6, 2.0, np.inf], np.float32), "scale")
    model = build_models._model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
        [scale],
    )
    with caplog.at_level(logging.WARNING, logger="trtfast.prepare"):
        converted = prepare_function(model, precision="fp16")
    values = numpy_helper.to_array(converted.graph.initializer[0])
    np.testing.assert_array_equal(values, np.array([65504, -65504, 2, np.inf], np.float16))
    assert "2 weight values beyond float16's range" in caplog.text


def test_resize_scales_stay_float32():
    nodes = [helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="nearest")]
    scales = numpy_helper.from_array(np.array([1, 1, 1.5, 2.0], np.float32), "scales")
    model = build_models._model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 6, 8])],
        [scales],
    )
    converted = prepare_function(model, precision="fp16")
    assert converted.graph.initializer[0].data_type == TensorProto.FLOAT
    onnx.shape_inference.infer_shapes(converted, check_type=True, strict_mode=True)
    x = {"x": np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)}
    np.testing.assert_array_equal(run_reference(converted, x)[0], run_reference(model, x)[0])


def test_computed_resize_scales_are_cast_back_to_float32():
    # scales = Cast(shape) / sizes: a float value computed in the graph, converted, then cast
    # back.
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Cast", ["shape"], ["shape_float"], to=TensorProto.FLOAT),
        helper.make_node("Div", ["shape_float", "sizes"], ["scales"]),
        helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="nearest"),
    ]
    sizes = numpy_helper.from_array(np.array([1, 2, 2, 2], np.float32), "sizes")
    model = build_models._model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 8, 8])],
        [sizes],
    )
    converted = prepare_function(model, precision="fp16")
    onnx.shape_inference.infer_shapes(converted, check_type=True, strict_mode=True)
    x = {"x": np.arange(64, dtype=np.float32).reshape(1, 4, 4, 4)}
    np.testing.assert_array_equal(run_ort(converted, x)[0], run_ort(model, x)[0])


def test_range_runs_in_float32_between_casts():
    nodes = [
        helper.make_node("ReduceMax", ["x"], ["limit"], keepdims=0),
        helper.make_node("Range", ["start", "limit", "delta"], ["steps"]),
        helper.make_node("Mul", ["steps", "limit"], ["y"]),
    ]
    initializers = [
        numpy_helper.from_array(np.array(0.0, np.float32), "start"),
        numpy_helper.from_array(np.array(0.5, np.float32), "delta"),
    ]
    model = build_models._model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])],
        initializers,
    )
    converted = prepare_function(model, precision="fp16")
    onnx.shape_inference.infer_shapes(converted, check_type=True, strict_mode=True)
    range_node = next(node for node in converted.graph.node if node.op_type == "Range")
    # start and delta stay float32 initializers; the computed limit is cast back.
    assert {t.name: t.data_type for t in converted.graph.initializer} == {
        "start": TensorProto.FLOAT,
        "delta": TensorProto.FLOAT,
    }
    assert range_node.input[1] != "limit"
    x = {"x": np.array([1.0, 3.0, 2.0], np.float32)}
    np.testing.assert_allclose(run_ort(converted, x)[0], run_ort(model, x)[0], rtol=1e-3)


def test_subgraphs_constants_and_default_float_attributes_are_converted():
    # If branches read an outer weight; ConstantOfShape without a value makes float32 zeros;
    # RandomNormal without dtype is float32; Constant value_floats is float32.
    then_branch = helper.make_graph(
        [helper.make_node("Mul", ["xr", "w"], ["then_out"])],
        "then",
        [],
        [helper.make_tensor_value_info("then_out", TensorProto.FLOAT, [3])],
    )
    else_branch = helper.make_graph(
        [
            helper.make_node("Constant", [], ["offset"], value_floats=[0.25, 0.5, 0.75]),
            helper.make_node("Add", ["xr", "offset"], ["else_out"]),
        ],
        "else",
        [],
        [helper.make_tensor_value_info("else_out", TensorProto.FLOAT, [3])],
    )
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("ConstantOfShape", ["shape"], ["zeros"]),
        helper.make_node("Add", ["x", "zeros"], ["xz"]),
        helper.make_node("RandomNormal", [], ["noise"], shape=[3], scale=0.0),
        helper.make_node("Add", ["xz", "noise"], ["xr"]),
        helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0),
        helper.make_node("Greater", ["total", "zero"], ["positive"]),
        helper.make_node(
            "If", ["positive"], ["y"], then_branch=then_branch, else_branch=else_branch
        ),
    ]
    initializers = [
        numpy_helper.from_array(np.array([2.0, 3.0, 4.0], np.float32), "w"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
    ]
    model = build_models._model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])],
        initializers,
    )
    converted = prepare_function(model, precision="fp16")
    onnx.shape_inference.infer_shapes(converted, check_type=True, strict_mode=True)
    random = next(node for node in converted.graph.node if node.op_type == "RandomNormal")
    assert helper.get_node_attr_value(random, "dtype") == TensorProto.FLOAT16
    # onnxruntime has no float16 RandomNormal; the reference evaluator runs every node.
    for x in ([1.0, 2.0, 3.0], [-1.0, -2.0, -3.0]):
        feeds = {"x": np.array(x, np.float32)}
        np.testing.assert_allclose(
            run_reference(converted, feeds)[0], run_reference(model, feeds)[0]
        )


def test_local_functions_are_inlined_and_converted():
    function = helper.make_function(
        "local",
        "ScaleBy",
        ["a"],
        ["b"],
        [
            helper.make_node("Constant", [], ["k"], value_float=3.0),
            helper.make_node("Mul", ["a", "k"], ["b"]),
        ],
        [helper.make_opsetid("", build_models.OPSET)],
    )
    graph = helper.make_graph(
        [helper.make_node("ScaleBy", ["x"], ["y"], domain="local")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    model = helper.make_model(
        graph,
        functions=[function],
        opset_imports=[
            helper.make_opsetid("", build_models.OPSET),
            helper.make_opsetid("local", 1),
        ],
    )
    model.ir_version = 8  # what every onnxruntime release in use reads
    converted = prepare_function(model, precision="fp16")
    assert not converted.functions
    feeds = {"x": np.array([1.5, -2.0], np.float32)}
    np.testing.assert_array_equal(run_ort(converted, feeds)[0], [4.5, -6.0])


def test_output_that_is_an_input_and_non_float_outputs_keep_their_types():
    nodes = [helper.make_node("Shape", ["x"], ["shape"])]
    model = build_models._model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
            helper.make_tensor_value_info("shape", TensorProto.INT64, [2]),
        ],
    )
    converted = prepare_function(model, precision="bf16")
    assert io_types(converted) == io_types(model)
    feeds = {"x": np.ones((2, 3), np.float32)}
    x, shape = run_ort(converted, feeds)
    np.testing.assert_array_equal(x, feeds["x"])
    np.testing.assert_array_equal(shape, [2, 3])


def test_quantized_precisions_need_a_quantized_model():
    with pytest.raises(BuildError, match="precision 'int8' needs a quantized model"):
        prepare_function(build_models.cnn(), precision="int8")
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "scale"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "scale"], ["y"]),
    ]
    model = build_models._model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
        [numpy_helper.from_array(np.array(0.1, np.float32), "scale")],
    )
    # Quantized constants stay quantized: TensorRT reads the quantization from these nodes.
    weights = numpy_helper.from_array(np.array([0.5, -1.0, 2.0, 0.0], np.float32), "weights")
    constant_quantized = build_models._model(
        [
            helper.make_node("QuantizeLinear", ["weights", "scale"], ["q"]),
            helper.make_node("DequantizeLinear", ["q", "scale"], ["dq"]),
            helper.make_node("Mul", ["x", "dq"], ["y"]),
        ],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
        [weights, numpy_helper.from_array(np.array(0.1, np.float32), "scale")],
    )
    assert len(prepare_function(constant_quantized, precision="int8").graph.node) == 3
    assert is_quantized(model)
    assert prepare_function(model, precision="INT8", infer_shapes=False) == model


@pytest.mark.parametrize("precision", ["fp64", "half", "", 16])
def test_unknown_precision_is_refused(precision):
    with pytest.raises(BuildOptionError, match="precision must be one of fp32, fp16, bf16"):
        prepare_function(build_models.cnn(), precision=precision)


# --- loading ------------------------------------------------------------------------------


def save_with_external_weights(model: onnx.ModelProto, folder: Path) -> Path:
    path = folder / "model.onnx"
    copy = onnx.ModelProto()
    copy.CopyFrom(model)  # saving with external data rewrites the model it is given
    onnx.save_model(
        copy,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="model.weights",
        size_threshold=0,
    )
    return path


def test_path_bytes_and_proto_of_one_model_hash_alike(tmp_path):
    model = build_models.cnn()
    path = tmp_path / "cnn.onnx"
    onnx.save_model(model, str(path))
    data = path.read_bytes()
    from_path, from_bytes = load(path), load(data)
    assert from_path.sha256 == from_bytes.sha256 == hashlib.sha256(data).hexdigest()
    assert load(str(path)).sha256 == from_path.sha256
    assert load(model).sha256 == load(build_models.cnn()).sha256
    assert from_path.folder == str(tmp_path.resolve())
    assert from_bytes.folder is None
    assert load(build_models.mlp()).sha256 != load(model).sha256


def test_external_weights_are_left_on_disk_and_hashed(tmp_path):
    path = save_with_external_weights(build_models.cnn(), tmp_path)
    loaded = load(path)
    assert loaded.folder == str(tmp_path.resolve())
    assert all(t.data_location == TensorProto.EXTERNAL for t in loaded.proto.graph.initializer)
    assert not any(t.raw_data for t in loaded.proto.graph.initializer)
    # The parser gets the small graph and the folder to read the weights from.
    with parser_input(loaded, "fp32", convert=False) as (data, folder):
        assert folder == str(tmp_path.resolve())
        assert len(data) < os.path.getsize(tmp_path / "model.weights")
    before = loaded.sha256
    weights = tmp_path / "model.weights"
    changed = bytearray(weights.read_bytes())
    changed[0] ^= 1
    weights.write_bytes(bytes(changed))
    assert load(path).sha256 != before


def test_external_weights_convert_like_inline_ones(tmp_path):
    model = build_models.cnn()
    path = save_with_external_weights(model, tmp_path)
    from_path = prepare_function(path, precision="fp16")
    inline = prepare_function(model, precision="fp16")
    assert from_path.graph.initializer == inline.graph.initializer
    with parser_input(load(path), "fp16", convert=True) as (data, folder):
        assert folder is None
        np.testing.assert_array_equal(
            run_ort(onnx.load_model_from_string(data), cnn_feeds())[0],
            run_ort(inline, cnn_feeds())[0],
        )


def test_models_too_large_for_one_message_go_through_a_temporary_folder(monkeypatch):
    monkeypatch.setattr(sys.modules["trtfast.prepare._loading"], "_PROTOBUF_LIMIT", 1024)
    model = build_models.cnn()
    before = model.SerializeToString(deterministic=True)
    for convert in (True, False):
        with parser_input(load(model), "fp16", convert=convert) as (data, folder):
            assert folder is not None
            assert sorted(os.listdir(folder)) == ["weights.bin"]
            proto = onnx.load_model_from_string(data)
            assert all(t.data_location == TensorProto.EXTERNAL for t in proto.graph.initializer)
            onnx.load_external_data_for_model(proto, folder)
            expected = prepare_function(model, "fp16" if convert else "fp32")
            for got, want in zip(proto.graph.initializer, expected.graph.initializer, strict=True):
                assert got.name == want.name
                np.testing.assert_array_equal(
                    numpy_helper.to_array(got), numpy_helper.to_array(want)
                )
            np.testing.assert_array_equal(
                run_ort(proto, cnn_feeds())[0], run_ort(expected, cnn_feeds())[0]
            )
        assert not os.path.exists(folder)
    # The caller's model is left as it was; hashing agrees with itself.
    assert model.SerializeToString(deterministic=True) == before
    assert load(model).sha256 == load(build_models.cnn()).sha256


def test_missing_external_weights_are_named(tmp_path):
    path = save_with_external_weights(build_models.cnn(), tmp_path)
    (tmp_path / "model.weights").unlink()
    with pytest.raises(BuildError, match=r"keeps weights in 'model.weights', which is missing"):
        load(path)


def test_external_weights_without_a_path_are_refused(tmp_path):
    path = save_with_external_weights(build_models.cnn(), tmp_path)
    data = path.read_bytes()
    with pytest.raises(BuildError, match=r"pass the path of the \.onnx file instead"):
        load(data)
    with pytest.raises(BuildError, match=r"pass the path of the \.onnx file instead"):
        load(onnx.load(str(path), load_external_data=False))


def test_bad_model_arguments(tmp_path):
    with pytest.raises(BuildOptionError, match="does not exist"):
        load(tmp_path / "missing.onnx")
    with pytest.raises(BuildError, match="is not an ONNX model"):
        load(b"\xff\xff\xff not protobuf")
    with pytest.raises(BuildError, match="has no graph"):
        load(b"")
    with pytest.raises(
        BuildOptionError, match=r"model must be a path, bytes or an onnx\.ModelProto"
    ):
        load(3.5)  # type: ignore[arg-type]


def test_model_inputs_skip_initializers_and_read_dims():
    model = build_models.two_inputs()
    model.graph.input.append(helper.make_tensor_value_info("unknown", TensorProto.FLOAT, None))
    weight = numpy_helper.from_array(np.zeros(2, np.float32), "weight")
    model.graph.initializer.append(weight)
    model.graph.input.append(helper.make_tensor_value_info("weight", TensorProto.FLOAT, [2]))
    model.graph.input.append(helper.make_tensor_value_info("anon", TensorProto.FLOAT, [None, 3]))
    inputs = {i.name: i.dims for i in model_inputs(model)}
    assert inputs == {
        "tokens": ("batch", "seq"),
        "mask": ("batch", "seq"),
        "bias": (4,),
        "unknown": None,
        "anon": (None, 3),
    }


def test_prepare_without_onnx_says_what_to_install():
    script = (
        "import sys; sys.modules['onnx'] = None\n"
        "import trtfast\n"
        "try:\n"
        "    trtfast.prepare(b'')\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert "pip install 'trtfast[build]'" in result.stdout


def test_public_names():
    assert trtfast.prepare is prepare_function
    assert issubclass(trtfast.ProfileError, trtfast.BuildOptionError)
    assert issubclass(trtfast.BuildOptionError, trtfast.BuildError)
    assert issubclass(trtfast.BuildOptionError, ValueError)
