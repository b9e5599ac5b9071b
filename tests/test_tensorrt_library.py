"""The loader against the real lean runtime (pip package tensorrt-lean-cu13-libs)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

import trtfast
from trtfast import _core

LEAN_PACKAGE = "tensorrt_lean_libs"


def _lean_folder() -> Path:
    spec = importlib.util.find_spec(LEAN_PACKAGE)
    assert spec is not None and spec.submodule_search_locations, "test extra not installed"
    return Path(next(iter(spec.submodule_search_locations)))


def _lean_distribution_version() -> str:
    for name in ("tensorrt-lean-cu13-libs", "tensorrt-lean-cu12-libs"):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    raise AssertionError("no tensorrt lean libs distribution installed")


def _lean_library_file() -> Path:
    files = sorted(_lean_folder().glob("libnvinfer_lean.so.*"))
    assert files, f"no libnvinfer_lean.so.* in {_lean_folder()}"
    return files[0]


@pytest.fixture
def no_explicit_library(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRTFAST_TENSORRT_LIBRARY", raising=False)


def test_found_through_pip_package(no_explicit_library: None) -> None:
    try:
        library = trtfast.tensorrt_library()
    except trtfast.TensorRTUnavailableError as error:
        pytest.fail(f"lean runtime not found: {error}")
    if library.kind == "full":
        pytest.skip(f"a full TensorRT library takes precedence here: {library.path}")
    assert library.kind == "lean"
    assert Path(library.path).parent == _lean_folder()
    assert library.origin == f"pip package {LEAN_PACKAGE}"
    # The wheel's version is major.minor.patch.build; the library reports major.minor.patch.
    assert _lean_distribution_version().startswith(library.version + ".")


def test_found_through_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    path = _lean_library_file()
    monkeypatch.setenv("TRTFAST_TENSORRT_LIBRARY", str(path))
    library = trtfast.tensorrt_library()
    assert Path(library.path).resolve() == path.resolve()
    assert library.kind == "lean"
    assert library.origin == "TRTFAST_TENSORRT_LIBRARY"
    assert _lean_distribution_version().startswith(library.version + ".")


def test_missing_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = tmp_path / "libnvinfer.so.11"
    monkeypatch.setenv("TRTFAST_TENSORRT_LIBRARY", str(missing))
    with pytest.raises(trtfast.TensorRTUnavailableError, match="no such file") as raised:
        trtfast.tensorrt_library()
    assert "TRTFAST_TENSORRT_LIBRARY" in str(raised.value) and str(missing) in str(raised.value)


def test_not_a_library(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    text_file = tmp_path / "libnvinfer.so.11"
    text_file.write_text("not a shared object\n")
    monkeypatch.setenv("TRTFAST_TENSORRT_LIBRARY", str(text_file))
    with pytest.raises(trtfast.TensorRTUnavailableError, match="cannot load"):
        trtfast.tensorrt_library()


def test_library_without_tensorrt_symbols(monkeypatch: pytest.MonkeyPatch) -> None:
    # trtfast's own extension is a real shared library that is not TensorRT.
    extension = _core.__file__
    assert extension is not None
    monkeypatch.setenv("TRTFAST_TENSORRT_LIBRARY", extension)
    with pytest.raises(trtfast.TensorRTUnavailableError, match="no symbol getInferLibVersion"):
        trtfast.tensorrt_library()


def test_search_failure_lists_every_place(tmp_path: Path) -> None:
    # A fresh process: in this one the lean runtime may already be loaded, and the system
    # loader finds a loaded library by name.
    folders = [("tensorrt_libs", "", "full"), (LEAN_PACKAGE, str(tmp_path), "lean")]
    script = (
        "import sys, trtfast\n"
        f"try: print('FOUND', trtfast._core.find_tensorrt_library({folders!r}).path)\n"
        "except trtfast.TensorRTUnavailableError as e: print(e)\n"
    )
    environment = {k: v for k, v in os.environ.items() if k != "TRTFAST_TENSORRT_LIBRARY"}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=environment, check=True
    )
    message = result.stdout
    if message.startswith("FOUND"):
        pytest.skip(f"TensorRT is installed system-wide here: {message.split()[1]}")
    assert "TRTFAST_TENSORRT_LIBRARY: not set" in message
    assert "pip package tensorrt_libs: not installed" in message
    assert str(tmp_path) in message
    assert "system loader path" in message
    assert "pip install tensorrt-cu13" in message


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="'full' or 'lean'"):
        _core.find_tensorrt_library([("tensorrt_libs", "", "dispatch")])


def test_the_library_gets_the_adapter_of_its_major_or_says_there_is_none() -> None:
    library = _core.open_tensorrt_library(str(_lean_library_file()), LEAN_PACKAGE)
    adapters = trtfast.build_info()["tensorrt_adapters"]
    if str(library.major) in adapters:
        adapter = Path(_core.tensorrt_adapter(library))
        assert adapter == Path(_core.__file__).parent / f"libtrtfast_trt{library.major}.so"
        return
    with pytest.raises(trtfast.TensorRTUnavailableError) as raised:
        _core.tensorrt_adapter(library)
    message = str(raised.value)
    if adapters:
        assert f"built without TensorRT {library.major} support" in message
        assert library.path in message and library.version in message
    else:
        assert "built without TensorRT headers" in message
