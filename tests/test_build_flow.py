"""The whole of trtfast.build on a CPU: engine cache, timing cache, outputs, progress and
interrupts, with a stand-in for TensorRT's builder (which needs a GPU) that records what it was
given and returns a plan made from the ONNX bytes."""

from __future__ import annotations

import errno
import hashlib
import os
import sys
from pathlib import Path
from typing import Any

import build_models
import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto

import trtfast
from trtfast.errors import BuildError

engine_file = pytest.importorskip("trtfast.engine_file")
build_module = sys.modules["trtfast.build"]

SHAPES = {"images": ((1, 3, 16, 16), (4, 3, 16, 16), (8, 3, 16, 16))}
_DTYPES = {TensorProto.FLOAT: "float32", TensorProto.FLOAT16: "float16", TensorProto.INT64: "int64"}


class StandInTensorRT:
    """TensorRT's library and builder as trtfast.build sees them."""

    kind = "full"
    path = "/stand-in/libnvinfer.so.11"

    def __init__(self, version: str = "11.4.0") -> None:
        self.version = version
        self.calls: list[dict[str, Any]] = []
        self.interrupt = False

    def build_plan(self, library: Any, onnx_bytes: bytes, options: dict[str, Any], progress: Any):
        assert library is self
        model = onnx.load_model_from_string(onnx_bytes)
        self.calls.append({"options": options, "model": model})
        progress("start", "Building engine", 0, 2)
        progress("step", "Building engine", 1, 2)
        if self.interrupt:
            raise KeyboardInterrupt
        if progress("end", "Building engine", 2, 2) is False:
            raise BuildError("cancelled")

        def tensors(values: Any, is_input: bool) -> list[dict[str, Any]]:
            return [
                {
                    "name": value.name,
                    "dtype": _DTYPES[value.type.tensor_type.elem_type],
                    "shape": [d.dim_value or -1 for d in value.type.tensor_type.shape.dim],
                    "is_input": is_input,
                }
                for value in values
            ]

        return {
            "plan": b"plan:" + hashlib.sha256(onnx_bytes).digest(),
            "timing_cache": (options["timing_cache"] or b"") + b"entry\n",
            "tensorrt_version": self.version,
            "inputs": tensors(model.graph.input, True),
            "outputs": tensors(model.graph.output, False),
        }


@pytest.fixture
def tensorrt(monkeypatch: pytest.MonkeyPatch) -> StandInTensorRT:
    stand_in = StandInTensorRT()
    gpu = {"index": 0, "name": "Stand-in GPU", "compute_capability": (9, 0)}
    monkeypatch.setattr(build_module, "tensorrt_library", lambda: stand_in)
    monkeypatch.setattr(build_module, "_gpu", lambda device: gpu)
    monkeypatch.setattr(build_module._core, "build_plan", stand_in.build_plan, raising=False)
    return stand_in


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    path = tmp_path / "cnn.onnx"
    onnx.save_model(build_models.cnn(), str(path))
    return path


def test_build_writes_an_engine_file(tensorrt, tmp_path, model_path):
    output = tmp_path / "cnn.engine"
    info = trtfast.build(model_path, output=output, shapes=SHAPES, workspace="1GiB", progress=False)
    (call,) = tensorrt.calls
    assert call["options"] == {
        "precision": "fp32",
        "strongly_typed": True,
        "profiles": [{"images": [[1, 3, 16, 16], [4, 3, 16, 16], [8, 3, 16, 16]]}],
        "workspace": 2**30,
        "timing_cache": None,
        "optimization_level": None,
        "version_compatible": False,
        "hardware_compatibility": None,
        "plugins": [],
        "device": 0,
        "model_dir": str(tmp_path.resolve()),
    }
    assert info == engine_file.read_info(output)
    assert info.tensorrt_version == "11.4.0"
    assert info.gpu_name == "Stand-in GPU"
    assert info.compute_capability == (9, 0)
    assert info.model_sha256 == hashlib.sha256(model_path.read_bytes()).hexdigest()
    assert info.inputs[0].profiles == (SHAPES["images"],)
    assert info.build_options["workspace"] == 2**30
    assert sorted(os.listdir(tmp_path)) == ["cnn.engine", "cnn.onnx"]


