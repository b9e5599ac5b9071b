"""Stress on a GPU with trtfast._testing's engines: many threads, many calls, memory that stays
flat, and a session closed while another thread is inside a call."""

from __future__ import annotations

import resource
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from gpu_executor import require_test_executor

import trtfast
from trtfast import _core

pytestmark = pytest.mark.gpu

_testing = require_test_executor()

THREADS = 16
CALLS_PER_THREAD = 10_000


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def _device_used_bytes() -> int:
    free, total = _core.cuda.memory_info(0)
    return int(total - free)


def test_sixteen_threads_ten_thousand_calls_each(record_property: pytest.RecordProperty) -> None:
    engine = trtfast.Engine(_testing.affine(profiles=[(1, 16, 64)]))
    inputs = [
        np.random.default_rng(seed).standard_normal((1 + seed % 64, 4), dtype=np.float32)
        for seed in range(64)
    ]
    expected = [engine(x=x)["y"] for x in inputs]  # one thread: the reference answers

    def work(thread: int, calls: int) -> int:
        mismatches = 0
        for call in range(calls):
            index = (thread * 31 + call) % len(inputs)
            if not np.array_equal(engine(x=inputs[index])["y"], expected[index]):
                mismatches += 1
        return mismatches

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        assert sum(pool.map(work, range(THREADS), [200] * THREADS)) == 0  # warm-up
        resident_before, device_before = _resident_bytes(), _device_used_bytes()
        started = time.perf_counter()
        mismatches = sum(pool.map(work, range(THREADS), [CALLS_PER_THREAD] * THREADS))
        seconds = time.perf_counter() - started
        resident_after, device_after = _resident_bytes(), _device_used_bytes()

    assert mismatches == 0
    resident_growth = resident_after - resident_before
    device_growth = device_after - device_before
    for name, value in (
        ("calls", THREADS * CALLS_PER_THREAD),
        ("seconds", round(seconds, 2)),
        ("resident_growth_bytes", resident_growth),
        ("device_growth_bytes", device_growth),
    ):
        record_property(name, value)
    print(
        f"\n{THREADS}x{CALLS_PER_THREAD} calls in {seconds:.1f} s; resident memory "
        f"{resident_before / 2**20:.1f} -> {resident_after / 2**20:.1f} MiB, device memory used "
        f"{device_before / 2**20:.1f} -> {device_after / 2**20:.1f} MiB"
    )
    # Flat after warm-up: no per-call growth (160,000 calls; 4 MiB is far below one byte each).
    assert resident_growth < 4 * 2**20
    assert device_growth < 4 * 2**20


def test_closing_a_session_while_another_thread_is_inside_a_call() -> None:
    # A 300 ms kernel keeps the first thread inside its call while the session is closed.
    engine = trtfast.Engine(_testing.affine(profiles=[(1, 4, 8)], delay_us=300_000.0))
    session = engine.session(cuda_graph=False)
    x = np.ones((2, 4), np.float32)
    outcome: list[object] = []

    def call() -> None:
        try:
            outcome.append(session(x=x)["y"])
        except trtfast.TrtfastError as error:
            outcome.append(error)

    worker = threading.Thread(target=call)
    worker.start()
    time.sleep(0.05)
    # Closing under a running call is refused with a sentence, or fails that call cleanly:
    # never a crash, never a call left reading freed buffers.
    try:
        session.close()
        closed_during_call = True
    except trtfast.TrtfastError as error:
        assert "another thread" in str(error)
        closed_during_call = False
    worker.join(timeout=30)
    if not closed_during_call:
        session.close()
    assert not worker.is_alive()
    assert len(outcome) == 1
    if isinstance(outcome[0], np.ndarray):
        np.testing.assert_array_equal(outcome[0], x * np.float32(2.0) + np.float32(1.0))
    else:
        assert closed_during_call and "closed" in str(outcome[0])
    with pytest.raises(trtfast.TrtfastError, match="closed"):
        session(x=x)
