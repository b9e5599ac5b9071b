"""Sessions without a GPU: the API's shape, input checks (the same code sessions run), stream
arguments and engine compatibility checks."""

from __future__ import annotations

import dataclasses
import inspect
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_build import H100_SXM

import trtfast
from trtfast import _core, reference
from trtfast.engine import _stream_handle, check_compatibility


def _signature(**kwargs: Any) -> Any:
    """x: float32 [-1, 4] with two profiles (batch 1..8 and 9..32); bias: float32 [4]."""
    inputs = [
        ("x", "float32", (-1, 4), [((1, 4), (4, 4), (8, 4)), ((9, 4), (16, 4), (32, 4))]),
        ("bias", "float32", (4,)),
    ]
    outputs = [("y", "float32", (-1, 4))]
    return _core.Signature(inputs, outputs, 2, **kwargs)


def _x(batch: int, dtype: Any = np.float32) -> np.ndarray:
    return np.zeros((batch, 4), dtype=dtype)


BIAS = np.zeros(4, dtype=np.float32)


def test_public_api() -> None:
    assert trtfast.Engine is trtfast.engine.Engine
    assert trtfast.Session is trtfast.engine.Session
    assert issubclass(trtfast.Session, _core.Session)
    assert trtfast.DeviceArray is _core.DeviceArray
    for name in (
        "__cuda_array_interface__",
        "__dlpack__",
        "__dlpack_device__",
        "numpy",
        "__array__",
    ):
        assert hasattr(trtfast.DeviceArray, name)
    parameters = inspect.signature(trtfast.Engine.session).parameters
    assert list(parameters)[1:] == [
        "cuda_graph",
        "sync",
        "stream",
        "graph_cache_size",
        "workers",
        "torch_results",
        "outputs",
    ]
    assert parameters["torch_results"].default is True
    assert parameters["cuda_graph"].default is True
    assert parameters["sync"].default == "spin"
    assert parameters["stream"].default is None
    for method in ("run", "__call__", "bind", "unbind", "submit", "close"):
        assert callable(getattr(trtfast.Session, method))
    assert callable(trtfast.Engine.load)


def test_testing_module_is_not_public() -> None:
    assert "_testing" not in trtfast.__all__
    assert not hasattr(trtfast, "Signature")


def test_signature_describes_inputs_and_outputs() -> None:
    signature = _signature()
    assert signature.num_profiles == 2
    x, bias = signature.inputs
    assert x == {
        "name": "x",
        "dtype": "float32",
        "shape": (-1, 4),
        "is_input": True,
        "profiles": (((1, 4), (4, 4), (8, 4)), ((9, 4), (16, 4), (32, 4))),
    }
    # A static input's range is its shape, in every profile.
    assert bias["profiles"] == (((4,), (4,), (4,)), ((4,), (4,), (4,)))
    assert signature.outputs[0]["is_input"] is False


def test_signature_refuses_inconsistent_ranges() -> None:
    with pytest.raises(trtfast.TrtfastError, match="2 profile ranges for an engine of 3"):
        _core.Signature(
            [("x", "float32", (-1,), [((1,), (1,), (2,)), ((3,), (3,), (4,))])],
            [("y", "float32", (-1,))],
            3,
        )
    with pytest.raises(trtfast.InputError, match="unknown dtype 'float128'"):
        _core.Signature([("x", "float128", (1,))], [], 1)


def test_profile_selection() -> None:
    signature = _signature()
    assert signature.check({"x": _x(1), "bias": BIAS}) == 0
    assert signature.check({"x": _x(8), "bias": BIAS}) == 0
    assert signature.check({"x": _x(9), "bias": BIAS}) == 1
    assert signature.check({"x": _x(32), "bias": BIAS}) == 1


def test_shape_outside_every_profile_names_input_and_ranges() -> None:
    with pytest.raises(trtfast.InputError) as raised:
        _signature().check({"x": _x(33), "bias": BIAS})
    message = str(raised.value)
    assert "outside every optimization profile" in message
    assert "profile 0: input 'x' has shape [33, 4], allowed [1, 4] to [8, 4]" in message
    assert "profile 1: input 'x' has shape [33, 4], allowed [9, 4] to [32, 4]" in message


