"""``_core.build_plan``: ONNX bytes + options -> TensorRT plan.

CPU tests cover what needs no GPU: the build without TensorRT headers, the lean runtime refusing
to build, and option checking. Tests marked ``tensorrt`` build real engines; they need a full
TensorRT library, the compiled adapter and a GPU, and are skipped with the reason otherwise.
"""

from __future__ import annotations

import importlib.util
import re
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import build_models
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import trtfast
from trtfast import (
    BuildError,
    BuildOptionError,
    TensorRTUnavailableError,
    TrtfastError,
    _core,
    tensorrt_library,
)

OPSET = 17
IR_VERSION = 8  # the highest every supported TensorRT parser reads


# --- models ---------------------------------------------------------------------------------------


def _model(graph: onnx.GraphProto) -> bytes:
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION
    )
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _weights(name: str, shape: tuple[int, ...], dtype: type[np.floating[Any]]) -> onnx.TensorProto:
    values = np.random.default_rng(len(name)).standard_normal(shape).astype(dtype) * 0.1
    return numpy_helper.from_array(values, name)


def mlp_graph(batch: int | str = 2, dtype: type[np.floating[Any]] = np.float32) -> onnx.GraphProto:
    """x [batch, 16] -> MatMul -> Add -> Relu -> MatMul -> Add -> y [batch, 4]."""
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h1"], name="fc1"),
        helper.make_node("Add", ["h1", "b1"], ["h2"], name="fc1_bias"),
        helper.make_node("Relu", ["h2"], ["h3"], name="relu"),
        helper.make_node("MatMul", ["h3", "w2"], ["h4"], name="fc2"),
        helper.make_node("Add", ["h4", "b2"], ["y"], name="fc2_bias"),
    ]
    return helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", elem, [batch, 16])],
        [helper.make_tensor_value_info("y", elem, [batch, 4])],
        [
            _weights("w1", (16, 32), dtype),
            _weights("b1", (32,), dtype),
            _weights("w2", (32, 4), dtype),
            _weights("b2", (4,), dtype),
        ],
    )


def mlp(batch: int | str = 2, dtype: type[np.floating[Any]] = np.float32) -> bytes:
    return _model(mlp_graph(batch, dtype))


def cnn(dtype: type[np.floating[Any]] = np.float32) -> bytes:
    """x [1, 3, 16, 16] -> Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm -> y [1, 10]."""
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    nodes = [
        helper.make_node("Conv", ["x", "k", "kb"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "w", "wb"], ["y"], name="classifier"),
    ]
    graph = helper.make_graph(
        nodes,
        "cnn",
        [helper.make_tensor_value_info("x", elem, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", elem, [1, 10])],
        [
            _weights("k", (8, 3, 3, 3), dtype),
            _weights("kb", (8,), dtype),
            _weights("w", (8, 10), dtype),
            _weights("wb", (10,), dtype),
        ],
    )
    return _model(graph)


def unsupported_op_model() -> bytes:
    """A graph whose second node is an operator no parser knows."""
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("NoSuchOperator", ["r"], ["y"], name="mystery", domain="trtfast.test"),
    ]
    graph = helper.make_graph(
        nodes,
        "unsupported",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("trtfast.test", 1)],
        ir_version=IR_VERSION,
    )
    return model.SerializeToString()


# --- what this machine has ------------------------------------------------------------------------


def _lean_library_path() -> Path | None:
    spec = importlib.util.find_spec("tensorrt_lean_libs")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations)))
    found = sorted(folder.glob("libnvinfer_lean.so.*"))
    return found[0] if found else None


@pytest.fixture
def lean_library() -> _core.TensorRTLibrary:
    path = _lean_library_path()
    if path is None:
        pytest.skip("the tensorrt_lean_libs package (test extra) is not installed")
    try:
        return _core.open_tensorrt_library(str(path), "tensorrt_lean_libs")
    except TensorRTUnavailableError as error:
        pytest.skip(f"the lean runtime cannot be loaded with this build: {error}")


def has_adapter(library: _core.TensorRTLibrary) -> bool:
    return str(library.major) in trtfast.build_info()["tensorrt_adapters"]


