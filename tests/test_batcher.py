"""The dynamic batcher on a numpy stand-in engine: what shares a batch, when a batch leaves,
padding, overload, timeouts, closing, asyncio, metrics."""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from standin import AffineStandIn, expected

import trtfast
from trtfast import Batcher, InputError, OverloadedError


def rows(count: int, seed: int, features: int = 4) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, features), dtype=np.float32)


def run_concurrently(batcher: Batcher, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    with ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(lambda r: batcher(r), requests))


def test_concurrent_requests_are_batched_and_answered_by_rows() -> None:
    engine = AffineStandIn(max_rows=16, delay=0.01)
    requests = [{"x": rows(1 + i % 3, seed=i)} for i in range(48)]
    with Batcher(engine, max_delay_us=20_000, workers=1) as batcher:
        results = run_concurrently(batcher, requests)
        metrics = batcher.metrics()
    for request, result in zip(requests, results, strict=True):
        np.testing.assert_array_equal(result["y"], expected(request["x"]))
        assert result["index"].shape == (len(request["x"]),)
    assert sum(engine.calls) == sum(len(r["x"]) for r in requests)
    assert len(engine.calls) < len(requests) / 2, engine.calls
    assert max(engine.calls) <= 16
    assert metrics["requests"] == 48
    assert metrics["batches"] == len(engine.calls)
    assert metrics["rows"] == sum(engine.calls)
    assert sum(metrics["batch_sizes"].values()) == metrics["batches"]
    assert max(metrics["batch_sizes"]) > 3  # batches held more than one request
    assert metrics["queue_depth"] == 0
    assert metrics["queue_time"]["count"] == metrics["run_time"]["count"] == 48


def test_a_batch_never_exceeds_max_batch_rows() -> None:
    engine = AffineStandIn(max_rows=64, delay=0.02)
    requests = [{"x": rows(3, seed=i)} for i in range(20)]
    with Batcher(engine, max_batch=8, max_delay_us=50_000, workers=1) as batcher:
        results = run_concurrently(batcher, requests)
    for request, result in zip(requests, results, strict=True):
        np.testing.assert_array_equal(result["y"], expected(request["x"]))
    assert max(engine.calls) <= 8
    assert 6 in engine.calls  # two 3-row requests fit; a third would make 9 rows


def test_a_full_batch_leaves_without_waiting_for_the_delay() -> None:
    engine = AffineStandIn(max_rows=8)
    with Batcher(engine, max_delay_us=30e6, workers=1) as batcher:
        started = time.monotonic()
        results = run_concurrently(batcher, [{"x": rows(2, seed=i)} for i in range(4)])
        elapsed = time.monotonic() - started
    assert elapsed < 5.0
    assert engine.calls == [8]
    assert len(results) == 4


def test_a_full_batch_leaves_while_an_older_request_of_another_shape_waits() -> None:
    engine = AffineStandIn(max_rows=8)
    with ThreadPoolExecutor(5) as pool, Batcher(engine, max_delay_us=30e6, workers=1) as batcher:
        waiting = pool.submit(batcher, x=rows(1, seed=0).astype(np.float16))
        while batcher.metrics()["queue_depth"] < 1:
            time.sleep(0.001)
        started = time.monotonic()
        full = list(pool.map(lambda i: batcher(x=rows(2, seed=i)), range(4)))
        assert time.monotonic() - started < 5.0
        assert not waiting.done()
    # closing ran the waiting request, whose float16 input the stand-in refuses
    with pytest.raises(InputError, match="float32"):
        waiting.result()
    assert engine.calls == [8]
    for i, result in enumerate(full):
        np.testing.assert_array_equal(result["y"], expected(rows(2, seed=i)))


def test_a_lone_request_leaves_after_max_delay() -> None:
    engine = AffineStandIn()
    with Batcher(engine, max_delay_us=200_000) as batcher:
        started = time.monotonic()
        batcher(x=rows(1, seed=0))
        elapsed = time.monotonic() - started
    assert 0.2 <= elapsed < 5.0