def test_single_profile_message() -> None:
    signature = _core.Signature(
        [("x", "float32", (-1, 2), [((1, 2), (2, 2), (4, 2))])], [("y", "float32", (-1, 2))], 1
    )
    with pytest.raises(
        trtfast.InputError,
        match=r"outside the engine's optimization profile: "
        r"input 'x' has shape \[5, 2\], allowed \[1, 2\] to \[4, 2\]",
    ):
        signature.check({"x": np.zeros((5, 2), np.float32)})


def test_all_inputs_must_fit_one_profile() -> None:
    signature = _core.Signature(
        [
            ("a", "float32", (-1,), [((1,), (1,), (4,)), ((5,), (5,), (8,))]),
            ("b", "float32", (-1,), [((1,), (1,), (4,)), ((5,), (5,), (8,))]),
        ],
        [("y", "float32", (-1,))],
        2,
    )
    assert signature.check({"a": np.zeros(6, np.float32), "b": np.zeros(7, np.float32)}) == 1
    with pytest.raises(trtfast.InputError) as raised:
        signature.check({"a": np.zeros(2, np.float32), "b": np.zeros(7, np.float32)})
    assert "profile 0: input 'b' has shape [7]" in str(raised.value)
    assert "profile 1: input 'a' has shape [2]" in str(raised.value)


def test_unknown_input_lists_the_expected_ones() -> None:
    with pytest.raises(trtfast.InputError) as raised:
        _signature().check({"x": _x(1), "bias": BIAS, "z": BIAS})
    assert str(raised.value) == (
        "unknown input 'z'; the engine's inputs are 'x' (float32, [-1, 4]), 'bias' (float32, [4])"
    )


def test_missing_inputs_are_named() -> None:
    with pytest.raises(trtfast.InputError, match=r"^missing input 'bias' \(float32, \[4\]\)$"):
        _signature().check({"x": _x(1)})
    with pytest.raises(trtfast.InputError, match=r"missing inputs 'x' .*, 'bias'"):
        _signature().check({})


def test_dtype_mismatch_names_expected_and_received() -> None:
    with pytest.raises(
        trtfast.InputError, match="input 'x': expected dtype float32, received numpy float64"
    ):
        _signature().check({"x": _x(2, np.float64), "bias": BIAS})
    # A known dtype of the wrong kind is named by trtfast's name.
    with pytest.raises(
        trtfast.InputError, match="input 'x': expected dtype float32, received int32"
    ):
        _signature().check({"x": _x(2, np.int32), "bias": BIAS})


def test_byte_swapped_arrays_are_refused() -> None:
    with pytest.raises(trtfast.InputError, match="expected dtype float32, received numpy >f4"):
        _signature().check({"x": _x(2, np.dtype(">f4")), "bias": BIAS})


def test_lists_are_read_as_numpy() -> None:
    # Python floats are float64: a clear error rather than a silent conversion.
    with pytest.raises(trtfast.InputError, match="expected dtype float32, received numpy float64"):
        _signature().check({"x": [[0.0] * 4], "bias": BIAS})


def test_rank_and_fixed_dimensions() -> None:
    with pytest.raises(
        trtfast.InputError,
        match=r"input 'x': expected 2 dimensions \[-1, 4\], received 3 dimensions \[2, 4, 1\]",
    ):
        _signature().check({"x": np.zeros((2, 4, 1), np.float32), "bias": BIAS})
    with pytest.raises(
        trtfast.InputError,
        match=r"input 'x': expected shape \[-1, 4\], received \[2, 5\] \(dimension 1 must be 4\)",
    ):
        _signature().check({"x": np.zeros((2, 5), np.float32), "bias": BIAS})
    with pytest.raises(
        trtfast.InputError, match=r"expected 1 dimension \[4\], received 9 dimensions"
    ):
        _signature().check({"x": _x(1), "bias": np.zeros((1,) * 9, np.float32)})


