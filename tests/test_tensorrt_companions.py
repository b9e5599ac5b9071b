"""How the builder finds the libraries that come with libnvinfer (the ONNX parser, the standard
plugins) and refuses ones of another TensorRT version. No full TensorRT runs here, so the
libraries are real ELF files made by the C compiler, exporting the symbols trtfast looks up;
nothing calls into their factories. Each case runs in a process of its own, since loaded
libraries and registered plugins last as long as the process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from trtfast import _core

pytestmark = [
    pytest.mark.skipif(
        not _core.tensorrt_adapter_available(),
        reason="only an adapter build looks for the parser and plugin libraries",
    ),
    pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (cc) to make libraries"),
]

# The newest major this build has an adapter for (test_tensorrt_adapters.py tests the choice).
MAJOR = max(_core.compiled_tensorrt_adapters(), default=0)
VERSION = f"{MAJOR}.1.0"  # the libnvinfer every case loads

SOURCES = {
    "libnvinfer": f"""
        int getInferLibVersion(void) {{ return {MAJOR * 10000 + 100}; }}
        void* createInferRuntime_INTERNAL(void* logger, int version) {{ return 0; }}
        void* createInferBuilder_INTERNAL(void* logger, int version) {{ return 0; }}
    """,
    "libnvonnxparser": """
        int getNvOnnxParserVersion(void) { return 100; }
        void* createNvOnnxParser_INTERNAL(void* network, void* logger, int version) { return 0; }
    """,
    "libnvinfer_plugin": """
        int initLibNvInferPlugins(void* logger, const char* name_space) { return REGISTERED; }
    """,
}


def make_library(folder: Path, stem: str, version: str | None = None, registered: int = 1) -> Path:
    """`stem`.so.<major> in `folder`; with `version`, a link to the file `stem`.so.<version>, as
    TensorRT's archives and packages install it."""
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / f"{stem}.c"
    source.write_text(SOURCES[stem])
    name = f"{stem}.so.{MAJOR}"
    target = folder / (f"{stem}.so.{version}" if version else name)
    subprocess.run(
        ["cc", "-shared", "-fPIC", f"-DREGISTERED={registered}", "-o", target, source],
        check=True,
        # Without a preloaded sanitizer runtime, which would report the compiler's own leaks.
        env={k: v for k, v in os.environ.items() if k != "LD_PRELOAD"},
    )
    if version:
        (folder / name).symlink_to(target.name)
    return folder / name


def build_error(library: Path) -> str:
    """The message of the TensorRTUnavailableError that build_plan raises with `library`."""
    script = f"""
import sys
from trtfast import TensorRTUnavailableError, _core
library = _core.open_tensorrt_library({str(library)!r}, "test")
try:
    _core.build_plan(library, b"model", {{}}, None)
except TensorRTUnavailableError as error:
    print(error)
    sys.exit(0)
sys.exit("build_plan raised no TensorRTUnavailableError")
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_parser_of_another_tensorrt_version_is_refused_naming_both(tmp_path: Path) -> None:
    library = make_library(tmp_path, "libnvinfer", f"{MAJOR}.1.0")
    parser = make_library(tmp_path, "libnvonnxparser", f"{MAJOR}.0.3")
    message = build_error(library)
    assert f"TensorRT's ONNX parser (libnvonnxparser.so.{MAJOR}) of TensorRT {VERSION}" in message
    assert f"{parser}: it is TensorRT {MAJOR}.0's" in message
    assert f"TensorRT {VERSION} at {tmp_path}/libnvinfer.so.{MAJOR}" in message
    assert f"needs {MAJOR}.1's" in message


def test_a_parser_without_the_factory_is_not_taken(tmp_path: Path) -> None:
    library = make_library(tmp_path, "libnvinfer")
    make_library(tmp_path, "libnvinfer_plugin")  # a library, but not the parser
    (tmp_path / f"libnvonnxparser.so.{MAJOR}").symlink_to(f"libnvinfer_plugin.so.{MAJOR}")
    message = build_error(library)
    assert "it has no symbol createNvOnnxParser_INTERNAL" in message


def test_a_missing_standard_plugin_library_is_named_with_its_version(tmp_path: Path) -> None:
    library = make_library(tmp_path, "libnvinfer", f"{MAJOR}.1.0")
    make_library(tmp_path, "libnvonnxparser", f"{MAJOR}.1.0")
    message = build_error(library)
    # Named before the GPU check: registering plugins needs no device.
    assert f"building engines needs libnvinfer_plugin.so.{MAJOR} of TensorRT {VERSION}" in message
    assert f"{tmp_path / f'libnvinfer_plugin.so.{MAJOR}'}: not found" in message
    assert "plugin not found" not in message


def test_a_standard_plugin_library_of_another_version_is_refused(tmp_path: Path) -> None:
    library = make_library(tmp_path, "libnvinfer", f"{MAJOR}.1.0")
    make_library(tmp_path, "libnvonnxparser", f"{MAJOR}.1.0")
    plugins = make_library(tmp_path, "libnvinfer_plugin", f"{MAJOR}.2.0")
    message = build_error(library)
    assert f"{plugins}: it is TensorRT {MAJOR}.2's" in message


def test_a_standard_plugin_library_that_fails_to_register_is_named(tmp_path: Path) -> None:
    library = make_library(tmp_path, "libnvinfer")
    make_library(tmp_path, "libnvonnxparser")
    plugins = make_library(tmp_path, "libnvinfer_plugin", registered=0)
    message = build_error(library)
    assert f"standard plugin library {plugins} failed to register its plugins" in message


def test_with_parser_and_plugins_in_place_the_build_goes_on_to_need_a_device(
    tmp_path: Path,
) -> None:
    if _core.cuda.device_count() > 0:
        pytest.skip("this machine has a CUDA device, so the build would call the fake factory")
    library = make_library(tmp_path, "libnvinfer")
    make_library(tmp_path, "libnvonnxparser")
    make_library(tmp_path, "libnvinfer_plugin")
    assert "needs a CUDA device" in build_error(library)