def test_requests_with_different_static_inputs_never_share_a_batch() -> None:
    engine = AffineStandIn(with_scale=True, delay=0.01)
    scales = [np.full(4, s, dtype=np.float32) for s in (1.0, 3.0)]
    requests = [{"x": rows(1, seed=i), "scale": scales[i % 2].copy()} for i in range(24)]
    with Batcher(engine, max_delay_us=20_000, workers=1) as batcher:
        results = run_concurrently(batcher, requests)
    for request, result in zip(requests, results, strict=True):
        np.testing.assert_array_equal(result["y"], expected(request["x"], request["scale"]))
    assert len(engine.calls) < 24


def test_requests_with_different_inner_dimensions_or_dtypes_never_share_a_batch() -> None:
    seen: list[tuple[tuple[int, ...], str]] = []

    class Echo:
        inputs = (
            trtfast.TensorSpec("x", "float16", (-1, -1), True, (((1, 1), (8, 8), (64, 64)),)),
        )
        outputs = (trtfast.TensorSpec("y", "float16", (-1, -1), False),)

        def __call__(self, inputs: Any, /) -> dict[str, Any]:
            time.sleep(0.01)
            x = inputs["x"]
            seen.append((x.shape, str(x.dtype)))
            return {"y": x}

    engine = Echo()
    requests = [{"x": np.full((1, 2 + i % 2), i, dtype=np.float32)} for i in range(8)] + [
        {"x": np.full((1, 2), 9, dtype=np.float16)} for _ in range(4)
    ]
    with Batcher(engine, max_delay_us=50_000, workers=1) as batcher:
        results = run_concurrently(batcher, requests)
    for request, result in zip(requests, results, strict=True):
        np.testing.assert_array_equal(result["y"], request["x"])
        assert result["y"].dtype == request["x"].dtype
    assert {shape[1:] for shape, _ in seen} == {(2,), (3,)}
    assert len(seen) >= 3  # float32 x 2 columns, float32 x 3 columns, float16 x 2 columns


def test_batch_sizes_pad_batches_and_padding_never_reaches_a_caller() -> None:
    engine = AffineStandIn(max_rows=64, delay=0.01)
    requests = [{"x": rows(1 + i % 4, seed=i)} for i in range(30)]
    with Batcher(engine, max_delay_us=10_000, batch_sizes=(1, 2, 4, 8, 16), workers=1) as batcher:
        results = run_concurrently(batcher, requests)
        metrics = batcher.metrics()
    assert set(engine.calls) <= {1, 2, 4, 8, 16}
    for request, result in zip(requests, results, strict=True):
        np.testing.assert_array_equal(result["y"], expected(request["x"]))
        assert len(result["index"]) == len(request["x"])
    assert metrics["padded_rows"] == sum(engine.calls) - metrics["rows"]
    assert metrics["rows"] == sum(len(r["x"]) for r in requests)


def test_a_full_queue_refuses_at_once() -> None:
    # The engine's call holds until the gate opens: a refusal that arrives while it is closed
    # did not wait for room in the queue, however slow the machine.
    gate = threading.Event()
    engine = AffineStandIn(gate=gate)
    with Batcher(engine, max_batch=1, max_delay_us=0, max_queue=2, workers=1) as batcher:
        with ThreadPoolExecutor(4) as pool:
            try:
                running = pool.submit(batcher, x=rows(1, seed=0))
                while not engine.calls:
                    time.sleep(0.001)
                queued = [pool.submit(batcher, x=rows(1, seed=i)) for i in (1, 2)]
                while batcher.metrics()["queue_depth"] < 2:
                    time.sleep(0.001)
                refused = pool.submit(batcher, x=rows(1, seed=3))
                with pytest.raises(OverloadedError, match="max_queue"):
                    refused.result(timeout=60)
                assert not running.done()
            finally:
                gate.set()
            for future in (running, *queued):
                assert future.result()["y"].shape == (1, 4)
        assert batcher.metrics()["overloaded"] == 1