def test_fp16_on_tensorrt_11_converts_the_model_and_keeps_io_types(tensorrt, tmp_path):
    trtfast.build(
        build_models.cnn(), output=tmp_path / "e", precision="fp16", shapes=SHAPES, progress=False
    )
    (call,) = tensorrt.calls
    parsed = call["model"]
    assert call["options"]["strongly_typed"] is True
    assert {t.data_type for t in parsed.graph.initializer} == {TensorProto.FLOAT16}
    assert [v.type.tensor_type.elem_type for v in parsed.graph.input] == [TensorProto.FLOAT]
    feeds = {"images": np.random.default_rng(0).random((2, 3, 16, 16), dtype=np.float32)}
    session = onnxruntime.InferenceSession(parsed.SerializeToString())
    assert session.run(None, feeds)[0].dtype == np.float32


def test_fp16_on_tensorrt_10_uses_builder_flags(tensorrt, tmp_path):
    tensorrt.version = "10.16.0"
    trtfast.build(
        build_models.cnn(), output=tmp_path / "e", precision="fp16", shapes=SHAPES, progress=False
    )
    (call,) = tensorrt.calls
    assert call["options"]["strongly_typed"] is False
    assert call["options"]["precision"] == "fp16"
    assert {t.data_type for t in call["model"].graph.initializer} == {TensorProto.FLOAT}


def test_engine_cache_hits_skip_the_build(tensorrt, tmp_path, model_path):
    cache = tmp_path / "engines"
    first = trtfast.build(model_path, cache_dir=cache, shapes=SHAPES, progress=False)
    (entry,) = os.listdir(cache)
    again = trtfast.build(
        model_path, output=tmp_path / "copy.engine", cache_dir=cache, shapes=SHAPES, progress=False
    )
    assert len(tensorrt.calls) == 1
    assert again == first
    assert (tmp_path / "copy.engine").read_bytes() == (cache / entry).read_bytes()
    # Another option, another TensorRT or another GPU: a new entry.
    trtfast.build(model_path, cache_dir=cache, shapes=SHAPES, precision="fp16", progress=False)
    tensorrt.version = "11.5.0"
    trtfast.build(model_path, cache_dir=cache, shapes=SHAPES, progress=False)
    assert len(tensorrt.calls) == 3
    assert len(os.listdir(cache)) == 3


def test_a_corrupt_cache_entry_is_rebuilt(tensorrt, tmp_path, model_path):
    cache = tmp_path / "engines"
    trtfast.build(model_path, cache_dir=cache, shapes=SHAPES, progress=False)
    (entry,) = os.listdir(cache)
    (cache / entry).write_bytes(b"garbage")
    trtfast.build(model_path, cache_dir=cache, shapes=SHAPES, progress=False)
    assert len(tensorrt.calls) == 2
    engine_file.read(cache / entry)


def test_the_timing_cache_is_loaded_and_saved(tensorrt, tmp_path, model_path):
    timing = tmp_path / "caches" / "cnn.timing"
    for _ in range(2):
        trtfast.build(
            model_path, output=tmp_path / "e", shapes=SHAPES, timing_cache=timing, progress=False
        )
    assert [call["options"]["timing_cache"] for call in tensorrt.calls] == [None, b"entry\n"]
    assert timing.read_bytes() == b"entry\nentry\n"


# --- caches that cannot be written: a warning, and the build result all the same ----------------


