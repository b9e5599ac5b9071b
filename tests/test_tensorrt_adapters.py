"""Which adapter serves a TensorRT library: the one compiled for the library's major, loaded from
beside the core. No TensorRT runs here, so the libraries are real ELF files made by the C compiler
that report a version and export TensorRT's factories (which return nothing); what is checked is
the adapter chosen, the errors it raises reaching Python as their types, and the words when a
major has no adapter. Each case runs in a process of its own: loaded libraries stay loaded."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import trtfast
from trtfast import _core

pytestmark = pytest.mark.skipif(
    shutil.which("cc") is None, reason="no C compiler (cc) to make libraries"
)

ADAPTERS: dict[str, str] = trtfast.build_info()["tensorrt_adapters"]
COMPILED = sorted(int(major) for major in ADAPTERS)
# A major this build has no adapter for: 10 or 11 where only one was compiled, else 12.
MISSING = next(major for major in (10, 11, 12) if major not in COMPILED)


def fake_tensorrt(folder: Path, major: int, full: bool = True) -> Path:
    """libnvinfer.so.<major> (libnvinfer_lean.so.<major> unless `full`) of TensorRT major.1.0."""
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / f"libnvinfer{major}.c"
    builder = "void* createInferBuilder_INTERNAL(void* l, int v) { return 0; }" if full else ""
    source.write_text(
        f"int getInferLibVersion(void) {{ return {major * 10000 + 100}; }}\n"
        "void* createInferRuntime_INTERNAL(void* logger, int version) { return 0; }\n"
        f"{builder}\n"
    )
    library = folder / f"libnvinfer{'' if full else '_lean'}.so.{major}"
    # Without a preloaded sanitizer runtime (.ci/sanitize.sh), which would report the compiler's
    # own leaks.
    compiler_env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    subprocess.run(["cc", "-shared", "-fPIC", "-o", library, source], check=True, env=compiler_env)
    return library


def run(script: str, **environment: str) -> dict[str, str]:
    """Runs `script` in a fresh interpreter; it prints one JSON object, returned here."""
    env = {k: v for k, v in os.environ.items() if k != "TRTFAST_TENSORRT_LIBRARY"}
    env.update(environment)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.splitlines()[-1])  # type: ignore[no-any-return]


# What an adapter raises, and the adapter that raised it, for `library`.
PROBE = """
import json, sys, trtfast
from trtfast import _core
library = _core.open_tensorrt_library(sys.argv[1] if len(sys.argv) > 1 else {path!r}, "test")
result = {{"major": library.major}}
try:
    result["adapter"] = _core.tensorrt_adapter(library)
except trtfast.TensorRTUnavailableError as error:
    result["adapter_error"] = str(error)
for name, call in [
    ("runtime", lambda: _core.Runtime(library, 0)),
    ("fp8_ampere_plus", lambda: _core.build_plan(
        library, b"model", {{"precision": "fp8", "hardware_compatibility": "ampere_plus"}}, None)),
]:
    try:
        call()
        result[name] = "no error"
    except trtfast.TrtfastError as error:
        result[name] = type(error).__name__ + ": " + str(error)