@pytest.fixture
def lean_adapter_library(lean_library: _core.TensorRTLibrary) -> _core.TensorRTLibrary:
    """The lean runtime, where this trtfast has an adapter for its major: build_plan reaches the
    adapter's checks."""
    if not has_adapter(lean_library):
        pytest.skip(f"this trtfast has no adapter for TensorRT {lean_library.major}")
    return lean_library


@pytest.fixture
def lean_library_without_adapter(lean_library: _core.TensorRTLibrary) -> _core.TensorRTLibrary:
    if has_adapter(lean_library):
        pytest.skip(f"this trtfast has an adapter for TensorRT {lean_library.major}")
    return lean_library


# Without an adapter for the library's major (or any), every builder call says how to get one.
NO_ADAPTER = r"built without TensorRT (headers|\d+ support)"


def _full_tensorrt_skip_reason() -> str | None:
    if not _core.tensorrt_adapter_available():
        return "this trtfast was built without TensorRT headers"
    if _core.cuda.device_count() == 0:
        return f"no usable CUDA device: {_core.cuda.unavailable_reason()}"
    try:
        library = tensorrt_library()
    except TrtfastError as error:
        return f"no TensorRT library: {str(error).splitlines()[0]}"
    if not has_adapter(library):
        return f"this trtfast has no adapter for TensorRT {library.major}: {library.path}"
    if library.kind != "full":
        return f"the TensorRT library found is {library.kind}, not full: {library.path}"
    return None


@pytest.fixture
def full_library() -> _core.TensorRTLibrary:
    reason = _full_tensorrt_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    return tensorrt_library()


def build(
    library: _core.TensorRTLibrary,
    model: bytes,
    progress: Callable[[str, str, int, int], object] | None = None,
    **options: Any,
) -> dict[str, Any]:
    return _core.build_plan(library, model, options, progress)  # type: ignore[no-any-return]


def deserialized_io_count(library: _core.TensorRTLibrary, plan: bytes) -> int:
    return int(_core.Runtime(library).deserialize(plan).num_io_tensors)


# --- CPU: no adapter, lean runtime, options -------------------------------------------------------


def test_without_an_adapter_build_plan_says_how_to_get_one(
    lean_library_without_adapter: _core.TensorRTLibrary,
) -> None:
    with pytest.raises(TensorRTUnavailableError, match=NO_ADAPTER):
        build(lean_library_without_adapter, mlp())


def test_lean_library_cannot_build(lean_adapter_library: _core.TensorRTLibrary) -> None:
    lean_library = lean_adapter_library
    assert lean_library.kind == "lean"
    with pytest.raises(TensorRTUnavailableError) as raised:
        build(lean_library, mlp())
    message = str(raised.value)
    assert "lean runtime" in message
    assert "full" in message
    assert "pip install tensorrt-cu13" in message
    assert lean_library.path in message


@pytest.mark.parametrize(
    ("options", "error", "pattern"),
    [
        ({"precison": "fp16"}, ValueError, "unknown build option 'precison'"),
        ({"precision": "fp64"}, ValueError, "'precision' must be 'fp32', 'fp16'.*not 'fp64'"),
        ({"precision": 16}, ValueError, "not 16"),
        ({"strongly_typed": 1}, TypeError, "'strongly_typed' must be a bool, not int"),
        ({"workspace": 0}, ValueError, "'workspace' must be a positive number of bytes"),
        ({"workspace": "1GiB"}, TypeError, "'workspace' must be an int, not str"),
        ({"timing_cache": "cache"}, TypeError, "'timing_cache' must be bytes, not str"),
        ({"hardware_compatibility": "turing"}, ValueError, "not 'turing'"),
        ({"plugins": "libplugin.so"}, TypeError, "'plugins' must be a list or tuple"),
        ({"plugins": [3]}, TypeError, "must be a path, not int"),
        ({"profiles": {"x": [[1], [1], [1]]}}, TypeError, "'profiles' must be a list or tuple"),
        ({"profiles": [[1, 2]]}, TypeError, "optimization profile 0 must be a dict"),
        ({"profiles": [{"x": [[1, 16], [2, 16]]}]}, ValueError, "needs \\[min shape, opt shape"),
        ({"profiles": [{"x": [[1, 16], [2, 16], [2, "16"]]}]}, TypeError, "max shape"),
        ({"profiles": [{"x": [[1, 16], [2, 16], [True, 16]]}]}, TypeError, "must be an int"),
        ({"profiles": [{"k": {"value": [[1], [1], [1]]}}]}, ValueError, "must be {'values'"),
        ({"profiles": [{"k": {"values": [[1], [2]]}}]}, ValueError, "needs \\[min values"),
    ],
)
def test_bad_options_are_named(
    lean_library: _core.TensorRTLibrary, options: dict[str, Any], error: type, pattern: str
) -> None:
    with pytest.raises(error, match=pattern):
        _core.build_plan(lean_library, mlp(), options, None)


