"""A program that only runs engines loads none of what building, preparing or plotting need:
`import trtfast`, `Engine.load`, `trtfast inspect` and `trtfast doctor` leave onnx, onnxruntime,
tqdm, filelock and matplotlib unimported (benchmarks/import_time.py measures what that saves)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import synthetic

import trtfast
from trtfast.engine_file import TensorSpec

HEAVY = ("onnx", "onnxruntime", "tqdm", "filelock", "matplotlib")

# Runs argv[1] (Python code) in a fresh interpreter, then prints which of HEAVY it imported.
_REPORT = textwrap.dedent(
    """
    import contextlib, io, json, sys

    with contextlib.redirect_stdout(io.StringIO()):
        exec(sys.argv[1])
    heavy = json.loads(sys.argv[2])
    print(json.dumps([name for name in heavy if name in sys.modules]))
    """
)


def _heavy_after(code: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", _REPORT, code, json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return list(json.loads(result.stdout))


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("engine")
    return synthetic.engine(folder / "x.engine", (TensorSpec("x", "float32", (-1, 4), True),))


def test_import_trtfast_loads_no_build_dependency() -> None:
    assert _heavy_after("import trtfast") == []


def test_loading_and_inspecting_an_engine_load_no_build_dependency(engine: Path) -> None:
    # Engine.load raises here without a GPU, or for the made-up plan with one; either way it
    # has read the file and looked for TensorRT and a device.
    code = f"""
import trtfast
try:
    trtfast.Engine.load({str(engine)!r})
except trtfast.TrtfastError:
    pass
"""
    assert _heavy_after(code) == []


@pytest.mark.parametrize("command", ["inspect", "doctor"])
def test_inspect_and_doctor_load_no_build_dependency(command: str, engine: Path) -> None:
    argv = [command, str(engine)] if command == "inspect" else [command]
    code = f"from trtfast.cli import main\nmain({argv!r})"
    assert _heavy_after(code) == []


def test_build_functions_load_on_first_use() -> None:
    # trtfast.build and trtfast.prepare stay the functions when their modules are imported
    # directly first, as the build process and the command line do.
    code = "import trtfast.build, trtfast.prepare, trtfast\nassert callable(trtfast.prepare)"
    assert _heavy_after(code + "\nassert trtfast.build.__name__ == 'build'") == ["onnx"]
    assert trtfast.build.__module__ == "trtfast.build"
    assert trtfast.prepare.__module__ == "trtfast.prepare"
    assert {"build", "prepare", "compare", "models", "reference"} <= set(dir(trtfast))
    with pytest.raises(AttributeError, match="module 'trtfast' has no attribute 'nonesuch'"):
        _ = trtfast.nonesuch  # type: ignore[attr-defined]
