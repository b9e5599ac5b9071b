"""The whole of trtfast.build on a CPU: engine cache, timing cache, outputs, progress and
interrupts, with a stand-in for TensorRT's builder (which needs a GPU) that records what it was
given and returns a plan made from the ONNX bytes."""

from __future__ import annotations

import errno
import hashlib
import importlib.util
import logging
import os
import sys
from pathlib import Path
from typing import Any

import build_models
import numpy as np
import onnx
import onnxruntime
import prepare_zoo
import pytest
from onnx import TensorProto

import trtfast
from trtfast.errors import BuildError, BuildOptionError

engine_file = pytest.importorskip("trtfast.engine_file")
build_module = importlib.import_module("trtfast.build")

SHAPES = {"images": ((1, 3, 16, 16), (4, 3, 16, 16), (8, 3, 16, 16))}
_DTYPES = {TensorProto.FLOAT: "float32", TensorProto.FLOAT16: "float16", TensorProto.INT64: "int64"}

needs_prepare_extra = pytest.mark.skipif(
    importlib.util.find_spec("onnx_graphsurgeon") is None
    or importlib.util.find_spec("onnxruntime") is None,
    reason="constant folding needs the prepare extra (onnx-graphsurgeon, onnxruntime)",
)


class StandInTensorRT:
    """TensorRT's library and builder as trtfast.build sees them."""

    kind = "full"
    path = "/stand-in/libnvinfer.so.11"

    def __init__(self, version: str = "11.4.0") -> None:
        self.version = version
        self.calls: list[dict[str, Any]] = []
        self.interrupt = False
        # What the stand-in parser refuses, as TensorRT's does: opsets below 9, and these
        # operators.
        self.refused_ops: set[str] = set()
        self.fail_build = False
        # The GPU as _core.cuda.devices() lists it.
        self.gpu = {
            "index": 0,
            "name": "Stand-in GPU",
            "compute_capability": (9, 0),
            "uuid": "GPU-00000000-0000-0000-0000-000000000001",
            "multiprocessors": 132,
            "total_memory": 80 * 2**30,
        }

    def build_plan(self, library: Any, onnx_bytes: bytes, options: dict[str, Any], progress: Any):
        assert library is self
        model = onnx.load_model_from_string(onnx_bytes)
        self.calls.append({"options": options, "model": model})
        self._parse(model)
        if self.fail_build:
            raise BuildError("no implementation for a layer on this GPU")
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

    def _parse(self, model: onnx.ModelProto) -> None:
        opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
        errors = [
            {
                "message": f"opset {opset} is not supported" if opset < 9 else "unsupported op",
                "node_name": node.name,
                "op_type": node.op_type,
                "node_index": index,
            }
            for index, node in enumerate(model.graph.node)
            if opset < 9 or node.op_type in self.refused_ops
        ]
        if errors:
            raise BuildError("TensorRT's ONNX parser refused the model", errors[:1])


@pytest.fixture
def tensorrt(monkeypatch: pytest.MonkeyPatch) -> StandInTensorRT:
    stand_in = StandInTensorRT()
    monkeypatch.setattr(build_module, "tensorrt_library", lambda: stand_in)
    monkeypatch.setattr(build_module, "_gpu", lambda device: stand_in.gpu)
    monkeypatch.setattr(build_module._core, "build_plan", stand_in.build_plan, raising=False)
    # A build's TensorRT step runs in a child process, which would not see the stand-in.
    monkeypatch.setattr(
        build_module, "_core_plan_builder", lambda options: build_module._core_builder_here()
    )
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


def test_the_engine_cache_tells_gpu_models_of_one_compute_capability_apart(
    tensorrt, tmp_path, model_path
):
    cache = tmp_path / "engines"
    tensorrt.gpu = {**tensorrt.gpu, "name": "NVIDIA H100 PCIe", "multiprocessors": 114}
    pcie = trtfast.build(model_path, cache_dir=cache, shapes=SHAPES, progress=False)
    tensorrt.gpu = {**tensorrt.gpu, "name": "NVIDIA H100 80GB HBM3", "multiprocessors": 132}
    sxm = trtfast.build(model_path, cache_dir=cache, shapes=SHAPES, progress=False)
    assert len(tensorrt.calls) == 2
    assert (pcie.gpu_name, sxm.gpu_name) == ("NVIDIA H100 PCIe", "NVIDIA H100 80GB HBM3")
    assert sxm.environment["gpu"]["multiprocessors"] == 132
    # A MIG slice of the same GPU has fewer SMs: another engine.
    tensorrt.gpu = {**tensorrt.gpu, "multiprocessors": 16, "total_memory": 10 * 2**30}
    trtfast.build(model_path, cache_dir=cache, shapes=SHAPES, progress=False)
    assert len(tensorrt.calls) == 3
    # Another card of the same model shares the entry.
    tensorrt.gpu = {**tensorrt.gpu, "uuid": "GPU-00000000-0000-0000-0000-000000000002"}
    trtfast.build(model_path, cache_dir=cache, shapes=SHAPES, progress=False)
    assert len(tensorrt.calls) == 3