def test_numpy_integers_are_accepted_as_dimensions(lean_library: _core.TensorRTLibrary) -> None:
    # Option conversion succeeds; what fails is the library (no adapter, or a lean one).
    shapes = [np.array([1, 16]), np.array([2, 16]), np.array([4, 16])]
    profiles = [{"x": [[np.int64(v) for v in shape] for shape in shapes]}]
    with pytest.raises(TensorRTUnavailableError):
        _core.build_plan(lean_library, mlp(), {"profiles": profiles}, None)


def test_progress_must_be_callable(lean_library: _core.TensorRTLibrary) -> None:
    with pytest.raises(TypeError, match="progress must be callable or None, not str"):
        _core.build_plan(lean_library, mlp(), {}, "print")  # type: ignore[arg-type]


def test_empty_model_is_refused(lean_library: _core.TensorRTLibrary) -> None:
    with pytest.raises(ValueError, match="onnx is empty"):
        _core.build_plan(lean_library, b"", {}, None)


@pytest.mark.parametrize(
    ("options", "error", "pattern"),
    [
        ({"exclude_lean_runtime": True}, ValueError, "set version_compatible too"),
        ({"optimization_level": -1}, ValueError, "must not be negative"),
        ({"model_dir": "/no/such/folder"}, ValueError, "model_dir /no/such/folder is not a folder"),
        ({"plugins": ["/no/such/libplugin.so"]}, BuildError, "libplugin.so does not exist"),
    ],
)
def test_option_mistakes_are_named_before_tensorrt_is_used(
    lean_adapter_library: _core.TensorRTLibrary, options: dict[str, Any], error: type, pattern: str
) -> None:
    with pytest.raises(error, match=pattern):
        _core.build_plan(lean_adapter_library, mlp(), options, None)


@pytest.mark.parametrize("model", [bytearray, memoryview], ids=["bytearray", "memoryview"])
def test_any_bytes_like_model_is_accepted(
    lean_library: _core.TensorRTLibrary, model: Callable[[bytes], Any]
) -> None:
    # Accepted as a model; what fails is the library (no adapter, or a lean one).
    with pytest.raises(TensorRTUnavailableError):
        _core.build_plan(lean_library, model(mlp()), {}, None)


def test_a_model_that_is_not_contiguous_bytes_is_refused(
    lean_library: _core.TensorRTLibrary,
) -> None:
    strided = memoryview(np.frombuffer(mlp(), np.uint8)[::2])
    with pytest.raises(TypeError, match="onnx must be bytes-like"):
        _core.build_plan(lean_library, strided, {}, None)


def test_fp8_with_ampere_plus_is_refused_before_tensorrt_on_10(
    lean_adapter_library: _core.TensorRTLibrary,
) -> None:
    if lean_adapter_library.major != 10:
        pytest.skip(
            "the fp8 and ampere_plus conflict is TensorRT 10's (NvInfer.h, BuilderFlag::kFP8); "
            f"the lean runtime here is TensorRT {lean_adapter_library.version}"
        )
    options = {"precision": "fp8", "hardware_compatibility": "ampere_plus"}
    with pytest.raises(BuildOptionError, match="precision='fp8' and hardware_compatibility"):
        _core.build_plan(lean_adapter_library, mlp(), options, None)


