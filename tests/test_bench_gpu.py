"""The benchmark's measuring parts on a GPU, with trtfast._testing's engines of plain CUDA kernels
(no TensorRT): engine timing behind a gate, the I/O floor, and the C++ session's rows."""

from __future__ import annotations

import json

import numpy as np
import pytest
from gpu_executor import require_test_executor

import trtfast
from trtfast import _core
from trtfast.bench import (
    CPP_ENQUEUE,
    CPP_GRAPH_LAUNCH,
    BenchResult,
    DeviceCopy,
    benchmark,
    device_inputs,
)

pytestmark = pytest.mark.gpu

_testing = require_test_executor()


def _x(batch: int = 8, features: int = 4) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((batch, features), dtype=np.float32)


def test_gpu_time_counts_the_device_work() -> None:
    # A kernel that waits 50 us runs first in every enqueue: the device cannot be faster.
    engine = _testing.affine(delay_us=50.0)
    timings = _core.time_engine(engine, {"x": _x()}, iterations=20, warmup=2)
    assert timings["gated"] and timings["gpu_from_graph"] and timings["graph_failure"] == ""
    assert len(timings["gpu_us"]) == len(timings["enqueue_us"]) == 20
    assert len(timings["graph_launch_us"]) == 20
    assert min(timings["gpu_us"]) >= 45.0
    assert max(timings["gpu_us"]) < 100_000.0  # no gate timeout (1 s) counted
    assert min(timings["enqueue_us"]) > 0 and min(timings["graph_launch_us"]) > 0
    # warm-up, the plain enqueues and one capture; replays call nothing in the executor
    assert engine.enqueue_count == 2 + 20 + 1


def test_gpu_time_of_an_engine_that_cannot_be_captured() -> None:
    # Its enqueue synchronizes its stream: no graph, and queuing behind the gate blocks until the
    # gate opens on its own, which the result says.
    engine = _testing.affine(break_capture=True)
    timings = _core.time_engine(engine, {"x": _x()}, iterations=2, warmup=1)
    assert not timings["gpu_from_graph"] and timings["graph_launch_us"] == []
    assert timings["graph_failure"]
    assert not timings["gated"]
    assert len(timings["gpu_us"]) == 2


def test_timing_takes_device_inputs_and_several_tensors() -> None:
    engine = _testing.two_outputs(features=4)
    inputs = {"x": DeviceCopy(_x()), "bias": np.ones(4, np.float32)}
    timings = _core.time_engine(engine, inputs, iterations=3, warmup=0)
    assert len(timings["gpu_us"]) == 3 and timings["gated"]


def test_timing_refuses_what_it_cannot_run() -> None:
    with pytest.raises(trtfast.InputError, match="'values' has a data-dependent shape"):
        _core.time_engine(_testing.positives(), {"x": np.ones(8, np.float32)}, iterations=1)
    engine = _testing.affine()
    with pytest.raises(trtfast.InputError, match="iterations >= 1 and warmup >= 0"):
        _core.time_engine(engine, {"x": _x()}, iterations=0)
    with pytest.raises(trtfast.InputError, match="'x'"):
        _core.time_engine(engine, {"x": _x().astype(np.float16)}, iterations=1)
    with pytest.raises(trtfast.InputError, match="outside"):
        _core.time_engine(engine, {"x": _x(batch=65)}, iterations=1)


def test_io_floor() -> None:
    for host in (True, False):
        for blocking in (True, False):
            samples = _testing.io_floor_latencies(
                [4096, 128], [512], host, blocking, iterations=25, warmup=5
            )
            assert len(samples) == 25 and min(samples) > 0
    assert len(_testing.io_floor_latencies([], [], True, False, iterations=3)) == 3


def test_device_inputs_feed_a_session() -> None:
    x = _x()
    on_device, kind = device_inputs({"x": x})
    assert kind in ("torch", "cupy", "__cuda_array_interface__")
    engine = trtfast.Engine(_testing.affine())
    with engine.session(torch_results=False) as session:
        y = np.asarray(session(on_device)["y"].numpy())
    np.testing.assert_array_equal(y, x * np.float32(2.0) + np.float32(1.0))
    copy = DeviceCopy(x)
    with engine.session() as session:
        np.testing.assert_array_equal(session(x=copy)["y"].numpy(), y)


def test_benchmark_of_the_cpp_session() -> None:
    engine = trtfast.Engine(_testing.affine(features=64, profiles=[(1, 8, 32)]))
    result = benchmark(engine, iterations=40, warmup=4, batch=16)
    assert result.inputs == {"x": ("float32", (16, 64))}
    assert result.engine == "engine" and result.gpu_name == _core.cuda.devices()[0]["name"]
    floors = [row for row in result.rows if row.path == "floor"]
    assert {(row.io, row.sync) for row in floors} == {
        (io, sync) for io in ("host", "device") for sync in ("spin", "blocking")
    }
    ours = [row for row in result.rows if row.path == "trtfast"]
    assert len(ours) == 12  # numpy, device, bound device; graphs on/off; spin/blocking
    assert {(row.cuda_graph, row.sync) for row in ours} == {
        (graphs, sync) for graphs in (True, False) for sync in ("spin", "blocking")
    }
    assert all(row.latency.count == 40 and row.calls_per_s > 0 for row in result.rows)
    assert not any(row.path == "reference" for row in result.rows)
    assert any("reference path not measured" in note for note in result.notes)
    assert result.gpu is not None and result.gpu_method == "graph replays"
    assert set(result.enqueue) == {CPP_ENQUEUE, CPP_GRAPH_LAUNCH}
    numpy_row = result.find("trtfast")
    assert numpy_row is not None and result.bound(numpy_row) is not None
    assert "| trtfast | numpy | on | spin |" in result.markdown()
    assert BenchResult.from_json(json.loads(json.dumps(result.to_json()))) == result


def test_benchmark_of_an_engine_without_a_fixed_output_size() -> None:
    engine = trtfast.Engine(_testing.positives(profiles=[(1, 8, 64)]))
    result = benchmark(engine, iterations=5, warmup=1, reference=False)
    assert result.gpu is None and result.enqueue == {}
    assert any("GPU and enqueue times not measured" in note for note in result.notes)
    assert any(row.path == "trtfast" for row in result.rows)
