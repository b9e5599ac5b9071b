"""What users of onnxruntime, Polygraphy, trtexec and Torch-TensorRT type first, without a GPU:
one array passed positionally, trtexec's and Polygraphy's shape forms, build results that say
where the engine is (or are its bytes), ``trtfast run``, ``compare --onnx``, -v/-q, progress
bars only on a terminal, and the pool's cap. Builds are real, with TensorRT-RTX."""

from __future__ import annotations

import io
import logging
import re
import threading
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from rtx_engines import rtx_engine

import trtfast
from trtfast import _core, cli, models, reference
from trtfast.build import _Progress
from trtfast.errors import EngineCompatibilityError, InputError, ProfileError
from trtfast.parity import onnx_tolerances, onnxruntime_outputs, onnxruntime_session
from trtfast.profiles import parse_runtime_shapes, parse_shapes_option, parse_trtexec_shapes

needs_rtx = pytest.mark.skipif(
    reference.unavailable_reason("rtx") is not None,
    reason=f"TensorRT-RTX is not installed: {reference.unavailable_reason('rtx')}",
)


def _one_input() -> Any:
    return _core.Signature([("x", "float32", (-1, 4), [((1, 4), (4, 4), (8, 4))])], [])


def _two_inputs() -> Any:
    inputs = [("x", "float32", (2, 4)), ("input.1", "float32", (4,))]
    return _core.Signature(inputs, [("y", "float32", (2, 4))])


# --- one array positionally --------------------------------------------------------------------


def test_an_engine_with_one_input_takes_one_array_positionally() -> None:
    x = np.zeros((2, 4), np.float32)
    assert _one_input().check(x) == 0
    # Mappings other than dict still name the inputs.
    assert _one_input().check(types.MappingProxyType({"x": x})) == 0
    with pytest.raises(InputError, match=r"input 'x': expected dtype float32, received numpy f"):
        _one_input().check(np.zeros((2, 4)))


def test_a_list_is_refused_with_how_to_pass_inputs_by_name() -> None:
    x = np.zeros((2, 4), np.float32)
    with pytest.raises(InputError) as raised:
        _one_input().check([x])
    message = str(raised.value)
    assert "inputs are passed by name or as one array, not as a list" in message
    assert "run({'x': array}) or run(x=array)" in message
    assert "the engine's inputs are 'x' (float32, [-1, 4])" in message


def test_several_inputs_are_passed_by_name() -> None:
    x = np.zeros((2, 4), np.float32)
    for value in (x, (x, x), [x, x]):
        with pytest.raises(InputError) as raised:
            _two_inputs().check(value)
        message = str(raised.value)
        assert "this engine has 2 inputs, so they are passed by name" in message
        # 'input.1' is no keyword: only the dict form is shown.
        assert "run({'x': array, 'input.1': array});" in message
        assert "run(x=array" not in message


# --- shapes as trtexec and Polygraphy write them -----------------------------------------------


def test_trtexec_min_opt_max_shapes() -> None:
    profiles = parse_trtexec_shapes(
        ["a:1x3x224x224,b:1x10"], ["a:4x3x224x224,b:4x10"], ["a:8x3x224x224", "b:8x10"]
    )
    assert profiles == [
        {
            "a": ((1, 3, 224, 224), (4, 3, 224, 224), (8, 3, 224, 224)),
            "b": ((1, 10), (4, 10), (8, 10)),
        }
    ]
    # min and max default to opt, as in trtexec
    assert parse_trtexec_shapes([], ["a:2x3"], []) == [{"a": ((2, 3), (2, 3), (2, 3))}]
    with pytest.raises(ProfileError, match="input 'a' has no --opt-shapes entry"):
        parse_trtexec_shapes(["a:1x3"], [], ["a:8x3"])
    with pytest.raises(ProfileError, match=r"--min-shapes 'a:\[1,3\]' looks like Polygraphy's"):
        parse_trtexec_shapes(["a:[1,3]"], ["a:1x3"], [])