def test_hardware_compatible_engines_are_shared_by_gpu_models(tensorrt, tmp_path, model_path):
    cache = tmp_path / "engines"
    for name in ("NVIDIA H100 PCIe", "NVIDIA H100 80GB HBM3"):
        tensorrt.gpu = {**tensorrt.gpu, "name": name}
        trtfast.build(
            model_path,
            cache_dir=cache,
            shapes=SHAPES,
            hardware_compatibility="same_compute_capability",
            progress=False,
        )
    assert len(tensorrt.calls) == 1


def test_a_cache_entry_that_does_not_match_the_request_is_rebuilt(tensorrt, tmp_path, model_path):
    cache = tmp_path / "engines"
    trtfast.build(model_path, cache_dir=cache, shapes=SHAPES, progress=False)
    (entry,) = os.listdir(cache)
    # An engine built from other weights, copied over the entry.
    other_model = tmp_path / "other.onnx"
    proto = build_models.cnn()
    weights = proto.graph.initializer[0]
    weights.CopyFrom(
        onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(weights) + 1, weights.name)
    )
    onnx.save_model(proto, str(other_model))
    other = trtfast.build(
        other_model, output=tmp_path / "other.engine", shapes=SHAPES, progress=False
    )
    assert other.model_sha256 != hashlib.sha256(model_path.read_bytes()).hexdigest()
    (cache / entry).write_bytes((tmp_path / "other.engine").read_bytes())
    with pytest.warns(trtfast.CacheWarning, match=r"does not match this build \(model_sha256"):
        again = trtfast.build(model_path, cache_dir=cache, shapes=SHAPES, progress=False)
    assert len(tensorrt.calls) == 3
    assert again.model_sha256 == hashlib.sha256(model_path.read_bytes()).hexdigest()
    # The rebuilt engine replaced the entry: the next build is a hit.
    assert engine_file.read_info(cache / entry) == again
    trtfast.build(model_path, cache_dir=cache, shapes=SHAPES, progress=False)
    assert len(tensorrt.calls) == 3


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


def test_a_timing_cache_merge_that_fails_keeps_the_engine(
    tensorrt, tmp_path, model_path, monkeypatch
):
    timing = tmp_path / "cnn.timing"
    output = tmp_path / "cnn.engine"

    def merge(library: Any, caches: list[bytes], device: int) -> bytes:
        raise BuildError("TensorRT could not combine the timing caches")

    monkeypatch.setattr(build_module._core, "combine_timing_caches", merge, raising=False)

    def another_build_saves(event: str, phase: str, step: int, total: int) -> None:
        # Another build saves the timing cache while this one runs: saving must merge.
        if phase == "Building engine" and event == "start":
            timing.write_bytes(b"theirs\n")

    with pytest.warns(trtfast.CacheWarning, match="cannot save the timing cache.*combine"):
        info = trtfast.build(
            model_path,
            output=output,
            timing_cache=timing,
            shapes=SHAPES,
            progress=another_build_saves,
        )
    assert info == engine_file.read_info(output)
    assert timing.read_bytes() == b"theirs\n"


