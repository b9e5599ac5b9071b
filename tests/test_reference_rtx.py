"""Real TensorRT-RTX builds through the reference builder. TensorRT-RTX's ONNX parser and
builder need no GPU, so these build, serialize and write engines on any machine with the
tensorrt-rtx wheels (the test extra installs them)."""

from __future__ import annotations

import dataclasses
import os
import threading
from pathlib import Path
from typing import Any

import build_models
import onnx
import pytest
from onnx import TensorProto, helper
from rtx_engines import rtx_engine

import trtfast
from trtfast import cli, engine_file, models, reference
from trtfast.engine import check_compatibility

pytestmark = pytest.mark.skipif(
    reference.unavailable_reason("rtx") is not None,
    reason=f"TensorRT-RTX is not installed: {reference.unavailable_reason('rtx')}",
)


# A machine with standard TensorRT and an RTX GPU, as check_compatibility sees it.
ANOTHER_MACHINE = {
    "library_path": "/opt/tensorrt/lib/libnvinfer.so.11",
    "gpu_name": "NVIDIA RTX 4090",
    "compute_capability": (8, 9),
}


def _rtx_version() -> str:
    from trtfast.reference._tensorrt import tensorrt

    return tensorrt("rtx").version


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.mark.parametrize("name", models.names())
def test_bundled_models_build_and_read_back(name: str, model_folder: Path, tmp_path: Path) -> None:
    output = tmp_path / f"{name}.engine"
    source = models.path(name, model_folder)
    info = reference.build(
        source, edition="rtx", output=output, shapes=models.shapes(name), progress=False
    )
    read = trtfast.inspect(output)
    assert read == info
    assert read.edition == "rtx"
    assert read.tensorrt_version == _rtx_version()
    # Built without a GPU, for any GPU TensorRT-RTX supports.
    assert (read.gpu_name, read.compute_capability) == ("", (0, 0))
    assert not read.raw_plan and read.plan_size > 0

    proto = onnx.load(str(source))
    assert [spec.name for spec in read.inputs] == [value.name for value in proto.graph.input]
    assert [spec.name for spec in read.outputs] == [value.name for value in proto.graph.output]
    for spec in (*read.inputs, *read.outputs):
        assert spec.dtype == "float32"
        assert spec.shape[0] == -1  # the batch dimension stays dynamic
    (images,) = read.inputs
    (shape_range,) = models.shapes(name).values()
    assert images.shape[1:] == shape_range[0][1:]
    assert images.profiles == (shape_range,)
    assert read.build_options["precision"] == "fp32"
    assert read.build_options["strongly_typed"] is True

    # The plan is TensorRT-RTX's own (its tag is 'vtrt').
    _, plan = trtfast.engine_file.read(output)
    assert plan[:4] == b"vtrt"


def test_fp16_keeps_input_and_output_types(model_folder: Path, tmp_path: Path) -> None:
    fp32 = reference.build(
        models.path("mlp", model_folder),
        edition="rtx",
        output=tmp_path / "fp32.engine",
        shapes=models.shapes("mlp"),
        progress=False,
    )
    fp16 = reference.build(
        models.path("mlp", model_folder),
        edition="rtx",
        output=tmp_path / "fp16.engine",
        precision="fp16",
        shapes=models.shapes("mlp"),
        progress=False,
    )
    assert fp16.build_options["precision"] == "fp16"
    assert [s.dtype for s in (*fp16.inputs, *fp16.outputs)] == ["float32", "float32"]
    assert fp16.plan_sha256 != fp32.plan_sha256


def test_the_engine_cache_skips_a_second_build(model_folder: Path, tmp_path: Path) -> None:
    events: list[tuple[str, str, int, int]] = []
    arguments: dict[str, Any] = {
        "edition": "rtx",
        "cache_dir": tmp_path / "engines",
        "shapes": models.shapes("cnn"),
        "progress": lambda *event: events.append(event),
    }
    first = reference.build(models.path("cnn", model_folder), **arguments)
    phases = {phase for _, phase, _, _ in events}
    assert "Building engine" in phases  # TensorRT-RTX's own phases reach the callback
    events.clear()
    again = reference.build(models.path("cnn", model_folder), output=tmp_path / "copy", **arguments)
    assert events == []  # nothing was built
    assert again == first
    assert len(os.listdir(tmp_path / "engines")) == 1


def test_an_engine_copied_over_a_cache_entry_is_not_returned(
    model_folder: Path, tmp_path: Path
) -> None:
    arguments: dict[str, Any] = {"edition": "rtx", "progress": False}
    cache = tmp_path / "engines"
    cnn = reference.build(
        models.path("cnn", model_folder), cache_dir=cache, shapes=models.shapes("cnn"), **arguments
    )
    (entry,) = os.listdir(cache)
    # The engine records the parser and CUDA of the TensorRT-RTX that built it.
    assert cnn.environment["library"]["parser"] is not None
    assert cnn.environment["gpu"] == {}
    other = reference.build(
        models.path("mlp", model_folder),
        output=tmp_path / "mlp.engine",
        shapes=models.shapes("mlp"),
        **arguments,
    )
    (cache / entry).write_bytes((tmp_path / "mlp.engine").read_bytes())
    with pytest.warns(trtfast.CacheWarning, match="does not match this build"):
        again = reference.build(
            models.path("cnn", model_folder),
            cache_dir=cache,
            shapes=models.shapes("cnn"),
            **arguments,
        )
    assert again.model_sha256 == cnn.model_sha256 != other.model_sha256
    assert trtfast.inspect(cache / entry).model_sha256 == cnn.model_sha256