def test_shapes_in_other_tools_forms_say_how_to_write_them() -> None:
    with pytest.raises(ProfileError) as raised:
        parse_shapes_option(["a:1x3x224x224,b:1x10"])
    assert "--shapes a:1x3x224x224 --shapes b:1x10" in str(raised.value)
    assert "--min-shapes, --opt-shapes and --max-shapes" in str(raised.value)
    with pytest.raises(ProfileError) as raised:
        parse_shapes_option(["x:[1,3,224,224]"])
    assert "Polygraphy's [1,3,224,224] form" in str(raised.value)
    assert "--shapes x:1x3x224x224" in str(raised.value)


def test_runtime_shapes() -> None:
    assert parse_runtime_shapes(["x:8x128", "mask:8x128,input:0:8"]) == {
        "x": (8, 128),
        "mask": (8, 128),
        "input:0": (8,),
    }
    assert parse_shapes_option(["input:0:1x3,2x3,4x3"]) == [{"input:0": ((1, 3), (2, 3), (4, 3))}]
    with pytest.raises(ProfileError, match="a call has one shape per input, not a range"):
        parse_runtime_shapes(["x:1x128,8x128,64x128"])
    with pytest.raises(ProfileError, match="Polygraphy's"):
        parse_runtime_shapes(["x:[8,128]"])


@needs_rtx
def test_the_command_line_builds_with_trtexec_shape_flags(tmp_path: Path) -> None:
    output = tmp_path / "mlp.engine"
    source = str(models.path("mlp", tmp_path))
    arguments = ["build", source, "-o", str(output), "--edition", "rtx"]
    shapes = ["--minShapes", "features:1x64", "--opt-shapes", "features:8x64"]
    assert cli.main([*arguments, *shapes, "--max-shapes", "features:64x64"]) == 0
    (spec,) = trtfast.inspect(output).inputs
    assert spec.profiles == (((1, 64), (8, 64), (64, 64)),)
    both = [*arguments, *shapes, "--shapes", "features:1x64"]
    assert cli.main(both) == 2


# --- build results -----------------------------------------------------------------------------


@needs_rtx
def test_build_says_where_the_engine_is_or_returns_its_bytes(tmp_path: Path) -> None:
    source = models.path("mlp", tmp_path)
    options: dict[str, Any] = {"edition": "rtx", "shapes": models.shapes("mlp"), "progress": False}
    cache = tmp_path / "cache"
    cached = reference.build(source, cache_dir=cache, **options)
    assert isinstance(cached, trtfast.EngineInfo)
    assert cached.path is not None and Path(cached.path).parent == cache
    assert trtfast.inspect(cached.path) == cached
    # A hit in the cache with an output: the output is where the engine is.
    output = tmp_path / "mlp.engine"
    written = reference.build(source, cache_dir=cache, output=output, **options)
    assert isinstance(written, trtfast.EngineInfo) and written.path == str(output)
    # A fresh build to both: the output is where the engine is.
    both = reference.build(
        source, cache_dir=tmp_path / "new", output=tmp_path / "b.engine", **options
    )
    assert isinstance(both, trtfast.EngineInfo) and both.path == str(tmp_path / "b.engine")
    data = reference.build(source, **options)
    assert isinstance(data, bytes)
    assert trtfast.inspect(output) == trtfast.engine_file.read_info(data)
    assert trtfast.engine_file.read_info(data).path is None
    assert "path" not in written.to_json()


@needs_rtx
def test_from_onnx_builds_once_into_the_cache(tmp_path: Path) -> None:
    source = models.path("mlp", tmp_path)
    cache = tmp_path / "cache"
    steps: list[str] = []

    def progress(event: str, phase: str, step: int, total: int) -> None:
        steps.append(phase)

    options: dict[str, Any] = {"shapes": models.shapes("mlp"), "progress": progress}
    for _ in range(2):
        # Built, then found in the cache; loading it needs a GPU this machine lacks.
        with pytest.raises(EngineCompatibilityError, match="usable device"):
            trtfast.Engine.from_onnx(source, cache_dir=cache, edition="rtx", **options)
        assert len(list(cache.glob("*.engine"))) == 1
    built = len(steps)
    assert built > 0
    with pytest.raises(EngineCompatibilityError):
        trtfast.Engine.from_onnx(source, cache_dir=cache, edition="rtx", **options)
    assert len(steps) == built  # no second build
    with pytest.raises(TypeError, match=r"trtfast.build\(model, output=...\)"):
        trtfast.Engine.from_onnx(source, output=tmp_path / "x.engine")


