"""Parity of the reference path with trtfast's C++ core on real engines (`-m tensorrt`): the same
engine files, the same outputs, on every bundled model and precision."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import build_models
import numpy as np
import onnx
import onnxruntime
import pytest

import trtfast
from trtfast import models, reference

pytestmark = pytest.mark.tensorrt

# Against onnxruntime's fp32 result: (rtol, atol) per precision.
TOLERANCES = {"fp32": (1e-3, 1e-4), "fp16": (2e-2, 2e-2), "bf16": (5e-2, 5e-2)}


@pytest.fixture(scope="module", autouse=True)
def _reference_runs() -> None:
    reason = reference.unavailable_reason("standard")
    if reason is not None:
        pytest.skip(reason)
    pytest.importorskip("cuda.bindings.runtime", reason="cuda-python is not installed")


def _expected(name: str, feeds: dict[str, np.ndarray[Any, Any]]) -> list[np.ndarray[Any, Any]]:
    session = onnxruntime.InferenceSession(
        str(models.path(name)), providers=["CPUExecutionProvider"]
    )
    return list(session.run(None, feeds))


@pytest.mark.parametrize("precision", sorted(TOLERANCES))
@pytest.mark.parametrize("name", models.names())
def test_cpp_and_reference_agree(name: str, precision: str, tmp_path: Path) -> None:
    path = tmp_path / f"{name}.engine"
    trtfast.build(
        models.path(name),
        output=path,
        shapes=models.shapes(name),
        precision=precision,
        progress=False,
    )
    cpp, python = trtfast.Engine.load(path), reference.Engine.load(path)
    assert python.inputs == cpp.inputs and python.outputs == cpp.outputs
    (shape_range,) = models.shapes(name).values()
    rtol, atol = TOLERANCES[precision]
    for batch in (shape_range[0][0], shape_range[1][0], shape_range[2][0]):
        feeds = models.inputs(name, batch=batch, seed=batch)
        ours, theirs = cpp(feeds), python(**feeds)
        assert list(ours) == list(theirs) == [spec.name for spec in cpp.outputs]
        for (output, value), expected in zip(theirs.items(), _expected(name, feeds), strict=True):
            # One plan on one GPU: the two paths run the same kernels.
            np.testing.assert_allclose(value, np.asarray(ours[output]), rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(value, expected, rtol=rtol, atol=atol)
    python.close()
    cpp.close()


def test_each_path_loads_the_others_engines(tmp_path: Path) -> None:
    feeds = models.inputs("cnn", batch=4)
    built_by_python = tmp_path / "python.engine"
    reference.build(
        models.path("cnn"), output=built_by_python, shapes=models.shapes("cnn"), progress=False
    )
    built_by_cpp = tmp_path / "cpp.engine"
    trtfast.build(
        models.path("cnn"), output=built_by_cpp, shapes=models.shapes("cnn"), progress=False
    )
    assert trtfast.inspect(built_by_python).inputs == trtfast.inspect(built_by_cpp).inputs
    expected = _expected("cnn", feeds)[0]
    for path in (built_by_python, built_by_cpp):
        for engine_type in (trtfast.Engine, reference.Engine):
            logits = np.asarray(engine_type.load(path)(feeds)["logits"])
            np.testing.assert_allclose(logits, expected, rtol=1e-3, atol=1e-4)


def test_reference_engine_calls(tmp_path: Path) -> None:
    path = tmp_path / "mlp.engine"
    trtfast.build(models.path("mlp"), output=path, shapes=models.shapes("mlp"), progress=False)
    with reference.Engine.load(path) as engine:
        feeds = models.inputs("mlp", batch=3)
        out = np.empty((3, 16), np.float32)
        result = engine(feeds, out={"scores": out})
        assert result["scores"] is out
        np.testing.assert_allclose(out, _expected("mlp", feeds)[0], rtol=1e-3, atol=1e-4)
        # Results are the caller's: a later call does not overwrite them.
        first = engine(features=feeds["features"])["scores"]
        engine(features=models.inputs("mlp", batch=3, seed=9)["features"])
        np.testing.assert_array_equal(first, out)
        with pytest.raises(trtfast.InputError, match="expected dtype float32"):
            engine(features=feeds["features"].astype(np.float64))
        with pytest.raises(trtfast.InputError, match="outside the engine's optimization profile"):
            engine(features=np.zeros((65, 64), np.float32))
        # Threads take turns on the one context.
        batches = [models.inputs("mlp", batch=b, seed=b) for b in range(1, 17)]
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda feeds: engine(feeds)["scores"], batches))
        for feeds, scores in zip(batches, results, strict=True):
            np.testing.assert_allclose(scores, _expected("mlp", feeds)[0], rtol=1e-3, atol=1e-4)
    with pytest.raises(RuntimeError, match="closed"):
        engine(feeds)


def test_both_builders_take_the_value_ranges_of_shape_tensor_inputs(tmp_path: Path) -> None:
    source = tmp_path / "reshape.onnx"
    onnx.save_model(build_models.reshape_by_input(), str(source))
    shapes = {"x": ([1, 16], [4, 16], [8, 16]), "target": {"values": ([1, -1], [4, -1], [8, -1])}}
    built = trtfast.build(source, output=tmp_path / "core.engine", shapes=shapes, progress=False)
    referenced = reference.build(
        source, output=tmp_path / "reference.engine", shapes=shapes, progress=False
    )
    assert [spec.name for spec in built.inputs] == ["x", "target"]
    assert [spec.name for spec in referenced.inputs] == ["x", "target"]