def test_a_request_that_does_not_start_in_time_raises_and_never_runs() -> None:
    # The running batch holds until the gate opens: the timeout that arrives while it is closed
    # came at the request's deadline, not at the batch's end, however slow the machine.
    gate = threading.Event()
    engine = AffineStandIn(gate=gate)
    with Batcher(engine, max_batch=1, max_delay_us=0, workers=1) as batcher:
        with ThreadPoolExecutor(2) as pool:
            try:
                running = pool.submit(batcher, x=rows(1, seed=0))
                while not engine.calls:
                    time.sleep(0.001)
                started = time.monotonic()
                late = pool.submit(batcher, x=rows(1, seed=1), timeout=0.05)
                with pytest.raises(TimeoutError, match="timeout"):
                    late.result(timeout=60)
                assert time.monotonic() - started >= 0.05
                assert not running.done()
            finally:
                gate.set()
            running.result()
        time.sleep(0.1)
        assert engine.calls == [1]  # the timed-out request never ran
        assert batcher.metrics()["timed_out"] == 1


def test_close_answers_every_queued_request() -> None:
    engine = AffineStandIn(max_rows=4, delay=0.01)
    batcher = Batcher(engine, max_delay_us=30e6, workers=1)
    with ThreadPoolExecutor(10) as pool:
        futures = [pool.submit(batcher, x=rows(1, seed=i)) for i in range(10)]
        while batcher.metrics()["requests"] < 10:
            time.sleep(0.001)
        batcher.close()
        for i, future in enumerate(futures):
            np.testing.assert_array_equal(future.result(timeout=5)["y"], expected(rows(1, i)))
    assert sum(engine.calls) == 10
    with pytest.raises(RuntimeError, match="closed"):
        batcher(x=rows(1, seed=0))


def test_an_engine_failure_raises_in_every_request_of_its_batch() -> None:
    engine = AffineStandIn()
    engine.fail_next = True
    with Batcher(engine, max_delay_us=0) as batcher:
        with pytest.raises(RuntimeError, match="on purpose"):
            batcher(x=rows(1, seed=0))
        np.testing.assert_array_equal(batcher(x=rows(2, seed=1))["y"], expected(rows(2, 1)))
        assert batcher.metrics()["failed"] == 1


def test_bad_requests_raise_input_errors_naming_the_problem() -> None:
    with Batcher(AffineStandIn(with_scale=True, max_rows=8)) as batcher:
        with pytest.raises(InputError, match=r"unknown input\(s\) \['z'\]"):
            batcher(x=rows(1, 0), scale=np.ones(4, np.float32), z=1)
        with pytest.raises(InputError, match=r"missing input\(s\) \['scale'\]"):
            batcher(x=rows(1, 0))
        with pytest.raises(InputError, match="9 rows; the batcher takes 1 to 8"):
            batcher(x=rows(9, 0), scale=np.ones(4, np.float32))
        with pytest.raises(InputError, match="numpy arrays, torch tensors or cupy arrays"):
            batcher(x=[[1.0, 2.0, 3.0, 4.0]], scale=np.ones(4, np.float32))
        with pytest.raises(InputError, match="0 rows"):
            batcher(x=rows(0, 0), scale=np.ones(4, np.float32))


def test_construction_checks_its_limits() -> None:
    engine = AffineStandIn(max_rows=16)
    with pytest.raises(ValueError, match="exceeds the profile's maximum, 16 rows"):
        Batcher(engine, max_batch=32)
    with pytest.raises(ValueError, match="exceed the engine's largest batch"):
        Batcher(engine, batch_sizes=(1, 32))
    with pytest.raises(ValueError, match="max_queue"):
        Batcher(engine, max_queue=0)
    static = AffineStandIn()
    static.inputs = (trtfast.TensorSpec("x", "float32", (2, 4), True),)
    with pytest.raises(ValueError, match="first dimension is dynamic"):
        Batcher(static)
    with Batcher(engine, batch_sizes=(4, 1, 2)) as batcher:
        assert batcher.max_batch == 4
        assert batcher.batch_sizes == (1, 2, 4)


def test_asyncio_requests_share_batches() -> None:
    engine = AffineStandIn(max_rows=32, delay=0.01)

    async def main(batcher: Batcher) -> list[dict[str, Any]]:
        return await asyncio.gather(*(batcher.run_async(x=rows(2, seed=i)) for i in range(40)))

    with Batcher(engine, max_delay_us=20_000, workers=1) as batcher:
        results = asyncio.run(main(batcher))
    for i, result in enumerate(results):
        np.testing.assert_array_equal(result["y"], expected(rows(2, seed=i)))
    assert len(engine.calls) < 20
    assert sum(engine.calls) == 80


