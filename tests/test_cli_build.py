"""``trtfast build``: help, argument errors (exit 2) and build failures (exit 1), each one clear
line without a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import build_models
import onnx
import pytest

import trtfast
from trtfast.cli import main
from trtfast.errors import TrtfastError


def full_tensorrt_available() -> bool:
    try:
        return bool(trtfast.tensorrt_library().kind == "full")
    except TrtfastError:
        return False


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    path = tmp_path / "cnn.onnx"
    onnx.save_model(build_models.cnn(), str(path))
    return path


def test_help_lists_every_option(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["build", "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    for option in (
        "--output",
        "--precision",
        "--shapes",
        "--timing-cache",
        "--workspace",
        "--cache-dir",
        "--optimization-level",
        "--version-compatible",
        "--hardware-compatibility",
        "--plugin",
        "--device",
        "--no-progress",
    ):
        assert option in text
    assert "build" in main_help(capsys)


def main_help(capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit):
        main(["--help"])
    return capsys.readouterr().out


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ([], "the following arguments are required: model"),
        (["m.onnx", "--precision", "fp64"], "argument --precision: invalid choice: 'fp64'"),
        (["m.onnx", "--optimization-level", "9"], "argument --optimization-level: invalid"),
        (["m.onnx", "--hardware-compatibility", "x"], "argument --hardware-compatibility"),
        (["m.onnx", "--device", "first"], "argument --device: invalid int value"),
    ],
)
def test_argument_errors_exit_2(capsys, arguments, message):
    with pytest.raises(SystemExit) as exited:
        main(["build", *arguments])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--shapes", "images"], "--shapes 'images' must be NAME:MIN,OPT,MAX"),
        (["--shapes", "images:1x3x16x16,2x3x16x16"], "give one shape or three"),
        (["--shapes", "image:1x3x16x16"], "name input 'image', which the model does not have"),
        ([], "input 'images' has dynamic dimension 0 ('batch') and no shapes to size it"),
        (["--shapes", "images:4x3x16x16", "--workspace", "4 parsecs"], "unknown unit"),
        (["--shapes", "images:4x3x16x16", "--plugin", "/no/libp.so"], "'/no/libp.so' does not"),
        (["--shapes", "images:4x3x16x16", "--workspace", "99999999TiB"], "more than TensorRT"),
        (["--shapes", "images:4x3x16x16", "--workspace", "9" * 400], "more than TensorRT"),
        (
            ["--shapes", "images:1x3x16x16,4x3x16x16,99999999999999999999x3x16x16"],
            "99999999999999999999 does not fit in an int64",
        ),
        (["--shapes", "images:4x3x16x16", "--device", str(2**40)], "device must be a GPU index"),
    ],
)
def test_invalid_values_exit_2_with_one_line(capsys, tmp_path, model_path, arguments, message):
    status = main(["build", str(model_path), "-o", str(tmp_path / "cnn.engine"), *arguments])
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("trtfast build: error: ")
    assert message in err
    assert err.count("\n") == 1
    assert os.listdir(tmp_path) == ["cnn.onnx"]


def test_a_missing_model_exits_2(capsys, tmp_path):
    status = main(["build", str(tmp_path / "nothing.onnx"), "-o", str(tmp_path / "e.engine")])
    assert status == 2
    assert "model file" in capsys.readouterr().err


def test_a_file_that_is_not_onnx_exits_1(capsys, tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_bytes(b"\xff\xfe not a model")
    assert main(["build", str(path), "-o", str(tmp_path / "e.engine"), "--no-progress"]) == 1
    assert "is not an ONNX model" in capsys.readouterr().err


@pytest.mark.skipif(full_tensorrt_available(), reason="a full TensorRT library would build")
def test_no_tensorrt_exits_1_without_a_traceback(tmp_path, model_path):
    output = tmp_path / "cnn.engine"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "trtfast",
            "build",
            str(model_path),
            "-o",
            str(output),
            "--shapes",
            "images:1x3x16x16,4x3x16x16,8x3x16x16",
            "--precision",
            "fp16",
            "--timing-cache",
            str(tmp_path / "cnn.timing"),
            "--cache-dir",
            str(tmp_path / "c"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("trtfast build: error: ")
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert os.listdir(tmp_path) == ["cnn.onnx"]


def test_the_model_is_never_the_output(capsys, tmp_path, model_path):
    before = model_path.read_bytes()
    alias = tmp_path / "alias.onnx"
    alias.symlink_to(model_path)
    for output in (model_path, alias):
        status = main(["build", str(model_path), "-o", str(output), "--shapes", "images:4x3x16x16"])
        assert status == 2
        assert "is the model being built" in capsys.readouterr().err
    assert model_path.read_bytes() == before


def test_export_never_overwrites_the_engine_it_reads(capsys, tmp_path):
    engine_file = pytest.importorskip("trtfast.engine_file")
    from test_engine_file import sample_info

    info = sample_info()
    path = tmp_path / "model.engine"
    engine_file.write(path, info, b"plan bytes")
    before = path.read_bytes()
    assert main(["export", str(path), "-o", str(path)]) == 2
    assert "is the engine being read" in capsys.readouterr().err
    assert path.read_bytes() == before
    assert main(["export", str(path), "-o", str(tmp_path / "model.plan")]) == 0
    assert (tmp_path / "model.plan").read_bytes() == b"plan bytes"
