"""`trtfast doctor` explains the machine and exits 0 only where engines can run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import trtfast
from trtfast import _core


def _doctor() -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trtfast", "doctor"], capture_output=True, text=True, timeout=120
    )


def test_reports_every_section() -> None:
    result = _doctor()
    for label in ("trtfast", "python", "tensorrt adapters", "cuda runtime", "cuda driver"):
        assert label in result.stdout
    assert "tensorrt library" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.skipif(_core.cuda.device_count() > 0, reason="this machine has a GPU")
def test_without_gpu_fails_with_one_line_reason() -> None:
    result = _doctor()
    assert result.returncode == 1
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("not ready: ")
    assert "no GPU" in result.stdout or "without TensorRT headers" in last


@pytest.mark.gpu
def test_lists_each_gpu() -> None:
    result = _doctor()
    for gpu in _core.cuda.devices():
        assert f"gpu {gpu['index']}" in result.stdout
        assert gpu["name"] in result.stdout
        major, minor = gpu["compute_capability"]
        assert f"compute capability {major}.{minor}" in result.stdout


def test_names_the_adapter_for_the_library_found() -> None:
    try:
        library = trtfast.tensorrt_library()
    except trtfast.TensorRTUnavailableError:
        pytest.skip("no TensorRT library here")
    adapters = trtfast.build_info()["tensorrt_adapters"]
    if not adapters:
        pytest.skip("this trtfast was built without TensorRT headers")
    report = _doctor().stdout
    if str(library.major) in adapters:
        adapter = Path(_core.__file__).parent / f"libtrtfast_trt{library.major}.so"
        assert f"{adapter} (TensorRT {adapters[str(library.major)]} headers)" in report
    else:
        assert f"built without TensorRT {library.major} support" in report
