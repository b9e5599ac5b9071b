"""The benchmark's statistics, result and rendering on known data, its argument checks, and the
`trtfast compare` / `trtfast bench` commands on any machine."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import synthetic
from synthetic import row, stats, synthetic_result

import trtfast
from trtfast import _core, doctor
from trtfast.bench import BenchResult, DeviceCopy, Stats, benchmark, measure, throughput
from trtfast.cli import UNAVAILABLE, main
from trtfast.engine_file import TensorSpec


def test_percentiles_on_known_data() -> None:
    result = Stats.of(np.arange(1.0, 101.0))  # 1 .. 100
    assert (result.p50, result.p90, result.p99) == pytest.approx((50.5, 90.1, 99.01))
    assert (result.mean, result.min, result.max, result.count) == (50.5, 1.0, 100.0, 100)
    assert Stats.of([7.0]) == Stats(7.0, 7.0, 7.0, 7.0, 7.0, 7.0, 1)
    skewed = Stats.of([1.0] * 98 + [50.0, 1000.0])
    assert skewed.p50 == 1.0 and skewed.p90 == 1.0 and skewed.p99 == pytest.approx(59.5)


@pytest.mark.parametrize("samples", [[], [[1.0, 2.0]], [1.0, float("nan")], [float("inf")]])
def test_statistics_refuse_what_they_cannot_summarize(samples: Any) -> None:
    with pytest.raises(ValueError, match="statistics need"):
        Stats.of(samples)


def test_throughput_from_samples() -> None:
    assert throughput(np.array([10.0, 30.0])) == pytest.approx(50_000.0)  # 2 calls in 40 us
    assert throughput(np.array([0.0])) == float("inf")


def test_measure_counts_calls() -> None:
    calls = []
    samples = measure(lambda: calls.append(1), iterations=7, warmup=3)
    assert len(calls) == 10
    assert samples.shape == (7,) and (samples >= 0).all()


def test_result_round_trips_through_json() -> None:
    result = synthetic_result()
    text = json.dumps(result.to_json(), allow_nan=False)
    assert BenchResult.from_json(json.loads(text)) == result
    bare = synthetic_result(gpu=None)
    assert BenchResult.from_json(json.loads(json.dumps(bare.to_json()))) == bare


@pytest.mark.parametrize(
    "broken", [{}, {"engine": "e"}, {**synthetic_result().to_json(), "rows": [{}]}]
)
def test_result_from_malformed_json(broken: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="not a benchmark result"):
        BenchResult.from_json(broken)


def test_floor_and_bound_lookups() -> None:
    result = synthetic_result()
    numpy_row = result.find("trtfast")
    assert numpy_row is not None and numpy_row.io == "numpy" and numpy_row.latency.p50 == 33
    assert result.bound(numpy_row) == pytest.approx(30.0)  # host floor 20 + GPU 10
    bound_row = result.find("trtfast", device_io=True, bound=True)
    assert bound_row is not None and bound_row.io == "bound torch, run()"
    assert result.bound(bound_row) == pytest.approx(15.0)  # device floor 5 + GPU 10
    blocking = result.find("trtfast", sync="blocking")
    assert blocking is not None and result.bound(blocking) == pytest.approx(70.0)
    reference = result.find("reference")
    assert reference is not None and result.bound(reference) == pytest.approx(30.0)  # spins
    floor = result.floor(device_io=False, sync="spin")
    assert floor is not None and result.bound(floor) is None
    assert result.find("trtfast", cuda_graph=None) is None
    without_gpu = synthetic_result(gpu=None)
    assert without_gpu.bound(numpy_row) == pytest.approx(20.0)  # the floor alone


def test_markdown_table() -> None:
    text = synthetic_result().markdown()
    assert text.startswith("`cnn-fp32.engine` on NVIDIA H100 80GB HBM3; inputs `images` float32")
    assert "- GPU time (CUDA events, graph replays): p50 10.0, p90 10.8, p99 11.0" in text
    assert "- execute_async_v3 from Python: p50 14.0" in text
    assert (
        "| trtfast | numpy | on | spin | 33.0 | 33.8 | 34.0 | 30,303 | 30.0 | +3.0 | 1.10 |" in text
    )
    assert "| trtfast | bound torch, run() | on | spin | 16.5 |" in text
    assert "| 15.0 | +1.5 | 1.10 |" in text
    assert "| reference (TensorRT Python API) | numpy | - | stream sync | 99.0 |" in text
    assert (
        "| floor (C++, no engine) | host | - | spin | 20.0 | 20.8 | 21.0 | 50,000 | - | - | - |"
        in text
    )
    assert "against the reference's 99.0 us: 3.00x lower" in text
    assert "trtfast (numpy, graphs on, spin) p50 is 1.10x floor + GPU time (30.0 us)" in text
    assert "- note: device inputs: torch" in text
    header = next(line for line in text.splitlines() if line.startswith("| path"))
    assert all(
        line.count("|") == header.count("|") for line in text.splitlines() if line.startswith("| ")
    )


def test_markdown_without_gpu_time_or_reference() -> None:
    result = synthetic_result(gpu=None)
    result = dataclasses.replace(
        result, rows=tuple(r for r in result.rows if r.path != "reference")
    )
    text = result.markdown()
    assert "GPU time" not in text and "reference" not in text
    assert "p50 is 1.65x floor (20.0 us)" in text


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"iterations": 0}, "iterations must be an int >= 1"),
        ({"warmup": -1}, "warmup must be an int >= 0"),
        ({"iterations": 2.5}, "iterations must be an int >= 1"),
        ({"inputs": {}, "batch": 1}, "either inputs or batch"),
    ],
)
def test_benchmark_checks_its_arguments_first(
    tmp_path: Path, arguments: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        benchmark(tmp_path / "missing.engine", **arguments)


def test_device_copies_need_a_cuda_array_interface_type() -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    with pytest.raises(ValueError, match="bfloat16 has no __cuda_array_interface__ type"):
        DeviceCopy(np.zeros(4, ml_dtypes.bfloat16))


def test_engine_timing_checks_its_arguments_before_any_cuda_call() -> None:
    testing = pytest.importorskip("trtfast._testing", reason="trtfast._testing was not built")
    engine = testing.affine()
    x = np.zeros((2, 4), np.float32)
    with pytest.raises(trtfast.InputError, match="iterations >= 1 and warmup >= 0, got 0 and 1"):
        _core.time_engine(engine, {"x": x}, iterations=0, warmup=1)
    with pytest.raises(trtfast.InputError, match=r"input 'x'.*float32.*float16"):
        _core.time_engine(engine, {"x": x.astype(np.float16)}, iterations=1)
    with pytest.raises(trtfast.InputError, match="missing"):
        _core.time_engine(engine, {}, iterations=1)


@pytest.mark.skipif(_core.cuda.device_count() > 0, reason="checks the machine without a GPU")
def test_benchmark_without_gpu_raises_cuda_error() -> None:
    testing = pytest.importorskip("trtfast._testing", reason="trtfast._testing was not built")
    with pytest.raises(trtfast.CudaError):
        _core.time_engine(testing.affine(), {"x": np.zeros((2, 4), np.float32)}, iterations=1)
    with pytest.raises(trtfast.CudaError):
        benchmark(trtfast.Engine(testing.affine()), iterations=1)


def test_row_and_stats_helpers_agree() -> None:
    assert row("trtfast", "numpy", 12.0).latency == stats(12.0)


# --- the commands ------------------------------------------------------------------------------


@pytest.fixture
def engine(tmp_path: Path) -> Path:
    spec = TensorSpec("x", "float32", (-1, 4), True, (((1, 4), (8, 4), (64, 4)),))
    return synthetic.engine(tmp_path / "model.engine", (spec,))


REASON = doctor.unavailable_reason()
without_tensorrt = pytest.mark.skipif(
    REASON is None, reason="checks a machine where TensorRT cannot run engines"
)


@without_tensorrt
@pytest.mark.parametrize("command", ["compare", "bench"])
def test_without_tensorrt_the_commands_say_why_in_one_line(
    command: str, engine: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([command, str(engine)]) == UNAVAILABLE == 3
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"trtfast {command}: TensorRT cannot run engines here: {REASON} "
        "(`trtfast doctor` shows more)\n"
    )


@without_tensorrt
@pytest.mark.parametrize("command", ["compare", "bench"])
def test_without_tensorrt_no_traceback(command: str, engine: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "trtfast", command, str(engine), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 3
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and str(REASON) in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["compare", "{engine}", "--rtol", "-1"], "argument --rtol: must be a finite number >= 0"),
        (["compare", "{engine}", "--atol", "nan"], "argument --atol: must be a finite number >= 0"),
        (["compare", "{engine}", "--atol", "x"], "argument --atol: expected a number, got 'x'"),
        (["compare", "{engine}", "--batch", "0"], "argument --batch: must be >= 1, got 0"),
        (["bench", "{engine}", "--iterations", "0"], "argument --iterations: must be >= 1"),
        (["bench", "{engine}", "--warmup", "-1"], "argument --warmup: must be >= 0"),
        (["bench", "{engine}", "--seed", "1.5"], "argument --seed: expected an integer"),
        (["bench", "{engine}", "--rtol", "1"], "unrecognized arguments: --rtol"),
    ],
)
def test_invalid_arguments_exit_2(
    arguments: list[str], message: str, engine: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([argument.format(engine=engine) for argument in arguments])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("command", ["compare", "bench"])
def test_engines_that_cannot_be_read_exit_2(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([command, str(tmp_path / "missing.engine")]) == 2
    assert "No such file or directory" in capsys.readouterr().err
    garbage = tmp_path / "garbage.engine"
    garbage.write_bytes(b"not an engine at all")
    assert main([command, str(garbage)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"trtfast {command}: ") and "garbage.engine" in error


def test_help_lists_the_commands() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "trtfast", "--help"], capture_output=True, text=True, check=True
    )
    assert "compare" in result.stdout and "bench" in result.stdout
    assert trtfast.compare is trtfast.parity.compare
