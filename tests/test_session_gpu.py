"""Sessions on a GPU, driven by trtfast._testing's engines of plain CUDA kernels (no TensorRT):
numpy and zero-copy device paths, graphs, streams, threads, failures and allocation."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from gpu_executor import require_test_executor

import trtfast
from trtfast import _core
from trtfast.bench import DeviceCopy

pytestmark = pytest.mark.gpu

_testing = require_test_executor()

A = np.float32(2.0)
B = np.float32(1.0)


def affine(x: np.ndarray) -> np.ndarray:
    """What the test engine computes, rounded as it rounds (no fused multiply-add)."""
    return x * A + B


def random_x(batch: int, seed: int = 0, features: int = 4) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, features), dtype=np.float32)


def make_engine(**options: Any) -> trtfast.Engine:
    return trtfast.Engine(_testing.affine(**options))


@pytest.fixture
def engine() -> trtfast.Engine:
    return make_engine(profiles=[(1, 8, 64)])


def torch_cuda() -> Any:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch cannot use CUDA here")
    return torch


def cupy_module() -> Any:
    return pytest.importorskip("cupy")


# --- numpy in, numpy out -------------------------------------------------------------------------


def test_numpy_in_numpy_out(engine: trtfast.Engine) -> None:
    x = random_x(3)
    with engine.session() as session:
        for result in (session(x=x), session({"x": x}), session.run(x=x), session.run({"x": x})):
            assert set(result) == {"y"}
            y = result["y"]
            assert isinstance(y, np.ndarray)
            assert y.dtype == np.float32
            assert y.shape == (3, 4)
            np.testing.assert_array_equal(y, affine(x))
    np.testing.assert_array_equal(engine(x=x)["y"], affine(x))
    np.testing.assert_array_equal(engine({"x": x})["y"], affine(x))


def test_results_are_fresh_arrays(engine: trtfast.Engine) -> None:
    with engine.session() as session:
        x1, x2 = random_x(5, seed=1), random_x(5, seed=2)
        y1 = session(x=x1)["y"]
        y2 = session(x=x2)["y"]
        assert y1 is not y2
        np.testing.assert_array_equal(y1, affine(x1))
        np.testing.assert_array_equal(y2, affine(x2))


def test_strided_host_input_is_staged_contiguously(engine: trtfast.Engine) -> None:
    wide = random_x(6, features=8)
    x = wide[:, ::2]
    assert not x.flags.c_contiguous
    with engine.session() as session:
        np.testing.assert_array_equal(session(x=x)["y"], affine(np.ascontiguousarray(x)))


def test_out_numpy_buffer(engine: trtfast.Engine) -> None:
    x = random_x(4)
    out = np.full((4, 4), np.nan, np.float32)
    with engine.session() as session:
        result = session(x=x, out={"y": out})
        assert result["y"] is out
        np.testing.assert_array_equal(out, affine(x))
        with pytest.raises(
            trtfast.InputError,
            match=r"output 'y': expected a buffer of dtype "
            r"float32 and shape \[4, 4\], received float32 \[3, 4\]",
        ):
            session(x=x, out={"y": np.empty((3, 4), np.float32)})
        read_only = np.empty((4, 4), np.float32)
        read_only.flags.writeable = False
        with pytest.raises(trtfast.InputError, match="output 'y': the buffer given is read-only"):
            session(x=x, out={"y": read_only})
        with pytest.raises(trtfast.InputError, match="unknown output 'z'"):
            session(x=x, out={"z": out})


# --- CUDA graphs ---------------------------------------------------------------------------------


def test_graph_is_captured_once_then_replayed(engine: trtfast.Engine) -> None:
    core = engine.core
    with engine.session() as session:
        before = core.enqueue_count
        session(x=random_x(8, seed=0))
        # One enqueue outside capture, one inside it.
        assert core.enqueue_count - before == 2
        assert session.stats["graph_captures"] == 1
        calls = session.stats["executor_calls"]
        for seed in range(1, 11):
            x = random_x(8, seed=seed)
            np.testing.assert_array_equal(session(x=x)["y"], affine(x))  # new data, same graph
        assert core.enqueue_count - before == 2
        stats = session.stats
        assert stats["graph_launches"] == 10
        assert stats["graph_captures"] == 1
        assert stats["executor_calls"] == calls  # replays call nothing in the executor


def test_shape_change_captures_a_new_graph(engine: trtfast.Engine) -> None:
    core = engine.core
    with engine.session() as session:
        x3, x5 = random_x(3, seed=3), random_x(5, seed=5)
        np.testing.assert_array_equal(session(x=x3)["y"], affine(x3))
        np.testing.assert_array_equal(session(x=x5)["y"], affine(x5))
        assert session.stats["graph_captures"] == 2
        # Back to batch 3: its graph exists, but the shape change is applied by a plain enqueue
        # (TensorRT applies changes at the next enqueue); the call after it replays.
        enqueues = core.enqueue_count
        np.testing.assert_array_equal(session(x=x3)["y"], affine(x3))
        assert core.enqueue_count == enqueues + 1
        np.testing.assert_array_equal(session(x=x3)["y"], affine(x3))
        assert core.enqueue_count == enqueues + 1
        stats = session.stats
        assert (stats["graph_captures"], stats["graph_launches"]) == (2, 1)
        assert stats["cached_graphs"] == 2


def test_graph_cache_evicts_the_least_recently_used(engine: trtfast.Engine) -> None:
    core = engine.core
    with engine.session(graph_cache_size=1) as session:
        x3, x5 = random_x(3), random_x(5)
        session(x=x3)
        session(x=x5)  # evicts batch 3
        assert session.stats["cached_graphs"] == 1
        enqueues = core.enqueue_count
        np.testing.assert_array_equal(session(x=x3)["y"], affine(x3))
        assert core.enqueue_count == enqueues + 2  # captured again
        assert session.stats["graph_captures"] == 3


def test_graphs_off_enqueues_every_call(engine: trtfast.Engine) -> None:
    core = engine.core
    with engine.session(cuda_graph=False) as session:
        before = core.enqueue_count
        for seed in range(5):
            x = random_x(7, seed=seed)
            np.testing.assert_array_equal(session(x=x)["y"], affine(x))
        assert core.enqueue_count - before == 5
        stats = session.stats
        assert stats["graph_captures"] == 0
        assert stats["plain_runs"] == 5
        assert stats["graphs_enabled"] is False


def test_capture_failure_falls_back_with_a_warning() -> None:
    engine = make_engine(break_capture=True)
    x = random_x(4)
    with engine.session() as session:
        with pytest.warns(RuntimeWarning, match="CUDA graph capture failed"):
            result = session(x=x)
        np.testing.assert_array_equal(result["y"], affine(x))
        assert session.stats["graphs_enabled"] is False
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # warned once, not on every call
            for seed in range(3):
                x = random_x(4, seed=seed)
                np.testing.assert_array_equal(session(x=x)["y"], affine(x))
        assert session.stats["plain_runs"] == 4


# --- failures ------------------------------------------------------------------------------------


@pytest.mark.parametrize("cuda_graph", [False, True])
def test_enqueue_failure_raises_and_the_session_recovers(cuda_graph: bool) -> None:
    engine = make_engine()
    core = engine.core
    with engine.session(cuda_graph=cuda_graph) as session:
        x1 = random_x(2, seed=1)
        if not cuda_graph:
            np.testing.assert_array_equal(session(x=x1)["y"], affine(x1))
        core.fail_enqueue = True
        out = np.full((2, 4), -7.0, np.float32)
        with pytest.raises(trtfast.TrtfastError, match="enqueue failed"):
            session(x=random_x(2, seed=2), out={"y": out})
        with pytest.raises(trtfast.TrtfastError, match="enqueue failed"):
            engine(x=random_x(2, seed=2))
        core.fail_enqueue = False
        x3 = random_x(2, seed=3)
        np.testing.assert_array_equal(session(x=x3)["y"], affine(x3))


def test_bad_inputs_raise_and_leave_the_session_usable(engine: trtfast.Engine) -> None:
    with engine.session() as session:
        cases = [
            (
                {"x": random_x(2).astype(np.float64)},
                "expected dtype float32, received numpy float64",
            ),
            ({"x": np.zeros((2, 5), np.float32)}, r"dimension 1 must be 4"),
            ({"x": np.zeros((65, 4), np.float32)}, r"allowed \[1, 4\] to \[64, 4\]"),
            ({"x": np.zeros((2, 4, 1), np.float32)}, "expected 2 dimensions"),
            ({"y": random_x(2)}, "unknown input 'y'"),
            ({}, "missing input 'x'"),
        ]
        for inputs, message in cases:
            with pytest.raises(trtfast.InputError, match=message):
                session(inputs)
        with pytest.raises(trtfast.InputError, match="is given twice"):
            session({"x": random_x(2)}, x=random_x(2))
        with pytest.raises(TypeError):
            session({"x": random_x(2)}, {"x": random_x(2)})
        x = random_x(2)
        np.testing.assert_array_equal(session(x=x)["y"], affine(x))


def test_concurrent_use_of_one_session_is_refused() -> None:
    engine = make_engine(delay_us=300_000.0)
    x = random_x(2)
    with engine.session(cuda_graph=False) as session:
        results: list[dict[str, Any]] = []
        worker = threading.Thread(target=lambda: results.append(session(x=x)))
        worker.start()
        time.sleep(0.1)
        with pytest.raises(trtfast.TrtfastError, match="running a call on another thread"):
            session(x=x)
        worker.join()
        np.testing.assert_array_equal(results[0]["y"], affine(x))


def test_closed_session_refuses_calls(engine: trtfast.Engine) -> None:
    session = engine.session()
    session.close()
    assert session.closed
    with pytest.raises(trtfast.TrtfastError, match="closed"):
        session(x=random_x(1))


# --- profiles, shapes, outputs -------------------------------------------------------------------


def test_profiles_are_switched_as_shapes_need() -> None:
    # The test executor refuses shapes outside the selected profile, so a wrong switch fails.
    engine = make_engine(profiles=[(1, 4, 8), (9, 16, 32)])
    with engine.session() as session:
        for batch in (4, 20, 8, 9, 32, 1):
            x = random_x(batch, seed=batch)
            np.testing.assert_array_equal(session(x=x)["y"], affine(x))


def test_zero_size_tensors() -> None:
    engine = make_engine(profiles=[(0, 4, 16)])
    for cuda_graph in (True, False):
        with engine.session(cuda_graph=cuda_graph) as session:
            for _ in range(3):
                y = session(x=np.zeros((0, 4), np.float32))["y"]
                assert y.shape == (0, 4)
                assert y.dtype == np.float32
            device = session(x=DeviceCopy(np.zeros((0, 4), np.float32)))["y"]
            assert isinstance(device, trtfast.DeviceArray)
            assert device.shape == (0, 4)
            assert device.numpy().shape == (0, 4)
            x = random_x(3)
            np.testing.assert_array_equal(session(x=x)["y"], affine(x))


def test_two_inputs_two_outputs() -> None:
    engine = trtfast.Engine(_testing.two_outputs(features=4))
    x = random_x(6)
    bias = np.array([0.5, -1.0, 2.0, 0.0], np.float32)
    with engine.session() as session:
        result = session(x=x, bias=bias)
        assert set(result) == {"sum", "positives"}
        np.testing.assert_array_equal(result["sum"], x + bias)
        assert result["positives"].dtype == np.int32
        np.testing.assert_array_equal(result["positives"], (x > 0).sum(axis=1).astype(np.int32))
        positives = np.empty(6, np.int32)
        result = session(x=x, bias=bias, out={"positives": positives})
        assert result["positives"] is positives
        np.testing.assert_array_equal(result["sum"], x + bias)


def test_data_dependent_output_shape() -> None:
    engine = trtfast.Engine(_testing.positives(profiles=[(0, 8, 64)]))
    with engine.session() as session:
        assert session.stats["graphs_enabled"] is False
        for values in ([1.0, -2.0, 3.0, 0.0, 5.0], [-1.0, -2.0], [], list(range(-20, 40))):
            x = np.array(values, np.float32)
            expected = x[x > 0]
            host = session(x=x)["values"]
            assert isinstance(host, np.ndarray)
            np.testing.assert_array_equal(host, expected)
            device = session(x=DeviceCopy(x))["values"]
            assert isinstance(device, trtfast.DeviceArray)
            assert device.shape == expected.shape
            np.testing.assert_array_equal(device.numpy(), expected)
        with pytest.raises(trtfast.InputError, match="depends on the data"):
            session(x=np.ones(3, np.float32), out={"values": np.empty(3, np.float32)})
        with pytest.raises(trtfast.InputError, match="data-dependent shape"):
            session.bind({"x": np.ones(3, np.float32)})


# --- device arrays: zero copies ------------------------------------------------------------------


def test_device_arrays_in_and_out_without_torch_or_cupy(engine: trtfast.Engine) -> None:
    x = random_x(5)
    device_x = DeviceCopy(x)
    with engine.session() as session:
        allocations = _core.cuda.allocation_count()
        y = session(x=device_x)["y"]
        # One pooled output block and no staging: the input was bound by pointer.
        assert _core.cuda.allocation_count() - allocations == 1
        assert isinstance(y, trtfast.DeviceArray)
        assert (y.shape, y.dtype, y.device, y.nbytes, y.ndim, y.size, len(y)) == (
            (5, 4),
            "float32",
            0,
            80,
            2,
            20,
            5,
        )
        assert y.__dlpack_device__() == (2, 0)
        interface = y.__cuda_array_interface__
        assert interface["data"] == (y.ptr, False)
        assert interface["shape"] == (5, 4)
        assert interface["typestr"] == "<f4"
        np.testing.assert_array_equal(y.numpy(), affine(x))
        # A result feeds the next call directly.
        z = session(x=y)["y"]
        np.testing.assert_array_equal(z.numpy(), affine(affine(x)))
        assert "DeviceArray(shape=[5, 4], dtype=float32, device=cuda:0)" == repr(z)


def test_device_results_are_not_overwritten_by_later_calls(engine: trtfast.Engine) -> None:
    with engine.session() as session:
        x1, x2, x3 = (random_x(4, seed=s) for s in (1, 2, 3))
        y1 = session(x=DeviceCopy(x1))["y"]
        y2 = session(x=DeviceCopy(x2))["y"]
        y3 = session(x=DeviceCopy(x3))["y"]
        assert len({y1.ptr, y2.ptr, y3.ptr}) == 3
        for y, x in ((y1, x1), (y2, x2), (y3, x3)):
            np.testing.assert_array_equal(y.numpy(), affine(x))


def test_no_allocation_after_warm_up(engine: trtfast.Engine) -> None:
    host = random_x(8)
    device = DeviceCopy(host)
    with engine.session() as session:
        result = None
        for _ in range(3):
            session(x=host)
            result = session(x=device)
        allocations = _core.cuda.allocation_count()
        launches = session.stats["graph_launches"]
        for _ in range(100):
            # Host and device inputs bind different addresses: the first call of each pair
            # applies the change by a plain enqueue, the second replays.
            for _ in range(2):
                np.testing.assert_array_equal(session(x=host)["y"], affine(host))
            session(x=device)  # dropped at once: the next call gets its pooled block back
            result = session(x=device)
        assert _core.cuda.allocation_count() == allocations
        assert session.stats["graph_launches"] - launches == 200
        assert result is not None
        np.testing.assert_array_equal(result["y"].numpy(), affine(host))


def test_torch_zero_copy(engine: trtfast.Engine) -> None:
    torch = torch_cuda()
    x = torch.from_numpy(random_x(6)).cuda()
    with engine.session(torch_results=False) as session:
        allocations = _core.cuda.allocation_count()
        result = session(x=x)
        assert _core.cuda.allocation_count() - allocations == 1  # the pooled output only
        y = result["y"]
        assert isinstance(y, trtfast.DeviceArray)
        t = torch.from_dlpack(y)
        assert t.data_ptr() == y.ptr
        assert t.device == x.device
        assert t.dtype == torch.float32
        assert torch.equal(t, x * 2.0 + 1.0)
        # Into the caller's tensor.
        out = torch.full((6, 4), float("nan"), device="cuda")
        result = session(x=x, out={"y": out})
        assert result["y"] is out
        assert torch.equal(out, x * 2.0 + 1.0)
        # Bad device tensors.
        with pytest.raises(trtfast.InputError, match="expected a contiguous"):
            session(x=torch.ones(4, 8, device="cuda")[:, ::2])
        with pytest.raises(
            trtfast.InputError, match=r"expected dtype float32, received torch\.float64"
        ):
            session(x=x.double())
        with pytest.raises(trtfast.InputError, match=r"output 'y': expected a buffer"):
            session(x=x, out={"y": torch.empty(5, 4, device="cuda")})
        # CPU tensors travel the host path.
        cpu = x.cpu()
        np.testing.assert_array_equal(session(x=cpu)["y"], affine(cpu.numpy()))


def test_torch_in_torch_out(engine: trtfast.Engine) -> None:
    torch = torch_cuda()
    x = torch.from_numpy(random_x(6)).cuda()
    with engine.session() as session:
        y = session(x)["y"]  # positionally: the engine has one input
        assert isinstance(y, torch.Tensor) and y.device == x.device
        assert torch.equal(y, x * 2.0 + 1.0)
        # CPU tensors: CPU tensors sharing the host result's memory.
        cpu = x.cpu()
        y = session(x=cpu)["y"]
        assert isinstance(y, torch.Tensor) and y.device.type == "cpu"
        assert torch.equal(y, cpu * 2.0 + 1.0)
        # The caller's out buffer comes back as it is.
        out = torch.empty(6, 4, device="cuda")
        assert session(x=x, out={"y": out})["y"] is out
        # A bound call returns the same torch tensors, updated by each replay.
        bound = session.bind({"x": x})
        assert isinstance(bound["y"], torch.Tensor)
        x.fill_(3.0)
        assert session.run()["y"] is bound["y"]
        assert bool((bound["y"] == 7.0).all())
    # Pooled engine calls too.
    assert isinstance(engine(x=x)["y"], torch.Tensor)


def test_device_arrays_convert_with_numpy(engine: trtfast.Engine) -> None:
    x = random_x(5)
    with engine.session() as session:
        y = session(x=DeviceCopy(x))["y"]
        assert isinstance(y, trtfast.DeviceArray)
        np.testing.assert_array_equal(np.asarray(y), affine(x))
        np.testing.assert_array_equal(np.asarray(y, dtype=np.float64), affine(x).astype(np.float64))
        assert np.asarray(y).dtype == np.float32 and np.asarray(y).shape == (5, 4)
        if np.lib.NumpyVersion(np.__version__) >= "2.0.0":
            with pytest.raises(ValueError, match=r"a.numpy\(\) \(or np.asarray\(a\)\) copies"):
                np.asarray(y, copy=False)


def test_torch_results_outlive_the_session(engine: trtfast.Engine) -> None:
    torch = torch_cuda()
    x = torch.from_numpy(random_x(3)).cuda()
    session = engine.session()
    t = torch.from_dlpack(session(x=x)["y"])
    session.close()
    del session
    assert torch.equal(t, x * 2.0 + 1.0)


def test_dlpack_only_producer(engine: trtfast.Engine) -> None:
    torch = torch_cuda()

    class DLPackOnly:
        def __init__(self, tensor: Any) -> None:
            self.tensor = tensor

        def __dlpack__(self, **kwargs: Any) -> Any:
            return self.tensor.__dlpack__(**kwargs)

        def __dlpack_device__(self) -> Any:
            return self.tensor.__dlpack_device__()

    x = torch.from_numpy(random_x(3)).cuda()
    with engine.session() as session:
        y = session(x=DLPackOnly(x))["y"]
        assert torch.equal(torch.from_dlpack(y), x * 2.0 + 1.0)


def test_device_mismatch_is_refused(engine: trtfast.Engine) -> None:
    torch = torch_cuda()
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two CUDA devices")
    with (
        engine.session() as session,
        pytest.raises(
            trtfast.InputError, match=r"expected a tensor on cuda:0 .* received one on cuda:1"
        ),
    ):
        session(x=torch.ones(2, 4, device="cuda:1"))


def test_cupy_zero_copy(engine: trtfast.Engine) -> None:
    cupy = cupy_module()
    x_host = random_x(5)
    x = cupy.asarray(x_host)
    with engine.session() as session:
        y = session(x=x)["y"]
        assert isinstance(y, trtfast.DeviceArray)
        view = cupy.asarray(y)
        assert view.data.ptr == y.ptr
        cupy.testing.assert_array_equal(view, cupy.asarray(affine(x_host)))
        from_dlpack = cupy.from_dlpack(y)
        assert from_dlpack.data.ptr == y.ptr
        out = cupy.empty((5, 4), cupy.float32)
        assert session(x=x, out={"y": out})["y"] is out
        cupy.testing.assert_array_equal(out, cupy.asarray(affine(x_host)))


# --- streams -------------------------------------------------------------------------------------


@pytest.mark.parametrize("cuda_graph", [True, False])
def test_waits_for_work_on_the_default_stream(engine: trtfast.Engine, cuda_graph: bool) -> None:
    torch = torch_cuda()
    with engine.session(cuda_graph=cuda_graph) as session:
        for _ in range(2):  # the first call captures, the second replays
            x = torch.zeros(8, 4, device="cuda")
            torch.cuda._sleep(100_000_000)  # keeps the default stream busy for tens of ms
            x.fill_(3.0)
            y = torch.from_dlpack(session(x=x)["y"])
            assert bool((y == 7.0).all())


def test_host_calls_do_not_wait_for_the_default_stream(engine: trtfast.Engine) -> None:
    torch = torch_cuda()
    x = random_x(4)
    with engine.session() as session:
        session(x=x)
        torch.cuda._sleep(300_000_000)  # keeps the default stream busy for over 100 ms
        start = time.perf_counter()
        y = session(x=x)["y"]
        elapsed = time.perf_counter() - start
        busy = not torch.cuda.default_stream().query()
        torch.cuda.synchronize()
    np.testing.assert_array_equal(y, affine(x))
    assert busy, "the default stream finished too early for this test to mean anything"
    assert elapsed < 0.05, f"a numpy call waited {elapsed * 1000:.0f} ms for the default stream"


def test_joins_the_callers_stream(engine: trtfast.Engine) -> None:
    torch = torch_cuda()
    stream = torch.cuda.Stream()
    with engine.session(stream=stream) as session:
        for _ in range(2):
            with torch.cuda.stream(stream):
                x = torch.zeros(8, 4, device="cuda")
                torch.cuda._sleep(100_000_000)
                x.fill_(3.0)
            y = torch.from_dlpack(session(x=x)["y"])
            with torch.cuda.stream(stream):
                doubled = y * 2.0  # ordered after the session's work
            stream.synchronize()
            assert bool((doubled == 14.0).all())


# --- bound calls ---------------------------------------------------------------------------------


def test_bind_then_replay_host(engine: trtfast.Engine) -> None:
    x = random_x(4)
    with engine.session() as session:
        bound = session.bind({"x": x})
        assert session.bound
        assert session.run() is bound
        np.testing.assert_array_equal(bound["y"], affine(x))
        calls = session.stats["executor_calls"]
        for seed in range(5):
            x[...] = random_x(4, seed=seed)  # updated in place, read on every run
            assert session.run() is bound
            np.testing.assert_array_equal(bound["y"], affine(x))
        assert session.stats["executor_calls"] == calls
        # An ordinary call in between does not disturb the binding.
        other = random_x(7)
        np.testing.assert_array_equal(session(x=other)["y"], affine(other))
        session.run()
        np.testing.assert_array_equal(bound["y"], affine(x))
        session.unbind()
        with pytest.raises(trtfast.InputError, match="missing input 'x'"):
            session.run()


def test_bind_then_replay_device(engine: trtfast.Engine) -> None:
    torch = torch_cuda()
    x = torch.zeros(4, 4, device="cuda")
    out = torch.empty(4, 4, device="cuda")
    with engine.session() as session:
        bound = session.bind({"x": x}, {"y": out})
        assert bound["y"] is out
        for value in (1.0, 2.0, 3.0):
            x.fill_(value)  # on the default stream, which the session waits for
            session.run()
            assert bool((out == value * 2.0 + 1.0).all())
        # Without outputs given, the binding owns device outputs.
        bound = session.bind({"x": x})
        session.run()
        assert bool((torch.from_dlpack(bound["y"]) == 7.0).all())


# --- synchronization -----------------------------------------------------------------------------


def test_spin_burns_cpu_and_blocking_sleeps() -> None:
    engine = make_engine(delay_us=200_000.0)
    x = random_x(2)
    measured = {}
    for sync in ("spin", "blocking"):
        with engine.session(sync=sync, cuda_graph=False) as session:
            session(x=x)
            wall = time.perf_counter()
            cpu = time.thread_time()
            np.testing.assert_array_equal(session(x=x)["y"], affine(x))
            measured[sync] = (time.thread_time() - cpu, time.perf_counter() - wall)
    spin_cpu, spin_wall = measured["spin"]
    blocking_cpu, blocking_wall = measured["blocking"]
    assert spin_wall >= 0.19 and blocking_wall >= 0.19
    assert spin_cpu > 0.5 * spin_wall, measured
    assert blocking_cpu < 0.25 * blocking_wall, measured


# A call whose GPU work takes DELAY_S, interrupted by the parent's SIGINT half a second in; then a
# call on device memory (another stream than the host call's) and a host call on the same session.
INTERRUPTED_CALL = textwrap.dedent(
    """
    import sys
    import time

    import numpy as np

    import trtfast
    from trtfast import _testing
    from trtfast.bench import DeviceCopy

    sync, delay_s = sys.argv[1], float(sys.argv[2])
    engine = trtfast.Engine(_testing.affine(delay_us=delay_s * 1e6))
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    expected = x * np.float32(2.0) + np.float32(1.0)
    session = engine.session(sync=sync)
    start = time.monotonic()
    print("calling", flush=True)
    try:
        session(x=x)
    except KeyboardInterrupt:
        print(f"interrupted {time.monotonic() - start:.3f}", flush=True)
    else:
        print("returned without KeyboardInterrupt", flush=True)
        sys.exit(1)
    y = session(x=DeviceCopy(x))["y"].numpy()
    assert np.array_equal(y, expected), y
    print(f"device call done {time.monotonic() - start:.3f}", flush=True)
    assert np.array_equal(session(x=x)["y"], expected)
    session.close()
    print("closed", flush=True)
    """
)


@pytest.mark.parametrize("sync", ["spin", "blocking"])
def test_ctrl_c_during_a_long_call_returns_and_the_session_stays_usable(sync: str) -> None:
    delay_s = 2.0
    child = subprocess.Popen(
        [sys.executable, "-c", INTERRUPTED_CALL, sync, str(delay_s)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "calling\n"
        time.sleep(0.5)  # inside the call: its GPU work takes delay_s
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        interrupted = child.stdout.readline()
        reaction_s = time.monotonic() - sent
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, f"{interrupted}{out}{err}"
    assert interrupted.startswith("interrupted "), f"{interrupted}{out}{err}"
    interrupted_at = float(interrupted.split()[1])
    print(f"sync={sync}: KeyboardInterrupt {reaction_s * 1000:.0f} ms after SIGINT")
    if sync == "spin":
        assert reaction_s < 1.0 and interrupted_at < delay_s - 0.5, (reaction_s, interrupted_at)
    else:  # CUDA's blocking wait ends with the GPU work; the signal takes effect then
        assert interrupted_at > 0.9 * delay_s, interrupted_at
    # The next call waited for the interrupted call's work before its own: without that wait,
    # its work (on another stream) would have overlapped and ended near interrupted_at + delay_s.
    (device_line,) = [line for line in out.splitlines() if line.startswith("device call done")]
    assert float(device_line.split()[-1]) > 1.9 * delay_s, out
    assert out.splitlines()[-1] == "closed", out


# Calls on host arrays where pinning fails (argv[1] == "refused"): one PerformanceWarning per
# session, correct results, CUDA graphs still replayed; data-dependent outputs regrow staging.
PAGEABLE_STAGING = textwrap.dedent(
    """
    import sys
    import warnings

    import numpy as np

    import trtfast
    from trtfast import _testing

    refused = sys.argv[1] == "refused"
    rng = np.random.default_rng(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        engine = trtfast.Engine(_testing.affine(profiles=[(1, 8, 64)]))
        with engine.session() as session:
            for batch in (3, 3, 3, 5, 5, 3, 64):
                x = rng.standard_normal((batch, 4), dtype=np.float32)
                expected = x * np.float32(2.0) + np.float32(1.0)
                assert np.array_equal(session(x=x)["y"], expected)
                out = np.empty_like(x)
                session(x=x, out={"y": out})
                assert np.array_equal(out, expected)
            stats = session.stats
        assert stats["graphs_enabled"] and stats["graph_launches"] > 0, stats
        positives = trtfast.Engine(_testing.positives(profiles=[(0, 8, 512)]))
        with positives.session() as session:
            for values in ([1.0, -2.0, 3.0], list(range(-100, 400)), [-1.0]):
                x = np.array(values, np.float32)
                assert np.array_equal(session(x=x)["values"], x[x > 0])
    messages = [str(w.message) for w in caught if w.category is trtfast.PerformanceWarning]
    assert not [w for w in caught if w.category is RuntimeWarning], "graphs fell back"
    assert len(messages) == (2 if refused else 0), messages
    for message in messages:
        print(message)
    """
)


@pytest.mark.parametrize("pinning", ["refused", "granted"])
def test_sessions_stage_in_pageable_memory_where_pinning_fails(pinning: str) -> None:
    env = dict(os.environ)
    env.pop("TRTFAST_TESTING_REFUSE_PINNED_MEMORY", None)
    if pinning == "refused":
        env["TRTFAST_TESTING_REFUSE_PINNED_MEMORY"] = "1"
    result = subprocess.run(
        [sys.executable, "-c", PAGEABLE_STAGING, pinning],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    if pinning == "refused":
        first, second = result.stdout.splitlines()
        assert first.startswith(
            "pinned host memory is unavailable (cudaHostAlloc of 1024 pinned bytes was not tried"
        ), first
        assert "pageable memory instead (1024 bytes here)" in first, first
        assert "pageable memory instead (2048 bytes here)" in second, second
    else:
        assert result.stdout == ""


# --- threads -------------------------------------------------------------------------------------


def test_sixteen_threads_on_one_engine_match_one_thread() -> None:
    engine = make_engine(profiles=[(1, 16, 64)])
    inputs = [random_x(1 + (i * 5) % 64, seed=i) for i in range(48)]
    expected = [engine(x=x)["y"] for x in inputs]
    for x, y in zip(inputs, expected, strict=True):
        np.testing.assert_array_equal(y, affine(x))

    def work(thread: int) -> list[tuple[int, np.ndarray]]:
        order = [(thread * 7 + k) % len(inputs) for k in range(30)]
        return [(i, engine(x=inputs[i])["y"]) for i in order]

    with ThreadPoolExecutor(max_workers=16) as pool:
        for results in pool.map(work, range(16)):
            for i, y in results:
                np.testing.assert_array_equal(y, expected[i])
    assert engine.core.executors_created <= 17


def test_submit_runs_on_a_pool_of_contexts() -> None:
    engine = make_engine(profiles=[(1, 16, 64)])
    inputs = [random_x(1 + i % 64, seed=i) for i in range(64)]
    with engine.session(workers=4) as session:
        futures = [session.submit(x=x) for x in inputs]
        for x, future in zip(inputs, futures, strict=True):
            np.testing.assert_array_equal(future.result(timeout=60)["y"], affine(x))
        # From sixteen threads at once.
        with ThreadPoolExecutor(max_workers=16) as pool:
            nested = list(pool.map(lambda x: session.submit({"x": x}).result(timeout=60), inputs))
        for x, result in zip(inputs, nested, strict=True):
            np.testing.assert_array_equal(result["y"], affine(x))
        failing = session.submit(x=np.zeros((2, 3), np.float32))
        with pytest.raises(trtfast.InputError):
            failing.result(timeout=60)
    assert engine.core.executors_created <= 5


# --- TensorRT's rules, as the strict test executor enforces them ---------------------------------
# Each test fails where sessions break the rule (docs/tensorrt-rules.md, "Runtime").


class OffsetDeviceArray:
    """A host array copied to device memory `offset` bytes past a 256-byte aligned allocation, as
    a slice such as t[1:] of a torch tensor is: a device pointer TensorRT cannot take."""

    def __init__(self, array: np.ndarray[Any, Any], offset: int = 4) -> None:
        self.array = np.ascontiguousarray(array)
        self.nbytes = self.array.nbytes
        self._buffer = _core.cuda.DeviceBuffer(self.nbytes + offset)
        self.ptr = self._buffer.ptr + offset
        assert self.ptr % 256 != 0
        self._copy(self.ptr, self.array.ctypes.data)
        self.__cuda_array_interface__ = {
            "shape": self.array.shape,
            "typestr": self.array.dtype.str,
            "data": (self.ptr, False),
            "strides": None,
            "version": 3,
        }

    def _copy(self, dst: int, src: int) -> None:
        stream = _core.cuda.Stream()
        _core.cuda.copy_async(dst, src, self.nbytes, stream)
        stream.synchronize()

    def numpy(self) -> np.ndarray[Any, Any]:
        host = np.empty_like(self.array)
        self._copy(host.ctypes.data, self.ptr)
        return host


def device_numpy(array: Any) -> np.ndarray[Any, Any]:
    """The contents of a device array given by ``__cuda_array_interface__`` (contiguous)."""
    interface = array.__cuda_array_interface__
    host = np.empty(interface["shape"], np.dtype(interface["typestr"]))
    stream = _core.cuda.Stream()
    _core.cuda.copy_async(host.ctypes.data, interface["data"][0], host.nbytes, stream)
    stream.synchronize()
    return host


def test_a_graph_replays_only_after_a_plain_enqueue_of_its_shapes(engine: trtfast.Engine) -> None:
    # The strict executor writes shape state when the first enqueue after a change runs: a graph
    # captured for batch 3, replayed right after batch 2 ran, computes 2 rows of 3.
    with engine.session() as session:
        x3, x2, x3_again = random_x(3, seed=1), random_x(2, seed=2), random_x(3, seed=3)
        for x in (x3, x2, x3_again):
            np.testing.assert_array_equal(session(x=x)["y"], affine(x))
        stats = session.stats
        assert (stats["graph_captures"], stats["graph_launches"], stats["plain_runs"]) == (2, 0, 3)
        x3_last = random_x(3, seed=4)
        np.testing.assert_array_equal(session(x=x3_last)["y"], affine(x3_last))
        assert session.stats["graph_launches"] == 1


def test_a_graph_replays_only_after_a_plain_enqueue_of_its_addresses(
    engine: trtfast.Engine,
) -> None:
    xa, xb = random_x(4, seed=1), random_x(4, seed=2)
    a, b = DeviceCopy(xa), DeviceCopy(xb)
    with engine.session() as session:
        for x, expected in ((a, xa), (b, xb), (a, xa), (a, xa)):
            np.testing.assert_array_equal(session(x=x)["y"].numpy(), affine(expected))
        stats = session.stats
        # a: capture; b: capture; a again: the address change applied by enqueue; a: replay.
        assert (stats["graph_captures"], stats["plain_runs"], stats["graph_launches"]) == (2, 3, 1)


def test_a_profile_switch_is_applied_by_an_enqueue_before_any_replay() -> None:
    engine = make_engine(profiles=[(1, 4, 4), (5, 8, 8)])
    with engine.session() as session:
        small, large = random_x(3, seed=1), random_x(6, seed=2)
        for x in (small, large, small, small):
            np.testing.assert_array_equal(session(x=x)["y"], affine(x))
        stats = session.stats
        assert (stats["graph_captures"], stats["plain_runs"], stats["graph_launches"]) == (2, 3, 1)


def test_unaligned_device_arrays_go_through_an_aligned_copy_with_one_warning(
    engine: trtfast.Engine,
) -> None:
    x = random_x(5, seed=1)
    unaligned = OffsetDeviceArray(x)
    out = OffsetDeviceArray(np.zeros((5, 4), np.float32))
    with engine.session() as session:
        with pytest.warns(trtfast.PerformanceWarning, match="not 256-byte aligned"):
            result = session(x=unaligned)
        np.testing.assert_array_equal(result["y"].numpy(), affine(x))
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # once per session
            for seed in range(3):
                x = random_x(5, seed=seed)
                unaligned = OffsetDeviceArray(x)  # another address each call, same aligned copy
                assert session(x=unaligned, out={"y": out})["y"] is out
                np.testing.assert_array_equal(out.numpy(), affine(x))
        assert session.stats["graph_launches"] >= 1


def test_a_torch_slice_is_staged_not_refused(engine: trtfast.Engine) -> None:
    torch = torch_cuda()
    base = torch.randn(5 * 4 + 1, device="cuda")
    x = base[1:].view(5, 4)  # 4 bytes past its allocation
    assert x.data_ptr() % 256 != 0
    with engine.session() as session:
        with pytest.warns(trtfast.PerformanceWarning, match="not 256-byte aligned"):
            y = session(x=x)["y"]  # torch in, torch out
        np.testing.assert_array_equal(y.cpu().numpy(), affine(x.cpu().numpy()))


def test_an_output_aliased_to_a_device_input_updates_it_in_place() -> None:
    engine = trtfast.Engine(_testing.accumulate(features=4))
    cache0, update = random_x(3, seed=1), random_x(3, seed=2)
    device_update = DeviceCopy(update)
    caches: list[Any] = [DeviceCopy(cache0), OffsetDeviceArray(cache0)]
    for cache in caches:
        with engine.session() as session, warnings.catch_warnings():
            warnings.simplefilter("ignore", trtfast.PerformanceWarning)  # the unaligned cache
            expected = cache0.copy()
            for _ in range(3):  # enqueue (and capture, which runs nothing), then replays
                result = session(cache=cache, update=device_update)
                expected = expected + update
                assert result["cache_out"] is cache
                np.testing.assert_array_equal(device_numpy(cache), expected)
            assert session.stats["graph_launches"] == 2
            with pytest.raises(trtfast.InputError, match="shares memory with input 'cache'"):
                session(cache=cache, update=device_update, out={"cache_out": cache})


def test_an_output_aliased_to_a_host_input_is_a_new_array() -> None:
    engine = trtfast.Engine(_testing.accumulate(features=4))
    cache, update = random_x(3, seed=1), random_x(3, seed=2)
    before = cache.copy()
    with engine.session() as session:
        for _ in range(2):
            result = session(cache=cache, update=update)
            np.testing.assert_array_equal(result["cache_out"], before + update)
        np.testing.assert_array_equal(cache, before)


def test_shape_tensors_in_host_memory_decide_output_shapes_and_graphs() -> None:
    engine = trtfast.Engine(_testing.take_columns(features=4))
    x = random_x(3, seed=1)
    device_x = DeviceCopy(x)
    with engine.session() as session:
        for k in (2, 4, 2, 2, 3):
            y = session(x=x, k=np.array([k], np.int64))["y"]
            np.testing.assert_array_equal(y, affine(x[:, :k]))
            y_device = session(x=device_x, k=np.array([k], np.int64))["y"]
            np.testing.assert_array_equal(y_device.numpy(), affine(x[:, :k]))
            # Let go of the result, so the next device call gets the same pooled block (a held
            # one would give it another address, and another graph).
            del y_device
        # A graph is keyed by the values too: one per (k, host or device x).
        assert session.stats["graph_captures"] == 6
        with pytest.raises(trtfast.InputError, match=r"'k' is a shape tensor .* host memory"):
            session(x=device_x, k=DeviceCopy(np.array([2], np.int64)))
        with pytest.raises(
            trtfast.InputError, match=r"'k' has values \[5\], allowed \[1\] to \[4\]"
        ):
            session(x=x, k=np.array([5], np.int64))
        y = session(x=x, k=np.array([1], np.int64))["y"]
        np.testing.assert_array_equal(y, affine(x[:, :1]))


def test_a_failed_output_shape_query_is_asked_again(engine: trtfast.Engine) -> None:
    core = engine.core
    with engine.session() as session:
        session(x=random_x(2))
        core.fail_output_shape = True
        with pytest.raises(trtfast.TrtfastError, match="output-shape query failed"):
            session(x=random_x(3))
        core.fail_output_shape = False
        x = random_x(3, seed=5)
        y = session(x=x)["y"]
        assert y.shape == (3, 4)
        np.testing.assert_array_equal(y, affine(x))
