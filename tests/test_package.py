"""The package imports anywhere, says what it was built with, and maps errors to one hierarchy."""

from __future__ import annotations

import subprocess
import sys

import pytest

import trtfast
from trtfast import _core


def test_version_and_build_info() -> None:
    info = trtfast.build_info()
    assert trtfast.__version__ == info["version"]
    assert {"version", "tensorrt_adapters", "cuda_runtime", "compiler"} <= info.keys()
    major, minor = info["cuda_runtime"].split(".")
    assert int(major) >= 11 and int(minor) >= 0
    adapters = info["tensorrt_adapters"]
    assert bool(adapters) == _core.tensorrt_adapter_available()
    assert adapters == {str(k): v for k, v in _core.compiled_tensorrt_adapters().items()}
    for tensorrt_major, headers in adapters.items():
        assert headers.split(".")[0] == tensorrt_major


def test_import_prints_nothing() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import trtfast"], capture_output=True, text=True, check=True
    )
    assert result.stdout == "" and result.stderr == ""


@pytest.mark.parametrize(
    "name",
    [
        "TensorRTUnavailableError",
        "EngineFormatError",
        "EngineCompatibilityError",
        "BuildError",
        "InputError",
        "CudaError",
    ],
)
def test_exception_hierarchy(name: str) -> None:
    cls = getattr(trtfast, name)
    assert issubclass(cls, trtfast.TrtfastError)


def test_cuda_error_from_core_carries_call_and_code() -> None:
    # Without a device, a stream on device 99 fails the device check; with one, too.
    with pytest.raises(trtfast.CudaError, match="device 99") as raised:
        _core.cuda.Stream(99)
    assert raised.value.code != 0


def test_cli_help_and_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "trtfast", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0 and trtfast.__version__ in result.stdout
    result = subprocess.run([sys.executable, "-m", "trtfast"], capture_output=True, text=True)
    assert result.returncode == 2 and "COMMAND" in result.stderr
    result = subprocess.run(
        [sys.executable, "-m", "trtfast", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0 and "doctor" in result.stdout


def test_core_formats_without_iostreams() -> None:
    # After libnvinfer_lean 11.4 is loaded, formatting a number through an iostream in this
    # library crashed the process on a GPU host; the core builds its strings without them.
    from pathlib import Path

    sources = Path(__file__).resolve().parent.parent / "cpp"
    if not sources.is_dir():
        pytest.skip("the C++ sources are not beside the tests")
    offenders = [
        f"{path.relative_to(sources)}:{number}"
        for path in sorted(sources.rglob("*"))
        if path.suffix in {".cpp", ".hpp", ".cu", ".cuh"}
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if any(word in line for word in ("<sstream>", "<iostream>", "stringstream", "std::cout"))
    ]
    assert not offenders, f"iostreams used in the core: {offenders}"