def test_strided_host_arrays_are_accepted() -> None:
    # Host arrays are staged, contiguously, whatever their layout.
    wide = np.zeros((3, 8), np.float32)
    assert _signature().check({"x": wide[:, ::2], "bias": BIAS}) == 0
    assert _signature().check({"x": np.asfortranarray(_x(3)), "bias": BIAS}) == 0


def test_zero_size_tensors() -> None:
    signature = _core.Signature(
        [("x", "float32", (-1, 4), [((0, 4), (2, 4), (8, 4))])], [("y", "float32", (-1, 4))], 1
    )
    assert signature.check({"x": np.zeros((0, 4), np.float32)}) == 0
    with pytest.raises(trtfast.InputError, match=r"shape \[0, 4\], allowed \[1, 4\]"):
        _signature().check({"x": _x(0), "bias": BIAS})


def test_inputs_as_any_mapping() -> None:
    class Inputs(dict[str, Any]):
        pass

    assert _signature().check(Inputs(x=_x(9), bias=BIAS)) == 1


def test_reduced_precision_dtypes_are_named() -> None:
    signature = _core.Signature(
        [("x", "bfloat16", (2,)), ("q", "float8_e4m3fn", (2,))], [("y", "float32", (2,))], 1
    )
    assert [t["dtype"] for t in signature.inputs] == ["bfloat16", "float8_e4m3fn"]
    with pytest.raises(trtfast.InputError, match="input 'x': expected dtype bfloat16"):
        signature.check({"x": np.zeros(2, np.float32), "q": np.zeros(2, np.uint8)})


class _ProtocolStream:
    def __cuda_stream__(self) -> tuple[int, int]:
        return (0, 0x1234)


class _TorchLikeStream:
    cuda_stream = 0x5678


class _CupyLikeStream:
    ptr = 0x9ABC


def test_stream_arguments() -> None:
    assert _stream_handle(None) is None
    assert _stream_handle(0) == 0
    assert _stream_handle(0xDEAD) == 0xDEAD
    assert _stream_handle(_ProtocolStream()) == 0x1234
    assert _stream_handle(_TorchLikeStream()) == 0x5678
    assert _stream_handle(_CupyLikeStream()) == 0x9ABC
    with pytest.raises(TypeError, match="stream must be None, an integer handle"):
        _stream_handle("default")
    with pytest.raises(TypeError):
        _stream_handle(True)
    with pytest.raises(ValueError, match="not negative"):
        _stream_handle(-1)


def _testing_engine() -> Any:
    testing = pytest.importorskip("trtfast._testing", reason="trtfast._testing was not built")
    return trtfast.Engine(testing.affine())


