"""Sessions over real TensorRT engines (the TensorRT executor): a tiny ONNX model built here,
then the same checks the test executor passes on the GPU suite."""

from __future__ import annotations

import dataclasses
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import trtfast
from trtfast import _core

pytestmark = pytest.mark.tensorrt

if _core.cuda.device_count() == 0:
    pytest.skip(
        f"no usable CUDA device: {_core.cuda.unavailable_reason()}", allow_module_level=True
    )
if not _core.tensorrt_adapter_available():
    pytest.skip("this trtfast was built without TensorRT headers", allow_module_level=True)
if not hasattr(_core, "build_plan"):
    pytest.skip("this trtfast has no engine builder (_core.build_plan)", allow_module_level=True)
try:
    _LIBRARY = trtfast.tensorrt_library()
except trtfast.TrtfastError as error:
    pytest.skip(f"no usable TensorRT library: {error}", allow_module_level=True)
if _LIBRARY.kind != "full":
    pytest.skip("building the test engine needs the full TensorRT library", allow_module_level=True)
if str(_LIBRARY.major) not in trtfast.build_info()["tensorrt_adapters"]:
    pytest.skip(
        f"this trtfast has no adapter for TensorRT {_LIBRARY.major}", allow_module_level=True
    )
onnx = pytest.importorskip("onnx")
engine_file = pytest.importorskip("trtfast.engine_file")

FEATURES = 4


def _affine_model() -> bytes:
    """y = 2 * x + 1 with a dynamic batch."""
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", FEATURES])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", FEATURES])
    a = numpy_helper.from_array(np.full((1, FEATURES), 2.0, np.float32), "a")
    b = numpy_helper.from_array(np.full((1, FEATURES), 1.0, np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "a"], ["ax"]), helper.make_node("Add", ["ax", "b"], ["y"])],
        "affine",
        [x],
        [y],
        initializer=[a, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


@pytest.fixture(scope="module")
def plan() -> bytes:
    options: dict[str, Any] = {
        "precision": "fp32",
        "strongly_typed": False,
        "profiles": [{"x": [[1, FEATURES], [8, FEATURES], [64, FEATURES]]}],
        "workspace": None,
        "timing_cache": None,
        "optimization_level": None,
        "version_compatible": False,
        "hardware_compatibility": None,
        "plugins": [],
        "device": 0,
        "model_dir": None,
    }
    built = _core.build_plan(_LIBRARY, _affine_model(), options, None)
    return bytes(built["plan"])


@pytest.fixture(scope="module")
def engine(plan: bytes) -> trtfast.Engine:
    return trtfast.Engine.load(plan)


def _x(batch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, FEATURES), dtype=np.float32)


def _expected(x: np.ndarray) -> np.ndarray:
    return x * np.float32(2.0) + np.float32(1.0)


def test_signature(engine: trtfast.Engine) -> None:
    (x,) = engine.inputs
    (y,) = engine.outputs
    assert (x.name, x.dtype, x.shape, x.is_input) == ("x", "float32", (-1, FEATURES), True)
    assert x.profiles == (((1, FEATURES), (8, FEATURES), (64, FEATURES)),)
    assert (y.name, y.dtype, y.shape, y.is_input) == ("y", "float32", (-1, FEATURES), False)


def test_numpy_graphs_and_shapes(engine: trtfast.Engine) -> None:
    with engine.session() as session:
        for batch in (1, 8, 64, 8, 1):
            for seed in range(3):
                x = _x(batch, seed)
                np.testing.assert_allclose(session(x=x)["y"], _expected(x), rtol=1e-6)
        stats = session.stats
        assert stats["graphs_enabled"] is True
        assert stats["graph_captures"] == 3
        # Returning to batch 8 and then 1 applies each change by a plain enqueue first: TensorRT
        # applies shape changes at the next enqueue, which a replay does not run.
        assert stats["graph_launches"] == 10
        assert stats["plain_runs"] == 5
        with pytest.raises(trtfast.InputError, match=r"allowed \[1, 4\] to \[64, 4\]"):
            session(x=_x(65))


def test_no_allocation_after_warm_up(engine: trtfast.Engine) -> None:
    x = _x(8)
    with engine.session() as session:
        for _ in range(3):
            session(x=x)
        allocations = _core.cuda.allocation_count()
        for _ in range(50):
            session(x=x)
        assert _core.cuda.allocation_count() == allocations


def test_torch_zero_copy(engine: trtfast.Engine) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch cannot use CUDA here")
    x = torch.from_numpy(_x(5)).cuda()
    with engine.session() as session:
        y = torch.from_dlpack(session(x=x)["y"])
        torch.testing.assert_close(y, x * 2.0 + 1.0)


def test_threads_match_one_thread(engine: trtfast.Engine) -> None:
    inputs = [_x(1 + i % 64, seed=i) for i in range(32)]
    expected = [engine(x=x)["y"] for x in inputs]
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda x: engine(x=x)["y"], inputs * 4))
    for i, y in enumerate(results):
        np.testing.assert_array_equal(y, expected[i % len(inputs)])


def test_engine_from_another_tensorrt_is_refused(plan: bytes) -> None:
    info = engine_file.read_info(plan)
    stale = dataclasses.replace(info, tensorrt_version="1.0.0", edition="standard", raw_plan=False)
    with pytest.raises(trtfast.EngineCompatibilityError, match=r"built with TensorRT 1\.0\.0"):
        trtfast.Engine.load(engine_file.encode(stale, plan))


def test_a_build_records_the_gpu_and_merges_timing_caches_in_its_process(tmp_path: Path) -> None:
    model = tmp_path / "affine.onnx"
    model.write_bytes(_affine_model())
    timing = tmp_path / "affine.timing"
    arguments: dict[str, Any] = {
        "shapes": {"x": ((1, FEATURES), (8, FEATURES), (64, FEATURES))},
        "timing_cache": timing,
        "progress": False,
    }
    info = trtfast.build(model, output=tmp_path / "a.engine", **arguments)
    gpu = _core.cuda.devices()[0]
    assert info.environment["gpu"]["uuid"] == gpu["uuid"]
    assert info.environment["gpu"]["multiprocessors"] == gpu["multiprocessors"]
    assert (info.gpu_name, info.compute_capability) == (gpu["name"], gpu["compute_capability"])
    first = timing.read_bytes()
    # What saving does when another build saved in between: a merge, in a build process.
    from trtfast.build import _core_plan_builder, check_options

    merged = _core_plan_builder(check_options()).combine_timing_caches([first, first], 0)
    assert len(merged) >= len(first) > 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # same GPU model: no EngineCompatibilityWarning
        engine = trtfast.Engine.load(tmp_path / "a.engine")
    np.testing.assert_allclose(engine(x=_x(8))["y"], _expected(_x(8)), rtol=1e-6)