@pytest.mark.tensorrt
def test_same_compute_capability_needs_tensorrt_10_9(full_library: _core.TensorRTLibrary) -> None:
    # NvInfer.h has HardwareCompatibilityLevel::kSAME_COMPUTE_CAPABILITY from v10.9 on.
    options = {"hardware_compatibility": "same_compute_capability"}
    major, minor = (int(part) for part in full_library.version.split(".")[:2])
    if (major, minor) < (10, 9):
        with pytest.raises(BuildOptionError, match=r"needs TensorRT 10\.9 or later"):
            _core.build_plan(full_library, mlp(), options, None)
    else:
        assert _core.build_plan(full_library, mlp(), options, None)["plan"]


# --- TensorRT: real builds ------------------------------------------------------------------------


@pytest.mark.tensorrt
def test_mlp_fp32(full_library: _core.TensorRTLibrary) -> None:
    events: list[tuple[str, str, int, int]] = []

    def progress(event: str, phase: str, step: int, total: int) -> bool:
        events.append((event, phase, step, total))
        return True

    result = build(full_library, mlp(), progress)
    assert isinstance(result["plan"], bytes) and len(result["plan"]) > 0
    assert isinstance(result["timing_cache"], bytes) and len(result["timing_cache"]) > 0
    assert result["tensorrt_version"] == full_library.version
    assert result["inputs"] == [
        {"name": "x", "dtype": "float32", "shape": (2, 16), "is_input": True}
    ]
    assert result["outputs"] == [
        {"name": "y", "dtype": "float32", "shape": (2, 4), "is_input": False}
    ]
    assert deserialized_io_count(full_library, result["plan"]) == 2
    starts = [e for e in events if e[0] == "start"]
    ends = [e for e in events if e[0] == "end"]
    assert starts, "TensorRT reported no phase"
    assert len(starts) == len(ends)
    for event, _phase, step, total in events:
        assert 0 <= step <= total, event


@pytest.mark.tensorrt
@pytest.mark.parametrize(
    ("model", "options", "dtype"),
    [
        pytest.param(cnn, {}, "float32", id="cnn-fp32"),
        pytest.param(
            lambda: cnn(np.float16),
            {"strongly_typed": True, "precision": "fp16"},
            "float16",
            id="cnn-fp16-model",
        ),
        pytest.param(
            lambda: mlp(dtype=np.float16),
            {"strongly_typed": True, "precision": "fp16"},
            "float16",
            id="mlp-fp16-model",
        ),
    ],
)
def test_precisions(
    full_library: _core.TensorRTLibrary,
    model: Callable[[], bytes],
    options: dict[str, Any],
    dtype: str,
) -> None:
    result = build(full_library, model(), **options)
    assert [spec["dtype"] for spec in result["inputs"] + result["outputs"]] == [dtype, dtype]
    assert deserialized_io_count(full_library, result["plan"]) == 2


@pytest.mark.tensorrt
def test_fp16_flag_on_an_fp32_model(full_library: _core.TensorRTLibrary) -> None:
    if full_library.major >= 11:
        # No builder flag exists: an unconverted model would silently give an fp32 engine.
        with pytest.raises(BuildError, match=r"fp16 was asked for.*no float16 tensor"):
            build(full_library, cnn(), precision="fp16")
    else:
        result = build(full_library, cnn(), precision="fp16")
        assert result["inputs"][0]["dtype"] == "float32"  # IO keeps the model's types
        assert deserialized_io_count(full_library, result["plan"]) == 2


@pytest.mark.tensorrt
def test_strongly_typed_fp32_model_cannot_be_fp16(full_library: _core.TensorRTLibrary) -> None:
    with pytest.raises(BuildError, match="no float16 tensor, so the engine would run in fp32"):
        build(full_library, mlp(), precision="fp16", strongly_typed=True)


