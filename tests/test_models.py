"""The bundled models and `trtfast demo` on any machine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest

import trtfast
from trtfast import models
from trtfast.cli import main
from trtfast.demo import STOPPED_EARLY, choose_builder


@pytest.mark.parametrize("name", models.names())
def test_models_run_in_onnxruntime_at_every_batch_of_their_profile(
    name: str, tmp_path: Path
) -> None:
    path = models.path(name, tmp_path)
    onnx.checker.check_model(str(path))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (shape_range,) = models.shapes(name).values()
    (output,) = session.get_outputs()
    for batch in (shape_range[0][0], shape_range[1][0], shape_range[2][0]):
        feeds = models.inputs(name, batch=batch)
        (result,) = session.run(None, feeds)
        assert result.shape == (batch, *output.shape[1:])
        assert result.dtype == np.float32
        # Activations stay near unit scale: fp16 builds have headroom.
        assert 0.1 < float(result.std()) < 10.0
        assert np.isfinite(result).all()


def test_models_are_the_same_bytes_everywhere(tmp_path: Path) -> None:
    for name in models.names():
        first = models.path(name, tmp_path / "a").read_bytes()
        assert models.path(name, tmp_path / "b").read_bytes() == first
        assert models.model(name).SerializeToString() == first


def test_a_damaged_model_file_is_rewritten(tmp_path: Path) -> None:
    path = models.path("cnn", tmp_path)
    good = path.read_bytes()
    path.write_bytes(good[:100])
    assert models.path("cnn", tmp_path) == path
    assert path.read_bytes() == good


def test_cache_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TRTFAST_CACHE_DIR", str(tmp_path / "explicit"))
    assert models.cache_dir() == tmp_path / "explicit"
    assert models.path("mlp") == tmp_path / "explicit" / "models" / "mlp.onnx"
    monkeypatch.delenv("TRTFAST_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert models.cache_dir() == tmp_path / "xdg" / "trtfast"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert models.cache_dir() == tmp_path / "home" / ".cache" / "trtfast"


def test_inputs_follow_the_profile() -> None:
    (images,) = models.inputs("cnn").values()
    assert images.shape == (8, 3, 32, 32) and images.dtype == np.float32
    assert models.inputs("mlp", batch=1)["features"].shape == (1, 64)
    assert np.array_equal(
        models.inputs("mlp", seed=3)["features"], models.inputs("mlp", seed=3)["features"]
    )
    with pytest.raises(ValueError, match=r"batch 65 is outside model 'mlp''s profile \(1 to 64\)"):
        models.inputs("mlp", batch=65)
    with pytest.raises(ValueError, match="no bundled model 'resnet'; the models are cnn, mlp"):
        models.path("resnet")


CHOICE = choose_builder()


@pytest.mark.skipif(CHOICE is not None, reason="checks a machine where no TensorRT can build")
def test_demo_without_tensorrt_prints_the_doctors_report(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["demo"]) == STOPPED_EARLY
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "needs the full TensorRT library and a GPU, or TensorRT-RTX" in captured.err
    assert "not ready: " in captured.err  # the doctor's verdict
    assert "tensorrt library" in captured.err


@pytest.mark.skipif(
    CHOICE is None or CHOICE.runs_here,
    reason="checks a machine where TensorRT-RTX builds and trtfast cannot run what it builds",
)
def test_demo_without_a_gpu_builds_with_tensorrt_rtx_and_shows_the_engine(
    tmp_path: Path,
) -> None:
    environment = {**os.environ, "TRTFAST_CACHE_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "trtfast", "demo", "--model", "mlp"],
        capture_output=True,
        text=True,
        env=environment,
        check=False,
    )
    assert result.returncode == STOPPED_EARLY, result.stderr
    assert "Traceback" not in result.stderr
    engine = tmp_path / "engines" / "mlp-fp32.engine"
    info = trtfast.inspect(engine)
    assert info.edition == "rtx"
    lines = result.stdout.splitlines()
    assert lines[1].startswith("built by  TensorRT-RTX Python API (no GPU needed), TensorRT-RTX ")
    # The engine as `trtfast inspect` shows it, then one line on what running it needs.
    inspected = subprocess.run(
        [sys.executable, "-m", "trtfast", "inspect", str(engine)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert inspected.stdout.strip() in result.stdout
    assert lines[-1].startswith("not run: running this engine needs a GPU and TensorRT-RTX's")


@pytest.mark.tensorrt
@pytest.mark.parametrize("name", models.names())
def test_demo_builds_the_bundled_model(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TRTFAST_CACHE_DIR", str(tmp_path))
    assert main(["demo", "--model", name, "--iterations", "50"]) == 0
    output = capsys.readouterr().out
    assert "built by  trtfast (C++ core)" in output
    assert "parity: ok" in output or "parity: not checked" in output
    assert "| trtfast | numpy | on | spin |" in output
    engine = tmp_path / "engines" / f"{name}-fp32.engine"
    assert trtfast.inspect(engine).inputs == trtfast.Engine.load(engine).inputs