def test_asyncio_cancellation_withdraws_a_queued_request_and_timeouts_raise() -> None:
    # The first call holds until the gate opens, so the others stay queued however slow the
    # machine.
    gate = threading.Event()
    engine = AffineStandIn(gate=gate)

    async def main(batcher: Batcher) -> None:
        running = asyncio.ensure_future(batcher.run_async(x=rows(1, seed=0)))
        while not engine.calls:
            await asyncio.sleep(0.001)
        queued = asyncio.ensure_future(batcher.run_async(x=rows(1, seed=1)))
        await asyncio.sleep(0.01)
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await queued
        with pytest.raises(TimeoutError):
            await batcher.run_async(x=rows(1, seed=2), timeout=0.02)
        gate.set()
        assert (await running)["y"].shape == (1, 4)

    with Batcher(engine, max_batch=1, max_delay_us=0, workers=1) as batcher:
        try:
            asyncio.run(main(batcher))
        finally:
            gate.set()
        assert batcher.metrics()["queue_depth"] == 0
    assert engine.calls == [1]


def test_asyncio_requests_answered_before_their_timeout_are_let_go_of() -> None:
    # A request's timer that outlived its answer would hold its inputs until the deadline.
    engine = AffineStandIn(max_rows=8)

    async def ask(batcher: Batcher) -> list[weakref.ref[np.ndarray]]:
        inputs = [rows(1, seed=i) for i in range(8)]
        results = await asyncio.gather(*(batcher.run_async(x=x, timeout=60.0) for x in inputs))
        for x, result in zip(inputs, results, strict=True):
            np.testing.assert_array_equal(result["y"], expected(x))
        return [weakref.ref(x) for x in inputs]

    async def main(batcher: Batcher) -> bool:
        held = await ask(batcher)
        for _ in range(100):  # the worker lets go of its batch just after answering it
            gc.collect()
            if all(ref() is None for ref in held):
                return True
            await asyncio.sleep(0.01)
        return False

    with Batcher(engine, max_delay_us=1000) as batcher:
        assert asyncio.run(main(batcher))
        assert batcher.metrics()["timed_out"] == 0


def test_many_threads_lose_no_request_and_answer_none_twice() -> None:
    engine = AffineStandIn(max_rows=64)
    answered: list[int] = []
    lock = threading.Lock()

    def client(i: int) -> None:
        x = np.full((1, 4), i, dtype=np.float32)
        y = batcher(x=x)["y"]
        assert y[0, 0] == 2 * i + 1
        with lock:
            answered.append(i)

    with Batcher(engine, max_delay_us=2000) as batcher, ThreadPoolExecutor(64) as pool:
        list(pool.map(client, range(1000)))
    assert sorted(answered) == list(range(1000))
    assert sum(engine.calls) == 1000


def test_metrics_are_exported_to_prometheus() -> None:
    prometheus = pytest.importorskip("prometheus_client")
    with Batcher(AffineStandIn(), max_delay_us=0, name="exported") as batcher:
        batcher(x=rows(3, seed=0))
        text = prometheus.generate_latest().decode()
    assert 'trtfast_batcher_requests_total{batcher="exported"} 1.0' in text
    assert 'trtfast_batcher_batch_rows_bucket{batcher="exported",le="4"} 1.0' in text
    assert 'trtfast_batcher_queue_depth{batcher="exported"} 0.0' in text
    assert "trtfast_batcher_queue_time_seconds_count" in text


@pytest.mark.skipif(sys.platform != "linux", reason="timer slack is a Linux setting")
def test_workers_ask_for_precise_timers() -> None:
    # A worker's wait for a batch's delay would otherwise overrun by Linux's default 50 us slack.
    with Batcher(AffineStandIn(), max_delay_us=0) as batcher:
        batcher(x=rows(1, seed=0))  # the workers have started and set their slack
        for worker in batcher._workers:
            slack = Path(f"/proc/{worker.native_id}/timerslack_ns")
            if not slack.exists():
                pytest.skip("this kernel does not show a thread's timer slack")
            assert int(slack.read_text()) == 1000