print(json.dumps(result))
"""


def probe(library: Path) -> dict[str, str]:
    return run(PROBE.format(path=str(library)))


@pytest.mark.parametrize("major", COMPILED)
def test_the_adapter_of_the_library_major_is_loaded_from_beside_the_core(
    tmp_path: Path, major: int
) -> None:
    result = probe(fake_tensorrt(tmp_path, major))
    adapter = Path(result["adapter"])
    assert adapter.name == f"libtrtfast_trt{major}.so"
    assert adapter.parent == Path(_core.__file__).parent
    # The adapter's own errors reach Python as their types: no device here (or, on a GPU, the
    # fake factory returns no runtime).
    assert result["runtime"].startswith("TensorRTUnavailableError: "), result["runtime"]
    assert re.search("needs a CUDA device|could not create a runtime", result["runtime"])
    # Only TensorRT 10's adapter knows that fp8 and ampere_plus conflict (NvInfer.h 10.x,
    # BuilderFlag::kFP8); TensorRT 11's goes on to look for the ONNX parser.
    if major == 10:
        assert result["fp8_ampere_plus"].startswith("BuildOptionError: precision='fp8'")
    else:
        assert result["fp8_ampere_plus"].startswith("TensorRTUnavailableError: ")
        assert "libnvonnxparser" in result["fp8_ampere_plus"]


@pytest.mark.skipif(not COMPILED, reason="this trtfast was built without TensorRT headers")
def test_a_major_without_an_adapter_says_so_and_how_to_get_one(tmp_path: Path) -> None:
    library = fake_tensorrt(tmp_path, MISSING, full=False)
    result = probe(library)
    assert result["major"] == MISSING
    message = result["adapter_error"]
    assert message.startswith(
        f"this installation of trtfast was built without TensorRT {MISSING} support"
    )
    assert str(library) in message
    if MISSING in (10, 11):
        assert f"TensorRT{MISSING}_ROOT=" in message and "release wheel" in message
    else:
        assert "trtfast is written for TensorRT 10 and 11" in message
    assert "TRTFAST_TENSORRT_LIBRARY" in message
    assert f"(it supports TensorRT {' and '.join(map(str, COMPILED))} only)" in message
    # Every path to TensorRT says the same, before any factory of that major is called.
    assert result["runtime"] == f"TensorRTUnavailableError: {message}"
    assert result["fp8_ampere_plus"] == f"TensorRTUnavailableError: {message}"


@pytest.mark.skipif(bool(COMPILED), reason="this trtfast has TensorRT adapters")
def test_without_any_adapter_every_path_says_how_to_rebuild(tmp_path: Path) -> None:
    result = probe(fake_tensorrt(tmp_path, 11))
    message = result["adapter_error"]
    assert message.startswith("this trtfast was built without TensorRT headers")
    assert "TensorRT_ROOT" in message and "release wheel" in message
    assert result["runtime"] == f"TensorRTUnavailableError: {message}"
    assert result["fp8_ampere_plus"] == f"TensorRTUnavailableError: {message}"


def test_the_search_tries_the_majors_with_adapters_first(tmp_path: Path) -> None:
    for major in (10, 11):
        fake_tensorrt(tmp_path, major)
    script = (
        "import json, sys, trtfast\n"
        f"library = trtfast._core.find_tensorrt_library([('tensorrt_libs', {str(tmp_path)!r}, "
        "'full')])\n"
        "print(json.dumps({'major': library.major}))\n"
    )
    expected = max(COMPILED) if COMPILED else 11
    assert run(script)["major"] == expected


def doctor(library: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k != "TRTFAST_TENSORRT_LIBRARY"}
    env["TRTFAST_TENSORRT_LIBRARY"] = str(library)
    done = subprocess.run(
        [sys.executable, "-m", "trtfast", "doctor"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert "Traceback" not in done.stdout + done.stderr
    return done.stdout


@pytest.mark.parametrize("major", COMPILED)
def test_doctor_names_the_adapter_in_use(tmp_path: Path, major: int) -> None:
    report = doctor(fake_tensorrt(tmp_path, major))
    adapter = Path(_core.__file__).parent / f"libtrtfast_trt{major}.so"
    line = f"{adapter} (TensorRT {ADAPTERS[str(major)]} headers)"
    assert re.search(rf"^tensorrt adapter +{re.escape(line)}$", report, re.MULTILINE), report
    for compiled, headers in ADAPTERS.items():
        assert f"TensorRT {compiled} ({headers} headers)" in report


@pytest.mark.skipif(not COMPILED, reason="this trtfast was built without TensorRT headers")
def test_doctor_says_when_the_library_major_has_no_adapter(tmp_path: Path) -> None:
    report = doctor(fake_tensorrt(tmp_path, MISSING))
    problem = f"this installation of trtfast was built without TensorRT {MISSING} support"
    line = rf"^tensorrt adapter +none for TensorRT {MISSING}: {problem} .*TRTFAST_TENSORRT_LIBRARY"
    assert re.search(line, report, re.MULTILINE), report
    if _core.cuda.device_count() > 0:  # otherwise the missing GPU is the first problem
        assert report.strip().splitlines()[-1].startswith(f"not ready: {problem}")