def test_a_timing_cache_lock_that_fails_keeps_the_engine(
    tensorrt, tmp_path, model_path, monkeypatch
):
    """A file system without locks: the engine is written all the same."""
    import filelock

    def no_locks(self: Any, *args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(filelock.FileLock, "acquire", no_locks)
    output = tmp_path / "cnn.engine"
    with pytest.warns(trtfast.CacheWarning, match="cannot save the timing cache.*No locks"):
        info = trtfast.build(
            model_path,
            output=output,
            timing_cache=tmp_path / "cnn.timing",
            shapes=SHAPES,
            progress=False,
        )
    assert info == engine_file.read_info(output)


def test_a_timing_cache_without_filelock_is_refused_before_the_build(
    tensorrt, tmp_path, model_path, monkeypatch
):
    monkeypatch.setitem(sys.modules, "filelock", None)  # import filelock raises ImportError
    with pytest.raises(ImportError, match=r"filelock.*pip install 'trtfast\[build\]'"):
        trtfast.build(
            model_path,
            output=tmp_path / "cnn.engine",
            timing_cache=tmp_path / "cnn.timing",
            shapes=SHAPES,
            progress=False,
        )
    assert tensorrt.calls == []
    # Without a timing cache, filelock is not needed.
    trtfast.build(model_path, output=tmp_path / "cnn.engine", shapes=SHAPES, progress=False)


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


# --- preparation when the parser refuses ------------------------------------------------------


def default_opset(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def test_a_model_the_parser_takes_is_built_as_given(tensorrt, tmp_path, model_path):
    info = trtfast.build(model_path, output=tmp_path / "e", shapes=SHAPES, progress=False)
    (call,) = tensorrt.calls
    assert call["model"] == onnx.load(str(model_path))
    assert info.build_options["prepare"] == {"mode": "auto", "applied": False}


@needs_prepare_extra
def test_a_refused_model_is_prepared_and_built_again(tensorrt, tmp_path, caplog):
    model = prepare_zoo.legacy_cnn()
    with caplog.at_level(logging.WARNING, logger="trtfast.build"):
        info = trtfast.build(model, output=tmp_path / "e", progress=False)
    given, prepared = tensorrt.calls
    assert default_opset(given["model"]) == 6
    assert default_opset(prepared["model"]) == 17
    assert "refused the model as given (node 0 '' (Conv): opset 6 is not supported)" in caplog.text
    assert "building it prepared: opset 6 -> 17" in caplog.text
    record = info.build_options["prepare"]
    assert record["mode"] == "auto"
    assert record["applied"] is True
    assert record["reason"].startswith("the parser refused the model as given: node 0")
    assert record["opset"] == [6, 17]
    assert record["folded_nodes"] >= 1
    assert engine_file.read_info(tmp_path / "e").build_options == info.build_options
    # The engine's inputs are the prepared model's: the same as the original's.
    assert [spec.name for spec in info.inputs] == ["x"]


@needs_prepare_extra
@pytest.mark.parametrize("from_path", [True, False])
def test_a_refused_model_is_prepared_from_the_model_as_given_then_converted(
    tensorrt, tmp_path, from_path
):
    model = prepare_zoo.legacy_cnn()
    source = model
    if from_path:
        source = tmp_path / "legacy.onnx"
        onnx.save_model(model, str(source))
    trtfast.build(source, output=tmp_path / "e", precision="fp16", progress=False)
    given, prepared = tensorrt.calls
    for call in (given, prepared):
        parsed = call["model"]
        (x,) = [value for value in parsed.graph.input if value.name == "x"]
        assert x.type.tensor_type.elem_type == TensorProto.FLOAT
        assert {t.data_type for t in parsed.graph.initializer} <= {
            TensorProto.FLOAT16,
            TensorProto.INT64,
        }
    # Converted once, from the model as given: its input is cast to fp16 by a single Cast.
    casts = [node for node in prepared["model"].graph.node if node.input[0] == "x"]
    assert [node.op_type for node in casts] == ["Cast"]
    assert default_opset(prepared["model"]) == 17
    feeds = {"x": np.random.default_rng(0).normal(size=(1, 3, 8, 8)).astype(np.float32)}
    session = onnxruntime.InferenceSession(prepared["model"].SerializeToString())
    reference = onnxruntime.InferenceSession(prepare_zoo.legacy_cnn_twin().SerializeToString())
    np.testing.assert_allclose(
        session.run(None, feeds)[0], reference.run(None, feeds)[0], rtol=2e-2, atol=2e-3
    )


@needs_prepare_extra
def test_folding_removes_a_constant_subgraph_the_parser_refuses(tensorrt, tmp_path):
    tensorrt.refused_ops = {"NonZero"}
    info = trtfast.build(
        prepare_zoo.constant_subgraph(),
        output=tmp_path / "e",
        shapes={"x": ((1, 8), (2, 8), (4, 8))},
        progress=False,
    )
    assert len(tensorrt.calls) == 2
    assert "NonZero" not in [node.op_type for node in tensorrt.calls[1]["model"].graph.node]
    assert info.build_options["prepare"]["folded_nodes"] == 9


def test_never_builds_only_the_model_as_given(tensorrt, tmp_path):
    with pytest.raises(
        BuildError, match=r"refused the model \(preparing the model may fix"
    ) as caught:
        trtfast.build(
            prepare_zoo.legacy_cnn(), output=tmp_path / "e", progress=False, prepare="never"
        )
    assert caught.value.parser_errors[0]["op_type"] == "Conv"
    assert len(tensorrt.calls) == 1
    assert not (tmp_path / "e").exists()


def test_always_prepares_first(tensorrt, tmp_path, model_path):
    info = trtfast.build(
        model_path, output=tmp_path / "e", shapes=SHAPES, progress=False, prepare="always"
    )
    (call,) = tensorrt.calls
    # Prepared: every value's shape is recorded.
    assert len(call["model"].graph.value_info) == 7
    record = info.build_options["prepare"]
    assert (record["mode"], record["applied"], record["reason"]) == (
        "always",
        True,
        "prepare='always'",
    )


def test_a_failing_build_is_not_retried(tensorrt, tmp_path):
    tensorrt.fail_build = True
    with pytest.raises(BuildError, match="no implementation for a layer"):
        trtfast.build(build_models.cnn(), output=tmp_path / "e", shapes=SHAPES, progress=False)
    assert len(tensorrt.calls) == 1


def test_a_second_refusal_is_raised(tensorrt, tmp_path):
    tensorrt.refused_ops = {"Softmax"}
    with pytest.raises(BuildError, match="refused the model") as caught:
        trtfast.build(build_models.cnn(), output=tmp_path / "e", shapes=SHAPES, progress=False)
    assert caught.value.parser_errors[0]["op_type"] == "Softmax"
    assert len(tensorrt.calls) == 2


def test_external_weights_reach_the_parser_from_their_folder_after_preparing(
    tensorrt, tmp_path, monkeypatch
):
    monkeypatch.setattr(sys.modules["trtfast.prepare._loading"], "_PARK_BYTES", 64)
    path = tmp_path / "legacy.onnx"
    onnx.save_model(
        prepare_zoo.legacy_cnn(),
        str(path),
        save_as_external_data=True,
        location="legacy.weights",
        size_threshold=0,
    )
    trtfast.build(path, output=tmp_path / "e", progress=False)
    given, prepared = tensorrt.calls
    for call in (given, prepared):
        assert call["options"]["model_dir"] == str(tmp_path.resolve())
    locations = {
        entry.value
        for tensor in prepared["model"].graph.initializer
        for entry in tensor.external_data
        if entry.key == "location"
    }
    assert locations == {"legacy.weights"}


def test_a_preparation_that_fails_reports_the_refusal_too(tensorrt, tmp_path):
    path = tmp_path / "legacy.onnx"
    onnx.save_model(
        prepare_zoo.legacy_cnn(),
        str(path),
        save_as_external_data=True,
        location="legacy.weights",
        size_threshold=0,
    )
    weights = tmp_path / "legacy.weights"
    weights.write_bytes(weights.read_bytes()[:-8])  # the last weight loses its end
    pattern = r"refused the model \(preparing the model failed: .*ends before the 40 bytes"
    with pytest.raises(BuildError, match=pattern) as caught:
        trtfast.build(path, output=tmp_path / "e", progress=False)
    assert caught.value.parser_errors[0]["message"] == "opset 6 is not supported"
    assert len(tensorrt.calls) == 1


def test_the_prepare_mode_is_part_of_the_engine_cache_key(tensorrt, tmp_path, model_path):
    cache = tmp_path / "engines"
    for mode in ("auto", "always", "never", "auto"):
        trtfast.build(model_path, cache_dir=cache, shapes=SHAPES, progress=False, prepare=mode)
    assert len(tensorrt.calls) == 3
    assert len(os.listdir(cache)) == 3


@pytest.mark.parametrize("mode", ["sometimes", None, True, "AUTO"])
def test_an_unknown_prepare_mode_is_refused(tensorrt, tmp_path, mode):
    with pytest.raises(BuildOptionError, match="prepare must be 'auto', 'always' or 'never'"):
        trtfast.build(build_models.cnn(), output=tmp_path / "e", prepare=mode)
    assert tensorrt.calls == []


def test_cli_build_says_when_it_prepared(tensorrt, tmp_path, capsys):
    from trtfast.cli import main

    model = tmp_path / "legacy.onnx"
    onnx.save_model(prepare_zoo.legacy_cnn(), str(model))
    output = tmp_path / "legacy.engine"
    assert main(["build", str(model), "-o", str(output), "--no-progress"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("prepared (the parser refused the model as given: node 0")
    assert "opset 6 -> 17" in lines[1]
    assert (
        main(["build", str(model), "-o", str(output), "--no-progress", "--prepare", "never"]) == 1
    )
    assert "preparing the model may fix this" in capsys.readouterr().err