def test_external_weights_are_found_beside_the_model(tmp_path: Path) -> None:
    source = tmp_path / "cnn.onnx"
    onnx.save_model(
        models.model("cnn"),
        str(source),
        save_as_external_data=True,
        location="weights.bin",
        size_threshold=0,
    )
    assert (tmp_path / "weights.bin").is_file()
    info = reference.build(
        source,
        edition="rtx",
        output=tmp_path / "cnn.engine",
        shapes=models.shapes("cnn"),
        progress=False,
    )
    assert info.outputs[0].name == "logits"


def test_parser_errors_name_the_node(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("NoSuchOp", ["x"], ["y"], name="mystery")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(trtfast.BuildError) as raised:
        reference.build(model, edition="rtx", output=tmp_path / "e", progress=False)
    assert "node 0 'mystery' (NoSuchOp)" in str(raised.value)
    (entry,) = raised.value.parser_errors
    assert (entry["node_index"], entry["node_name"], entry["op_type"]) == (0, "mystery", "NoSuchOp")
    assert not (tmp_path / "e").exists()


def test_progress_can_cancel_and_its_exceptions_propagate(
    model_folder: Path, tmp_path: Path
) -> None:
    source = models.path("cnn", model_folder)
    shapes = models.shapes("cnn")

    def cancel(event: str, phase: str, step: int, total: int) -> bool:
        return phase != "Building engine"

    with pytest.raises(trtfast.BuildError, match="cancelled by its progress callback"):
        reference.build(
            source, edition="rtx", output=tmp_path / "e", shapes=shapes, progress=cancel
        )

    def interrupt(event: str, phase: str, step: int, total: int) -> None:
        if phase == "Building engine":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        reference.build(
            source, edition="rtx", output=tmp_path / "e", shapes=shapes, progress=interrupt
        )
    assert os.listdir(tmp_path) == []


def test_options_rtx_has_no_use_for_are_refused(model_folder: Path, tmp_path: Path) -> None:
    source = models.path("cnn", model_folder)
    with pytest.raises(trtfast.BuildOptionError, match="TensorRT-RTX has no timing cache"):
        reference.build(
            source, edition="rtx", output=tmp_path / "e", timing_cache=tmp_path / "timing"
        )
    with pytest.raises(trtfast.BuildOptionError, match="hardware_compatibility"):
        reference.build(
            source, edition="rtx", output=tmp_path / "e", hardware_compatibility="ampere_plus"
        )
    # trtfast.build's own checks come before any TensorRT call.
    with pytest.raises(trtfast.ProfileError, match="'images'"):
        reference.build(source, edition="rtx", output=tmp_path / "e", progress=False)
    with pytest.raises(trtfast.BuildError, match="needs a quantized model"):
        reference.build(
            source,
            edition="rtx",
            output=tmp_path / "e",
            precision="int8",
            shapes=models.shapes("cnn"),
        )
    assert os.listdir(tmp_path) == []


def test_standard_runtimes_refuse_rtx_engines(model_folder: Path, tmp_path: Path) -> None:
    output = tmp_path / "cnn.engine"
    info = reference.build(
        models.path("cnn", model_folder),
        edition="rtx",
        output=output,
        shapes=models.shapes("cnn"),
        progress=False,
    )
    here = {"tensorrt_version": info.tensorrt_version, **ANOTHER_MACHINE}
    with pytest.raises(trtfast.EngineCompatibilityError, match="TensorRT rtx edition"):
        check_compatibility(info, **here)  # type: ignore[arg-type]
    check_compatibility(info, edition="rtx", **here)  # type: ignore[arg-type]
    # With a different TensorRT-RTX version it is refused too, naming both.
    older = dataclasses.replace(info, tensorrt_version="1.0.0")
    with pytest.raises(trtfast.EngineCompatibilityError, match=r"built with TensorRT 1\.0\.0"):
        check_compatibility(older, edition="rtx", **here)  # type: ignore[arg-type]
    # trtfast's C++ runtime refuses it before TensorRT sees the plan.
    with pytest.raises(trtfast.EngineCompatibilityError):
        trtfast.Engine.load(output)


def test_the_reference_runtime_checks_the_machine_before_tensorrt(
    model_folder: Path, tmp_path: Path
) -> None:
    pytest.importorskip("cuda.bindings.runtime", reason="cuda-python is not installed")
    if trtfast._core.cuda.device_count() > 0:
        pytest.skip("checks a machine without a GPU")
    output = rtx_engine(tmp_path)
    with pytest.raises(
        trtfast.EngineCompatibilityError,
        match=r"cannot load the engine on CUDA device 0: this machine has 0 usable device\(s\)",
    ):
        reference.Engine.load(output)


def test_bare_rtx_plans_are_recognized_and_named(model_folder: Path, tmp_path: Path) -> None:
    engine = rtx_engine(tmp_path)
    plan = tmp_path / "mlp.plan"
    engine_file.export_plan(engine, plan)
    assert plan.read_bytes()[:4] == b"vtrt"  # TensorRT-RTX's tag; TensorRT's is 'ftrt'
    read = trtfast.inspect(plan)
    assert read.raw_plan and read.edition == "rtx"
    assert read.tensorrt_version == _rtx_version()
    text = engine_file.summary(read)
    assert text.startswith("bare TensorRT-RTX plan (no trtfast header)")
    assert "any GPU TensorRT-RTX supports" in text
    # The standard runtime names the edition instead of calling the file foreign.
    here = {"tensorrt_version": read.tensorrt_version, **ANOTHER_MACHINE}
    with pytest.raises(trtfast.EngineCompatibilityError, match="TensorRT rtx edition"):
        check_compatibility(read, **here)  # type: ignore[arg-type]
    check_compatibility(read, edition="rtx", **here)  # type: ignore[arg-type]
    wrapped = engine_file.summary(trtfast.inspect(engine))
    assert "GPU            any GPU TensorRT-RTX supports" in wrapped
    assert "compute capability 0.0" not in wrapped


def test_the_command_line_builds_with_tensorrt_rtx(
    model_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "mlp.engine"
    source = str(models.path("mlp", model_folder))
    ((name, (low, opt, high)),) = models.shapes("mlp").items()
    shapes = f"{name}:" + ",".join("x".join(str(d) for d in s) for s in (low, opt, high))
    arguments = ["build", source, "-o", str(output), "--shapes", shapes, "--no-progress"]
    assert cli.main([*arguments, "--edition", "rtx"]) == 0
    printed = capsys.readouterr().out
    assert f"TensorRT-RTX {_rtx_version()} engine for any GPU TensorRT-RTX supports" in printed
    info = trtfast.inspect(output)
    assert (info.edition, info.tensorrt_version) == ("rtx", _rtx_version())
    # What TensorRT-RTX refuses is refused from the command line as from Python.
    status = cli.main([*arguments, "--edition", "rtx", "--timing-cache", str(tmp_path / "t")])
    assert status == 2
    assert "TensorRT-RTX has no timing cache" in capsys.readouterr().err


def test_shape_tensor_inputs_build_with_the_range_of_their_values(tmp_path: Path) -> None:
    source = tmp_path / "reshape.onnx"
    onnx.save_model(build_models.reshape_by_input(), str(source))
    x = ([1, 16], [4, 16], [8, 16])
    values = {"values": ([1, -1], [4, -1], [8, -1])}
    info = reference.build(
        source,
        edition="rtx",
        output=tmp_path / "reshape.engine",
        shapes={"x": x, "target": values},
        progress=False,
    )
    assert [spec.name for spec in info.inputs] == ["x", "target"]

    def build(shapes: Any) -> None:
        reference.build(
            source, edition="rtx", output=tmp_path / "refused.engine", shapes=shapes, progress=False
        )

    hint = r"--shapes target:values=MIN,OPT,MAX"
    with pytest.raises(trtfast.BuildError, match=r"'target' is a shape tensor .*" + hint):
        build({"x": x})
    # Shapes for it (static ones, which a profile leaves out) are no range of values either.
    with pytest.raises(trtfast.BuildError, match=r"'target' is a shape tensor .*" + hint):
        build({"x": x, "target": ([2], [2], [2])})


def test_shape_tensor_values_make_a_profile_when_every_shape_is_static(tmp_path: Path) -> None:
    # With no profile, TensorRT would refuse the build: the values' range is only set in one.
    source = tmp_path / "reshape.onnx"
    onnx.save_model(build_models.reshape_by_input(batch=4), str(source))
    output = tmp_path / "reshape.engine"
    arguments = ["build", str(source), "-o", str(output), "--no-progress", "--edition", "rtx"]
    assert cli.main([*arguments, "--shapes", "target:values=1x-1,4x16,64x64"]) == 0
    assert trtfast.inspect(output).inputs[0].shape == (4, 16)


def test_errors_logged_on_threads_without_a_collection_reach_every_build_collecting_them() -> None:
    # A build's worker threads collect nothing of their own; what they log must reach the
    # BuildError of the build running, not be lost because it was logged on another thread.
    from trtfast.reference._tensorrt import tensorrt

    trt = tensorrt("rtx")
    error = trt.module.ILogger.Severity.ERROR

    def worker() -> None:
        trt.logger.log(error, "logged on a worker thread")

    with trt.errors.collect(any_thread=True) as build, trt.errors.collect() as nested:
        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
        trt.logger.log(error, "logged on the build's thread")
    assert build == ["logged on a worker thread"]
    assert nested == ["logged on the build's thread"]
    with trt.errors.collect() as this_thread_only:
        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
    assert this_thread_only == []