def no_space_left(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fault injection: the disk is full when a file is flushed."""

    def fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", fsync)


def test_an_engine_cache_that_cannot_be_created_warns_and_returns_the_build(
    tensorrt, tmp_path, model_path
):
    blocker = tmp_path / "not-a-folder"
    blocker.write_bytes(b"")
    output = tmp_path / "cnn.engine"
    with pytest.warns(trtfast.CacheWarning, match=r"engine cache .*not-a-folder.*Not a directory"):
        info = trtfast.build(
            model_path, output=output, cache_dir=blocker / "engines", shapes=SHAPES, progress=False
        )
    assert info == engine_file.read_info(output)
    with pytest.warns(trtfast.CacheWarning, match="returned without being cached"):
        alone = trtfast.build(
            model_path, cache_dir=blocker / "engines", shapes=SHAPES, progress=False
        )
    assert alone == info
    assert len(tensorrt.calls) == 2


def test_a_full_disk_under_the_engine_cache_warns_and_returns_the_build(
    tensorrt, tmp_path, model_path, monkeypatch
):
    cache = tmp_path / "engines"
    with monkeypatch.context() as full:
        no_space_left(full)
        with pytest.warns(trtfast.CacheWarning, match="No space left on device"):
            info = trtfast.build(model_path, cache_dir=cache, shapes=SHAPES, progress=False)
    assert os.listdir(cache) == []  # nothing half-written
    assert info.plan_size == len(tensorrt_plan(model_path))
    assert info.plan_sha256 == hashlib.sha256(tensorrt_plan(model_path)).hexdigest()
    # Space again: the next build stores the same engine.
    assert trtfast.build(model_path, cache_dir=cache, shapes=SHAPES, progress=False) == info
    assert len(os.listdir(cache)) == 1


def test_a_full_disk_under_the_output_raises_naming_it(tensorrt, tmp_path, model_path, monkeypatch):
    output = tmp_path / "cnn.engine"
    no_space_left(monkeypatch)
    with pytest.raises(OSError, match=r"No space left on device: .*cnn\.engine") as raised:
        trtfast.build(model_path, output=output, shapes=SHAPES, progress=False)
    assert raised.value.errno == errno.ENOSPC
    assert sorted(os.listdir(tmp_path)) == ["cnn.onnx"]


def test_a_timing_cache_that_cannot_be_read_or_saved_warns(tensorrt, tmp_path, model_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_bytes(b"")
    with pytest.warns(trtfast.CacheWarning) as caught:
        info = trtfast.build(
            model_path,
            output=tmp_path / "e",
            timing_cache=blocker / "cnn.timing",
            shapes=SHAPES,
            progress=False,
        )
    messages = [str(warning.message) for warning in caught]
    assert len(messages) == 2
    assert (
        messages[0].startswith("cannot read the timing cache") and "Building without" in messages[0]
    )
    assert messages[1].startswith("cannot save the timing cache")
    assert tensorrt.calls[0]["options"]["timing_cache"] is None
    assert info == engine_file.read_info(tmp_path / "e")


def tensorrt_plan(model_path: Path) -> bytes:
    """The plan the stand-in builder makes for a model."""
    return b"plan:" + hashlib.sha256(model_path.read_bytes()).digest()


def test_progress_callable_sees_every_phase_and_can_cancel(tensorrt, tmp_path, model_path):
    events: list[tuple[str, str, int, int]] = []
    trtfast.build(
        model_path,
        output=tmp_path / "e",
        shapes=SHAPES,
        progress=lambda *event: events.append(event),
    )
    assert ("start", "Building engine", 0, 2) in events
    assert events[0] == ("start", "trtfast build", 0, 3)
    assert events[-1] == ("end", "trtfast build", 3, 3)

    def cancel(event: str, phase: str, step: int, total: int) -> bool:
        return phase != "Building engine"

    with pytest.raises(BuildError, match="cancelled"):
        trtfast.build(model_path, output=tmp_path / "cancelled", shapes=SHAPES, progress=cancel)
    assert not (tmp_path / "cancelled").exists()


def test_progress_bar_on_stderr(tensorrt, tmp_path, model_path, capsys):
    trtfast.build(model_path, output=tmp_path / "e", shapes=SHAPES, progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "trtfast build" in captured.err


def test_an_interrupted_build_writes_nothing(tensorrt, tmp_path, model_path):
    tensorrt.interrupt = True
    with pytest.raises(KeyboardInterrupt):
        trtfast.build(
            model_path,
            output=tmp_path / "e",
            cache_dir=tmp_path / "engines",
            timing_cache=tmp_path / "t",
            shapes=SHAPES,
            progress=False,
        )
    assert os.listdir(tmp_path) == ["cnn.onnx"]


def test_cli_build(tensorrt, tmp_path, model_path, capsys):
    from trtfast.cli import main

    output = tmp_path / "cnn.engine"
    status = main(
        [
            "build",
            str(model_path),
            "-o",
            str(output),
            "--precision",
            "bf16",
            "--shapes",
            "images:1x3x16x16,4x3x16x16,8x3x16x16",
            "--no-progress",
        ]
    )
    assert status == 0
    assert capsys.readouterr().out.startswith(f"{output}: TensorRT 11.4.0 engine for Stand-in")
    assert engine_file.read_info(output).build_options["precision"] == "bf16"
