"""trtfast.compare and trtfast.bench on real engines (`-m tensorrt`): parity of the C++ core with
TensorRT's Python API on every bundled model and precision, and a benchmark smoke test."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

import trtfast
from trtfast import models, reference
from trtfast.bench import CPP_ENQUEUE, CPP_GRAPH_LAUNCH, PYTHON_ENQUEUE, benchmark

PRECISIONS = ("fp32", "fp16", "bf16")

# compare runs both paths: the reference needs TensorRT's Python API and cuda-python.
REFERENCE_MISSING = reference.unavailable_reason("standard") or (
    None if importlib.util.find_spec("cuda.bindings") else "cuda-python is not installed"
)
pytestmark = [
    pytest.mark.tensorrt,
    pytest.mark.skipif(REFERENCE_MISSING is not None, reason=str(REFERENCE_MISSING)),
]


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    folder = tmp_path_factory.mktemp("engines")
    built = {}
    for name in models.names():
        for precision in PRECISIONS:
            path = folder / f"{name}-{precision}.engine"
            trtfast.build(
                models.path(name),
                output=path,
                shapes=models.shapes(name),
                precision=precision,
                progress=False,
            )
            built[name, precision] = path
    return built


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("name", models.names())
def test_the_paths_agree(name: str, precision: str, engines: dict[tuple[str, str], Path]) -> None:
    (shape_range,) = models.shapes(name).values()
    for batch in (shape_range[0][0], None, shape_range[2][0]):
        result = trtfast.compare(engines[name, precision], batch=batch, seed=5)
        assert result.passed, result.summary()
        (output,) = result.outputs
        assert output.cosine_similarity > 0.999999
        assert output.shape[0] == (batch or shape_range[1][0])
    feeds = models.inputs(name, batch=3)
    given = trtfast.compare(engines[name, precision], feeds)
    assert given.passed and given.seed is None
    assert given.inputs == {key: ("float32", value.shape) for key, value in feeds.items()}


def test_compare_command(engines: dict[tuple[str, str], Path]) -> None:
    path = engines["cnn", "fp16"]
    result = subprocess.run(
        [sys.executable, "-m", "trtfast", "compare", str(path), "--batch", "4", "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["passed"] and data["inputs"]["images"]["shape"] == [4, 3, 32, 32]
    result = subprocess.run(
        [sys.executable, "-m", "trtfast", "compare", str(path), "--batch", "999"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2 and "batch 999 is outside profile 0" in result.stderr


def test_bench_smoke(engines: dict[tuple[str, str], Path]) -> None:
    result = benchmark(engines["mlp", "fp32"], iterations=30, warmup=3, batch=8)
    paths = [row.path for row in result.rows]
    assert paths.count("floor") == 4 and paths.count("trtfast") == 12
    assert paths.count("reference") == 1
    assert set(result.enqueue) == {CPP_ENQUEUE, CPP_GRAPH_LAUNCH, PYTHON_ENQUEUE}
    assert result.gpu is not None and result.gpu.p50 > 0
    assert result.notes == ()
    assert len(result.highlights()) == 3
    command = subprocess.run(
        [
            sys.executable,
            "-m",
            "trtfast",
            "bench",
            str(engines["cnn", "fp32"]),
            "--iterations",
            "20",
            "--warmup",
            "2",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert command.returncode == 0, command.stderr
    assert "| reference (TensorRT Python API) | numpy |" in command.stdout
