"""On a GPU, with trtfast._testing's affine engine (y = 2x + 1, no TensorRT): the engine against
onnxruntime running an ONNX model (``compare(..., onnx=...)``), the pool's cap, and one array
passed positionally; with TensorRT: ``Engine.from_onnx`` and ``trtfast run``."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from gpu_executor import require_test_executor
from test_peer_spellings import affine_model

import trtfast
from trtfast import _core, cli

pytestmark = pytest.mark.gpu

_testing = require_test_executor()


def test_the_engine_agrees_with_an_onnx_model_of_the_same_function(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    engine = trtfast.Engine(_testing.affine(a=2.0, b=1.0))
    path = tmp_path / "affine.onnx"
    onnx.save(affine_model(a=2.0, b=1.0), path)
    result = trtfast.compare(engine, onnx=path, shapes={"x": (16, 4)}, seed=3)
    assert result.passed and result.reference == "onnxruntime"
    (output,) = result.outputs
    assert (output.name, output.shape, output.mismatches) == ("y", (16, 4), 0)
    assert (output.rtol, output.atol) == (1e-3, 1e-4)  # fp32 against onnxruntime
    assert result.inputs == {"x": ("float32", (16, 4))} and result.seed == 3
    assert "the engine against onnxruntime running the ONNX model" in result.summary()


def test_a_model_that_differs_slightly_is_reported(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    engine = trtfast.Engine(_testing.affine(a=2.0, b=1.0))
    differs = affine_model(a=2.0, b=1.01)  # off by 0.01 everywhere
    result = trtfast.compare(engine, onnx=differs, inputs={"x": np.ones((8, 4), np.float32)})
    assert not result.passed
    (output,) = result.outputs
    assert output.mismatches == output.size == 32
    assert output.max_abs_error == pytest.approx(0.01, rel=1e-3)
    assert "parity: MISMATCH in y" in result.summary()
    # With tolerances that allow the difference, it passes.
    assert trtfast.compare(engine, onnx=differs, atol=0.02, shapes={"x": (4, 4)}).passed
    # The comparison with TensorRT's Python API needs an engine file.
    with pytest.raises(TypeError, match="onnx= to compare a loaded Engine with onnxruntime"):
        trtfast.compare(engine)


def test_the_pool_never_holds_more_than_max_sessions_contexts() -> None:
    core = _testing.affine(delay_us=2000.0)
    engine = trtfast.Engine(core, max_sessions=2)
    x = np.ones((8, 4), np.float32)
    errors: list[BaseException] = []

    def calls() -> None:
        try:
            for _ in range(20):
                np.testing.assert_array_equal(engine(x)["y"], 2 * x + 1)
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=calls) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    engine.close()
    assert errors == []
    assert core.executors_created == 2  # eight threads, two contexts


def test_one_array_positionally_on_sessions_and_engines() -> None:
    engine = trtfast.Engine(_testing.affine())
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(engine(x)["y"], 2 * x + 1)
    with engine.session() as session:
        np.testing.assert_array_equal(session(x)["y"], 2 * x + 1)
        np.testing.assert_array_equal(session.submit(x).result()["y"], 2 * x + 1)
        with pytest.raises(trtfast.InputError, match="not as a list: run"):
            session([x])
        with pytest.raises(trtfast.InputError, match="input 'x' is given twice"):
            session(x, x=x)
    two = trtfast.Engine(_testing.two_outputs(features=4))
    with pytest.raises(trtfast.InputError, match="this engine has 2 inputs"):
        two(x)


def test_outputs_chooses_what_comes_back() -> None:
    engine = trtfast.Engine(_testing.two_outputs(features=4))
    x = np.array([[1, -1, 2, -2], [-1, -1, -1, -1]], np.float32)
    bias = np.zeros(4, np.float32)
    with engine.session() as session:
        assert list(session(x=x, bias=bias)) == ["sum", "positives"]
        result = session(x=x, bias=bias, outputs=("positives",))
        assert list(result) == ["positives"] and result["positives"].tolist() == [2, 0]
        assert list(session({"x": x, "bias": bias}, outputs="sum")) == ["sum"]
        # The caller's out buffer is written and returned, chosen or not.
        out = np.empty((2, 4), np.float32)
        result = session(x=x, bias=bias, out={"sum": out}, outputs=["positives"])
        assert list(result) == ["sum", "positives"] and result["sum"] is out
        with pytest.raises(trtfast.InputError, match="unknown output 'boxes'"):
            session(x=x, bias=bias, outputs=("boxes",))
        with pytest.raises(trtfast.InputError, match=r"outputs=\('sum',\), not a dict"):
            session(x=x, bias=bias, outputs={"sum": out})
        bound = session.bind({"x": x, "bias": bias}, ("sum",))
        assert list(bound) == ["sum"]
        assert list(session.run()) == ["sum"]
        with pytest.raises(trtfast.InputError, match="replays the bound call"):
            session.run(outputs=("positives",))
    with engine.session(outputs=("sum",)) as chosen:
        assert list(chosen(x=x, bias=bias)) == ["sum"]
        assert list(chosen(x=x, bias=bias, outputs=("positives",))) == ["positives"]
    assert list(engine(x=x, bias=bias, outputs=("sum",))) == ["sum"]


# --- with TensorRT -------------------------------------------------------------------------------


def _full_tensorrt() -> Any:
    if not _core.tensorrt_adapter_available():
        pytest.skip("this trtfast was built without TensorRT headers")
    try:
        library = trtfast.tensorrt_library()
    except trtfast.TrtfastError as error:
        pytest.skip(f"no usable TensorRT library: {error}")
    if library.kind != "full":
        pytest.skip("building needs the full TensorRT library")
    if str(library.major) not in trtfast.build_info()["tensorrt_adapters"]:
        pytest.skip(f"this trtfast has no adapter for TensorRT {library.major}")
    return library


@pytest.mark.tensorrt
def test_from_onnx_builds_once_then_loads_from_the_cache(tmp_path: Path) -> None:
    _full_tensorrt()
    model = affine_model()
    shapes = {"x": ((1, 4), (8, 4), (64, 4))}
    steps: list[str] = []

    def progress(event: str, phase: str, step: int, total: int) -> None:
        steps.append(phase)

    cache = tmp_path / "engines"
    engine = trtfast.Engine.from_onnx(model, cache_dir=cache, shapes=shapes, progress=progress)
    x = np.ones((8, 4), np.float32)
    np.testing.assert_array_equal(engine(x)["y"], 2 * x + 1)
    built = len(steps)
    assert built > 0 and len(list(cache.glob("*.engine"))) == 1
    again = trtfast.Engine.from_onnx(model, cache_dir=cache, shapes=shapes, progress=progress)
    assert len(steps) == built  # loaded, not built
    np.testing.assert_array_equal(again(x)["y"], 2 * x + 1)
    # Without a cache: built in memory.
    data = trtfast.build(model, shapes=shapes, progress=False)
    assert isinstance(data, bytes)
    np.testing.assert_array_equal(trtfast.Engine.load(data)(x)["y"], 2 * x + 1)


@pytest.mark.tensorrt
def test_run_and_compare_on_real_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _full_tensorrt()
    model = tmp_path / "affine.onnx"
    onnx.save(affine_model(), model)
    engine = tmp_path / "affine.engine"
    flags = ["--min-shapes", "x:1x4", "--opt-shapes", "x:8x4", "--max-shapes", "x:64x4"]
    assert cli.main(["build", str(model), "-o", str(engine), *flags]) == 0
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    np.savez(tmp_path / "in.npz", x=x)
    saved = tmp_path / "out.npz"
    capsys.readouterr()
    arguments = ["run", str(engine), "--inputs", str(tmp_path / "in.npz"), "--json"]
    assert cli.main([*arguments, "--save-outputs", str(saved)]) == 0
    described = json.loads(capsys.readouterr().out)
    assert described["outputs"]["y"]["shape"] == [2, 4]
    assert described["outputs"]["y"]["max"] == 15.0
    with np.load(saved) as outputs:
        np.testing.assert_array_equal(outputs["y"], 2 * x + 1)
    assert cli.main(["run", str(engine), "--shapes", "x:5x4"]) == 0
    assert "y  float32 [5, 4]" in capsys.readouterr().out
    status = cli.main(["compare", str(engine), "--onnx", str(model), "--shapes", "x:16x4"])
    assert status == 0
    assert "parity: ok, 1 output(s) agree" in capsys.readouterr().out