@pytest.mark.tensorrt
def test_dynamic_batch_with_a_profile(full_library: _core.TensorRTLibrary) -> None:
    profiles = [{"x": [[1, 16], [4, 16], [8, 16]]}, {"x": [(16, 16), (32, 16), (64, 16)]}]
    result = build(full_library, mlp("N"), profiles=profiles, workspace=1 << 28)
    assert result["inputs"][0]["shape"] == (-1, 16)
    assert result["outputs"][0]["shape"] == (-1, 4)
    assert deserialized_io_count(full_library, result["plan"]) == 2


@pytest.mark.tensorrt
def test_dynamic_input_without_a_profile_is_named(full_library: _core.TensorRTLibrary) -> None:
    with pytest.raises(BuildError, match=r"input 'x' has the dynamic shape \(-1, 16\)"):
        build(full_library, mlp("N"))


@pytest.mark.tensorrt
def test_profile_for_a_missing_input_is_named(full_library: _core.TensorRTLibrary) -> None:
    profiles = [{"x": [[1, 16], [4, 16], [8, 16]], "images": [[1, 3], [1, 3], [1, 3]]}]
    with pytest.raises(BuildError, match=r"'images', which is not an input.*'x' \(-1, 16\)"):
        build(full_library, mlp("N"), profiles=profiles)


@pytest.mark.tensorrt
def test_profile_that_contradicts_the_model_is_named(full_library: _core.TensorRTLibrary) -> None:
    profiles = [{"x": [[1, 16], [4, 8], [8, 16]]}]
    with pytest.raises(BuildError, match=r"input 'x': the opt shape \(4, 8\).*dimension 1"):
        build(full_library, mlp("N"), profiles=profiles)


@pytest.mark.tensorrt
def test_progress_returning_false_cancels(full_library: _core.TensorRTLibrary) -> None:
    calls: list[str] = []

    def progress(event: str, phase: str, step: int, total: int) -> bool:
        calls.append(event)
        return False

    with pytest.raises(BuildError, match="cancelled"):
        build(full_library, cnn(), progress)
    assert calls == ["start"], "the callback was called after it asked to cancel"


@pytest.mark.tensorrt
def test_ctrl_c_cancels_the_build(full_library: _core.TensorRTLibrary) -> None:
    calls: list[str] = []

    def progress(event: str, phase: str, step: int, total: int) -> bool:
        calls.append(event)
        signal.raise_signal(signal.SIGINT)  # as if Ctrl-C were pressed during the build
        return True

    with pytest.raises(KeyboardInterrupt):
        build(full_library, cnn(), progress)
    assert len(calls) == 1


@pytest.mark.tensorrt
def test_exception_in_progress_cancels_and_is_raised(full_library: _core.TensorRTLibrary) -> None:
    class Stop(Exception):
        pass

    def progress(event: str, phase: str, step: int, total: int) -> bool:
        raise Stop(phase)

    with pytest.raises(Stop):
        build(full_library, cnn(), progress)


@pytest.mark.tensorrt
def test_parser_errors_name_the_node(full_library: _core.TensorRTLibrary) -> None:
    with pytest.raises(BuildError, match="ONNX parser rejected the model") as raised:
        build(full_library, unsupported_op_model())
    errors = raised.value.parser_errors
    assert errors, "no parser error was attached"
    mystery = [error for error in errors if error["op_type"] == "NoSuchOperator"]
    assert mystery, errors
    assert mystery[0]["node_name"] == "mystery"
    assert mystery[0]["node_index"] == 1
    assert mystery[0]["message"]
    assert re.search(r"node 1 'mystery' \(NoSuchOperator\)", str(raised.value))


@pytest.mark.tensorrt
def test_timing_cache_round_trip_and_stale_cache(full_library: _core.TensorRTLibrary) -> None:
    first = build(full_library, cnn())
    second = build(full_library, cnn(), timing_cache=first["timing_cache"])
    assert len(second["timing_cache"]) >= len(first["timing_cache"])
    # A cache from elsewhere must not fail the build: a new one replaces it.
    rebuilt = build(full_library, cnn(), timing_cache=b"not a timing cache")
    assert len(rebuilt["plan"]) > 0