# --- trtfast run, and --inputs/--shapes of compare and bench -----------------------------------


@needs_rtx
def test_run_checks_its_inputs_then_says_why_it_cannot_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = str(rtx_engine(tmp_path))
    good, bad = tmp_path / "in.npz", tmp_path / "bad.npz"
    np.savez(good, features=np.ones((8, 64), np.float32))
    np.savez(bad, feature=np.ones((8, 64), np.float32))
    assert cli.main(["run", engine, "--inputs", str(bad)]) == 2
    assert "holds ['feature'], which the engine does not take and lacks ['features']" in (
        capsys.readouterr().err
    )
    assert cli.main(["run", engine, "--shapes", "features:1x64,8x64,64x64"]) == 2
    assert "a call has one shape per input" in capsys.readouterr().err
    assert cli.main(["run", engine, "--inputs", str(good), "--batch", "8"]) == 2
    assert "leave out --shapes and --batch" in capsys.readouterr().err
    # Valid arguments: without a GPU, exit status 3 and why.
    for command in ("run", "bench", "compare"):
        status = cli.main([command, engine, "--inputs", str(good)])
        assert status == cli.UNAVAILABLE
        assert "cannot run engines here" in capsys.readouterr().err
        status = cli.main([command, engine, "--shapes", "features:4x64"])
        assert status == cli.UNAVAILABLE
        capsys.readouterr()


def test_one_npy_array_feeds_an_engine_with_one_input(tmp_path: Path) -> None:
    path = tmp_path / "x.npy"
    np.save(path, np.arange(4, dtype=np.float32))
    loaded = cli.load_inputs(str(path), ["x"])
    assert list(loaded) == ["x"] and loaded["x"].tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match=r"np.savez\(path, x=..., y=...\)"):
        cli.load_inputs(str(path), ["x", "y"])
    with pytest.raises(ValueError, match="cannot read inputs from"):
        cli.load_inputs(str(tmp_path / "missing.npz"), ["x"])


def test_outputs_are_described_with_statistics() -> None:
    described = cli.describe_array(np.array([[1.0, 3.0], [np.nan, np.inf]], np.float32))
    assert described == {
        "shape": [2, 2],
        "dtype": "float32",
        "nan": 1,
        "inf": 1,
        "min": 1.0,
        "max": 3.0,
        "mean": 2.0,
        "std": 1.0,
    }
    assert cli.describe_array(np.zeros((0, 3), np.int32)) == {"shape": [0, 3], "dtype": "int32"}


# --- compare --onnx ----------------------------------------------------------------------------