def test_session_options_are_checked_before_any_cuda_call() -> None:
    engine = _testing_engine()
    with pytest.raises(ValueError, match="sync must be 'spin' or 'blocking', not 'fast'"):
        engine.session(sync="fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="graph_cache_size must be >= 0"):
        engine.session(graph_cache_size=-1)
    with pytest.raises(ValueError, match="workers must be >= 1"):
        engine.session(workers=0)


def test_engines_with_non_linear_io_formats_are_refused() -> None:
    # Sessions size and copy tensors as row-major: an engine whose IO uses TensorRT's kHWC8 (or
    # any format but kLINEAR) in any profile is refused when its signature is read (Engine.load).
    testing = pytest.importorskip("trtfast._testing", reason="trtfast._testing was not built")
    with pytest.raises(
        trtfast.EngineCompatibilityError,
        match=r"tensor 'x' uses TensorRT's format kHWC8 in profile 0;.*Rebuild the engine with "
        r"linear IO",
    ):
        testing.affine(io_format="kHWC8")


def test_shape_tensor_and_aliased_output_engines_describe_their_io() -> None:
    testing = pytest.importorskip("trtfast._testing", reason="trtfast._testing was not built")
    columns = trtfast.Engine(testing.take_columns(features=4))
    assert [(t.name, t.dtype, t.shape) for t in columns.inputs] == [
        ("x", "float32", (-1, 4)),
        ("k", "int64", (1,)),
    ]
    assert [(t.name, t.shape) for t in columns.outputs] == [("y", (-1, -1))]
    signature = columns.core.signature
    x = np.zeros((3, 4), np.float32)
    assert signature.check({"x": x, "k": np.array([4], np.int64)}) == 0
    with pytest.raises(
        trtfast.InputError,
        match=r"outside the engine's optimization profile: input 'k' has values \[5\], "
        r"allowed \[1\] to \[4\]",
    ):
        signature.check({"x": x, "k": np.array([5], np.int64)})
    cache = trtfast.Engine(testing.accumulate(features=4))
    assert [t.name for t in cache.inputs] == ["cache", "update"]
    assert [t.name for t in cache.outputs] == ["cache_out"]


@pytest.mark.skipif(_core.cuda.device_count() > 0, reason="checks the machine without a GPU")
def test_session_without_gpu_raises_cuda_error() -> None:
    engine = _testing_engine()
    with pytest.raises(trtfast.CudaError, match="CUDA device 0 does not exist"):
        engine.session()
    with pytest.raises(trtfast.CudaError):
        engine(x=np.zeros((1, 4), np.float32))


# --- Engine compatibility, checked before TensorRT sees a plan -----------------------------------


def _info(**changes: Any) -> Any:
    engine_file = pytest.importorskip(
        "trtfast.engine_file", reason="trtfast.engine_file (the engine container) is not present"
    )
    info = engine_file.EngineInfo(
        format_version=1,
        tensorrt_version="10.16.0",
        edition="standard",
        gpu_name="NVIDIA H100 80GB HBM3",
        compute_capability=(9, 0),
        inputs=(),
        outputs=(),
        build_options={},
        model_sha256="",
        plan_sha256="",
        plan_size=0,
        raw_plan=False,
        host_code=False,
    )
    return dataclasses.replace(info, **changes)


HERE = {
    "tensorrt_version": "10.16.0",
    "library_path": "/opt/tensorrt/lib/libnvinfer.so.10",
    "gpu_name": "NVIDIA H100 80GB HBM3",
    "compute_capability": (9, 0),
}


def test_compatible_engine_passes() -> None:
    check_compatibility(_info(), **HERE)  # type: ignore[arg-type]
    # A raw plan says nothing: TensorRT itself decides.
    check_compatibility(
        _info(tensorrt_version="", compute_capability=(0, 0), edition="", raw_plan=True),
        **HERE,  # type: ignore[arg-type]
    )


def test_other_tensorrt_version_is_refused_with_both_versions() -> None:
    with pytest.raises(trtfast.EngineCompatibilityError) as raised:
        check_compatibility(
            _info(tensorrt_version="10.14.1"),
            source="model.engine",
            **HERE,  # type: ignore[arg-type]
        )
    message = str(raised.value)
    assert message.startswith("engine 'model.engine' cannot run here: ")
    assert "built with TensorRT 10.14.1" in message
    assert "this machine has TensorRT 10.16.0 at /opt/tensorrt/lib/libnvinfer.so.10" in message


def test_version_compatible_engines_run_on_later_minors() -> None:
    options = {"version_compatible": True}
    check_compatibility(
        _info(tensorrt_version="10.14.1", build_options=options),
        **HERE,  # type: ignore[arg-type]
    )
    with pytest.raises(trtfast.EngineCompatibilityError, match="version-compatible"):
        check_compatibility(
            _info(tensorrt_version="10.17.0", build_options=options),
            **HERE,  # type: ignore[arg-type]
        )
    with pytest.raises(trtfast.EngineCompatibilityError, match=r"built with TensorRT 9\.3\.0"):
        check_compatibility(
            _info(tensorrt_version="9.3.0", build_options=options),
            **HERE,  # type: ignore[arg-type]
        )


def test_other_gpu_is_refused_with_both_capabilities() -> None:
    here = {**HERE, "gpu_name": "NVIDIA A10", "compute_capability": (8, 6)}
    with pytest.raises(trtfast.EngineCompatibilityError) as raised:
        check_compatibility(_info(), **here)  # type: ignore[arg-type]
    message = str(raised.value)
    assert "built for compute capability 9.0 on NVIDIA H100 80GB HBM3" in message
    assert "this device is NVIDIA A10 with compute capability 8.6" in message


H100_PCIE = {**H100_SXM, "name": "NVIDIA H100 PCIe", "multiprocessors": 114}


def test_another_gpu_model_of_the_same_compute_capability_loads_with_a_warning() -> None:
    info = _info(environment={"gpu": H100_SXM})
    here = {**HERE, "gpu_name": H100_PCIE["name"], "gpu": H100_PCIE}
    with pytest.warns(trtfast.EngineCompatibilityWarning) as caught:
        check_compatibility(info, source="model.engine", **here)  # type: ignore[arg-type]
    (message,) = [str(warning.message) for warning in caught]
    assert "engine 'model.engine' was built for another GPU model" in message
    assert "name 'NVIDIA H100 80GB HBM3' (here 'NVIDIA H100 PCIe')" in message
    assert "SM count 132 (here 114)" in message
    # Another card of the same model: nothing to say.
    same_model = {**H100_SXM, "uuid": "GPU-00000000-0000-0000-0000-000000000002"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_compatibility(info, **{**HERE, "gpu": same_model})  # type: ignore[arg-type]
        # A hardware-compatible engine promises to run on other models.
        check_compatibility(
            _info(
                environment={"gpu": H100_SXM},
                build_options={"hardware_compatibility": "same_compute_capability"},
            ),
            **here,  # type: ignore[arg-type]
        )


def test_hardware_compatible_engines_run_on_ampere_and_newer() -> None:
    info = _info(compute_capability=(8, 6), build_options={"hardware_compatibility": "ampere_plus"})
    check_compatibility(info, **HERE)  # type: ignore[arg-type]
    with pytest.raises(trtfast.EngineCompatibilityError, match=r"8\.0 or newer"):
        check_compatibility(
            info,
            **{**HERE, "compute_capability": (7, 5)},  # type: ignore[arg-type]
        )


def test_other_edition_is_refused() -> None:
    with pytest.raises(trtfast.EngineCompatibilityError, match="TensorRT rtx edition"):
        check_compatibility(_info(edition="rtx"), **HERE)  # type: ignore[arg-type]


def test_every_problem_is_listed() -> None:
    with pytest.raises(trtfast.EngineCompatibilityError) as raised:
        check_compatibility(
            _info(tensorrt_version="11.1.0", edition="rtx"),
            **{**HERE, "compute_capability": (8, 9)},  # type: ignore[arg-type]
        )
    assert str(raised.value).count("; ") == 2


def test_engines_with_host_code_need_permission(tmp_path: Path) -> None:
    from trtfast import engine_file

    path = tmp_path / "vc.engine"
    engine_file.write(path, _info(host_code=True, build_options={"version_compatible": True}), b"p")
    # Refused from the header alone, before any TensorRT library or GPU is touched.
    with pytest.raises(trtfast.EngineCompatibilityError, match="allow_host_code=True") as raised:
        trtfast.Engine.load(path)
    assert "embeds host code" in str(raised.value) and str(path) in str(raised.value)
    with pytest.raises(trtfast.EngineCompatibilityError, match="embeds host code"):
        trtfast.Engine.load(path.read_bytes())


@pytest.mark.parametrize("engine", [trtfast.Engine, reference.Engine], ids=["trtfast", "reference"])
def test_plugin_libraries_to_load_must_exist_and_be_a_list(
    engine: type[trtfast.Engine] | type[reference.Engine], tmp_path: Path
) -> None:
    # Checked first, before the engine file, the TensorRT library or a GPU is touched.
    with pytest.raises(FileNotFoundError, match=r"plugin library .*libmissing\.so does not exist"):
        engine.load(tmp_path / "any.engine", plugins=[tmp_path / "libmissing.so"])
    with pytest.raises(TypeError, match="plugins must be a list of library paths"):
        engine.load(tmp_path / "any.engine", plugins="libplugin.so")  # type: ignore[arg-type]