@pytest.mark.tensorrt
def test_timing_caches_combine(full_library: _core.TensorRTLibrary) -> None:
    from_mlp = build(full_library, mlp())["timing_cache"]
    from_cnn = build(full_library, cnn())["timing_cache"]
    combined = _core.combine_timing_caches(full_library, [from_mlp, from_cnn, b"stale"])
    assert len(combined) >= max(len(from_mlp), len(from_cnn))
    # The combined cache is one TensorRT accepts for the next build.
    assert len(build(full_library, cnn(), timing_cache=combined)["plan"]) > 0


def test_without_an_adapter_timing_caches_cannot_combine(
    lean_library_without_adapter: _core.TensorRTLibrary,
) -> None:
    with pytest.raises(TensorRTUnavailableError, match=NO_ADAPTER):
        _core.combine_timing_caches(lean_library_without_adapter, [b"a", b"b"])


@pytest.mark.tensorrt
def test_external_data_is_read_from_model_dir(
    full_library: _core.TensorRTLibrary, tmp_path: Path
) -> None:
    model = onnx.load_from_string(mlp())
    onnx.save_model(
        model,
        tmp_path / "model.onnx",
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="weights.bin",
        size_threshold=0,
    )
    assert (tmp_path / "weights.bin").stat().st_size > 0
    result = build(full_library, (tmp_path / "model.onnx").read_bytes(), model_dir=str(tmp_path))
    assert deserialized_io_count(full_library, result["plan"]) == 2


@pytest.mark.tensorrt
def test_version_compatible_build(full_library: _core.TensorRTLibrary) -> None:
    result = build(full_library, mlp(), version_compatible=True)
    assert len(result["plan"]) > 0


def efficient_nms() -> bytes:
    """TensorRT's standard EfficientNMS_TRT plugin as an ONNX node: builds only where
    libnvinfer_plugin's plugins are registered."""
    boxes = helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 100, 4])
    scores = helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 100, 3])
    outputs = [
        helper.make_tensor_value_info("num_detections", TensorProto.INT32, [1, 1]),
        helper.make_tensor_value_info("detection_boxes", TensorProto.FLOAT, [1, 10, 4]),
        helper.make_tensor_value_info("detection_scores", TensorProto.FLOAT, [1, 10]),
        helper.make_tensor_value_info("detection_classes", TensorProto.INT32, [1, 10]),
    ]
    node = helper.make_node(
        "EfficientNMS_TRT",
        ["boxes", "scores"],
        [o.name for o in outputs],
        name="nms",
        plugin_version="1",
        background_class=-1,
        max_output_boxes=10,
        score_threshold=0.25,
        iou_threshold=0.5,
        score_activation=0,
        box_coding=0,
    )
    graph = helper.make_graph([node], "nms", [boxes, scores], outputs)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION
    )
    return model.SerializeToString()


@pytest.mark.tensorrt
def test_standard_plugins_are_registered_for_builds_and_loads(
    full_library: _core.TensorRTLibrary,
) -> None:
    result = build(full_library, efficient_nms())
    assert deserialized_io_count(full_library, result["plan"]) == 6


@pytest.mark.tensorrt
def test_a_workspace_tensorrt_refuses_is_a_build_option_error(
    full_library: _core.TensorRTLibrary,
) -> None:
    with pytest.raises(BuildOptionError, match="workspace"):
        build(full_library, mlp(), workspace=1 << 62)


def reshape_by_input() -> bytes:
    return build_models.reshape_by_input().SerializeToString()


@pytest.mark.tensorrt
def test_shape_tensor_inputs_get_value_ranges_in_every_profile(
    full_library: _core.TensorRTLibrary,
) -> None:
    x = [[1, 16], [4, 16], [8, 16]]
    values = {"values": [[1, -1], [4, -1], [8, -1]]}
    result = build(full_library, reshape_by_input(), profiles=[{"x": x, "target": values}])
    assert deserialized_io_count(full_library, result["plan"]) == 3
    with pytest.raises(BuildError, match="'target': shapes are given, but it is a shape tensor"):
        build(full_library, reshape_by_input(), profiles=[{"x": x, "target": x}])
    with pytest.raises(BuildError, match="gives no values for the shape-tensor input 'target'"):
        build(full_library, reshape_by_input(), profiles=[{"x": x}])