def affine_model(a: float = 2.0, b: float = 1.0, features: int = 4) -> onnx.ModelProto:
    """x [batch, features] float32 -> y = a * x + b, as trtfast._testing.affine computes it."""
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "a"], ["ax"]), helper.make_node("Add", ["ax", "b"], ["y"])],
        "affine",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", features])],
        [
            helper.make_tensor("a", TensorProto.FLOAT, [], [a]),
            helper.make_tensor("b", TensorProto.FLOAT, [], [b]),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_onnxruntime_runs_the_model_on_the_same_feeds(tmp_path: Path) -> None:
    path = tmp_path / "affine.onnx"
    onnx.save(affine_model(), path)
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    for source in (path, str(path), path.read_bytes(), affine_model()):
        outputs = onnxruntime_outputs(onnxruntime_session(source), {"x": x})
        assert list(outputs) == ["y"]
        np.testing.assert_array_equal(outputs["y"], 2 * x + 1)
    with pytest.raises(trtfast.TrtfastError, match=r"model's inputs are \['x'\], and the engine"):
        onnxruntime_outputs(onnxruntime_session(path), {"features": x})


def test_onnx_tolerances_follow_the_coarser_of_dtype_and_build_precision() -> None:
    assert onnx_tolerances("float32") == onnx_tolerances("float32", "fp32") == (1e-3, 1e-4)
    assert onnx_tolerances("float32", "fp16") == onnx_tolerances("float16", "fp32")
    assert onnx_tolerances("float16", "int8") == onnx_tolerances("float32", "int8")
    assert onnx_tolerances("int32", "fp16") == (0.0, 0.0)
    assert onnx_tolerances("bool") == (0.0, 0.0)


@needs_rtx
def test_compare_with_onnx_checks_the_model_before_the_gpu(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = str(rtx_engine(tmp_path))
    missing = str(tmp_path / "missing.onnx")
    assert cli.main(["compare", engine, "--onnx", missing]) == 2
    assert "cannot load" in capsys.readouterr().err
    model = tmp_path / "mlp.onnx"
    onnx.save(models.model("mlp"), model)
    assert cli.main(["compare", engine, "--onnx", str(model)]) == cli.UNAVAILABLE
    assert "TensorRT cannot run engines here" in capsys.readouterr().err


# --- logging and progress ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "level"),
    [
        ([], logging.WARNING),
        (["-v"], logging.INFO),
        (["-vv"], logging.DEBUG),
        (["-q"], logging.ERROR),
    ],
)
def test_verbosity_sets_trtfast_and_tensorrt_loggers(arguments: list[str], level: int) -> None:
    from trtfast._library import _forward_to_logging

    root, tensorrt = logging.getLogger("trtfast"), logging.getLogger("trtfast.tensorrt")
    before = (root.level, tensorrt.level, list(root.handlers))
    args = cli._parser().parse_args([*arguments, "doctor"])
    stream = io.StringIO()
    with cli.logging_for(args.verbose, args.quiet):
        assert root.level == tensorrt.getEffectiveLevel() == level
        (handler,) = [h for h in root.handlers if h not in before[2]]
        handler.setStream(stream)  # type: ignore[attr-defined]
        for severity in range(5):  # TensorRT's internal error .. verbose
            _forward_to_logging(severity, f"severity {severity}")
    printed = stream.getvalue().splitlines()
    shown = {logging.ERROR: 2, logging.WARNING: 3, logging.INFO: 4, logging.DEBUG: 5}[level]
    assert printed == [
        f"trtfast.tensorrt: {name}: severity {severity}"
        for severity, name in enumerate(["CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"][:shown])
    ]
    assert (root.level, tensorrt.level, list(root.handlers)) == before


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bars_show_by_default_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert _Progress("auto").tqdm is None
    monkeypatch.setattr("sys.stderr", _Terminal())
    assert _Progress("auto").tqdm is not None
    with pytest.raises(trtfast.BuildOptionError, match="progress must be 'auto', True, False"):
        _Progress("always")


# --- the pool's cap ----------------------------------------------------------------------------


class _BlockingSession:
    """A session whose calls wait for `gate`, counting how many run at once."""

    def __init__(self, pool: _Pool) -> None:
        self.pool = pool

    def run(self, inputs: Any, out: Any = None, **named: Any) -> dict[str, Any]:
        with self.pool.lock:
            self.pool.running += 1
            self.pool.most = max(self.pool.most, self.pool.running)
        self.pool.gate.wait(timeout=10)
        with self.pool.lock:
            self.pool.running -= 1
        return {"y": inputs}


class _Pool(trtfast.Engine):
    """An Engine whose sessions are _BlockingSession: Engine's pooling without a GPU."""

    def __init__(self, max_sessions: int) -> None:
        super().__init__(core=None, max_sessions=max_sessions)  # type: ignore[arg-type]
        self.lock = threading.Lock()
        self.gate = threading.Event()
        self.running = self.most = self.made = 0

    def session(self, **options: Any) -> Any:
        self.made += 1
        return _BlockingSession(self)


def test_calls_beyond_max_sessions_wait_for_a_free_session() -> None:
    engine = _Pool(max_sessions=2)
    threads = [threading.Thread(target=engine, args=(index,)) for index in range(6)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 5
    while engine.running < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    assert engine.running == 2  # the other four wait
    engine.gate.set()
    for thread in threads:
        thread.join(timeout=10)
    assert engine.most == 2 and engine.made == 2


def test_max_sessions_is_checked() -> None:
    assert trtfast.Engine.__init__.__kwdefaults__["max_sessions"] == 4
    for wrong in (0, -1, 1.5, True):
        with pytest.raises(
            ValueError, match=re.escape(f"max_sessions must be an int >= 1, not {wrong!r}")
        ):
            trtfast.Engine(None, max_sessions=wrong)  # type: ignore[arg-type]
