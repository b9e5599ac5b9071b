"""Awaitable calls and the batcher on a GPU, with trtfast._testing's engines of plain CUDA
kernels: results, errors, cancellation, many concurrent tasks and clients."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from gpu_executor import require_test_executor

import trtfast

pytestmark = pytest.mark.gpu

_testing = require_test_executor()


def affine(x: np.ndarray) -> np.ndarray:
    return x * np.float32(2.0) + np.float32(1.0)


def random_x(batch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 4), dtype=np.float32)


def make_engine(**options: Any) -> trtfast.Engine:
    return trtfast.Engine(_testing.affine(profiles=[(1, 8, 64)], **options))


# --- run_async -----------------------------------------------------------------------------------


def test_run_async_returns_what_a_call_returns() -> None:
    engine = make_engine()
    x = random_x(5)

    async def main() -> None:
        with engine.session() as session:
            for result in (
                await session.run_async(x=x),
                await session.run_async({"x": x}),
                await engine.run_async(x=x),
            ):
                assert set(result) == {"y"}
                np.testing.assert_array_equal(result["y"], affine(x))
                np.testing.assert_array_equal(result["y"], session(x=x)["y"])
            out = np.empty((5, 4), np.float32)
            result = await session.run_async(x=x, out={"y": out})
            assert result["y"] is out
            np.testing.assert_array_equal(out, affine(x))
            session.bind({"x": x})
            bound = await session.run_async()
            np.testing.assert_array_equal(bound["y"], affine(x))

    asyncio.run(main())


@pytest.mark.parametrize("sync", ["spin", "blocking"])
def test_a_spinning_await_polls_between_other_tasks_and_stops_polling_after(sync: str) -> None:
    from trtfast import _awaitable

    engine = trtfast.Engine(_testing.affine(profiles=[(1, 8, 64)], delay_us=20_000.0))
    x = random_x(2)

    async def main() -> None:
        seen_polling: list[bool] = []
        finished = False

        async def other_task() -> None:
            while not finished:
                seen_polling.append(_awaitable.completions().polling)
                await asyncio.sleep(0)

        with engine.session(sync=sync) as session:  # type: ignore[arg-type]
            ticker = asyncio.ensure_future(other_task())
            result = await session.run_async(x=x)
            finished = True
            await ticker
            np.testing.assert_array_equal(result["y"], affine(x))
        # The loop served the other task all through the 20 ms call, polling only for "spin",
        # and only at first: then the descriptor woke it.
        assert len(seen_polling) > 100
        polled = sum(seen_polling)
        if sync == "spin":
            assert seen_polling[0] and 0 < polled < len(seen_polling)
            assert not any(seen_polling[polled:]), "polling started again during the call"
        else:
            assert polled == 0
        calls = _awaitable.completions()
        await asyncio.sleep(0)
        assert not calls.polling and calls.spinning == 0

    asyncio.run(main())


def test_run_async_device_in_device_out() -> None:
    cupy = pytest.importorskip("cupy")
    engine = make_engine()
    x = random_x(3)

    async def main() -> None:
        result = await engine.run_async(x=cupy.asarray(x))
        np.testing.assert_array_equal(cupy.asnumpy(cupy.from_dlpack(result["y"])), affine(x))

    asyncio.run(main())


def test_errors_raise_in_the_awaiting_task() -> None:
    core = _testing.affine(profiles=[(1, 8, 64)])
    engine = trtfast.Engine(core)

    async def main() -> None:
        with pytest.raises(trtfast.InputError, match="x"):
            await engine.run_async(x=np.zeros((2, 5), np.float32))
        with engine.session() as session:
            core.fail_enqueue = True
            with pytest.raises(trtfast.TrtfastError) as failed:
                await session.run_async(x=random_x(2))
            with pytest.raises(type(failed.value)):
                session(x=random_x(2))  # the same error as a plain call
            core.fail_enqueue = False
            np.testing.assert_array_equal(
                (await session.run_async(x=random_x(2)))["y"], affine(random_x(2))
            )

    asyncio.run(main())


def test_the_loop_runs_on_while_a_call_waits_for_the_gpu() -> None:
    engine = make_engine(delay_us=200_000.0)
    ticks = 0

    async def ticker(until: asyncio.Future[Any]) -> None:
        nonlocal ticks
        while not until.done():
            ticks += 1
            await asyncio.sleep(0.005)

    async def main() -> None:
        call = asyncio.ensure_future(engine.run_async(x=random_x(2)))
        await ticker(call)
        np.testing.assert_array_equal((await call)["y"], affine(random_x(2)))

    asyncio.run(main())
    assert ticks >= 10  # a blocked loop would tick once


def test_cancelling_leaves_the_gpu_work_to_finish_and_the_session_usable() -> None:
    cupy = pytest.importorskip("cupy")
    engine = make_engine(delay_us=200_000.0)

    async def main() -> None:
        with engine.session() as session:
            x = cupy.asarray(random_x(4, seed=1))
            call = asyncio.ensure_future(session.run_async(x=x))
            await asyncio.sleep(0.02)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            del x  # the session holds the input until the work ends
            cupy.get_default_memory_pool().free_all_blocks()
            started = time.monotonic()
            again = await session.run_async(x=random_x(4, seed=2))
            # The next call waited for the cancelled one's work (about 0.2 s in all).
            assert time.monotonic() - started > 0.1
            np.testing.assert_array_equal(again["y"], affine(random_x(4, seed=2)))
        # Engine calls: the cancelled call's session returns to the pool once its work ends.
        call = asyncio.ensure_future(engine.run_async(x=random_x(1)))
        await asyncio.sleep(0.02)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        results = await asyncio.gather(*(engine.run_async(x=random_x(2, i)) for i in range(4)))
        for i, result in enumerate(results):
            np.testing.assert_array_equal(result["y"], affine(random_x(2, i)))

    asyncio.run(main())


def test_many_tasks_await_one_engine_and_one_session() -> None:
    engine = make_engine(delay_us=100.0)

    async def main() -> None:
        results = await asyncio.gather(
            *(engine.run_async(x=random_x(1 + i % 8, seed=i)) for i in range(256))
        )
        for i, result in enumerate(results):
            np.testing.assert_array_equal(result["y"], affine(random_x(1 + i % 8, seed=i)))
        with engine.session() as session:
            results = await asyncio.gather(
                *(session.run_async(x=random_x(2, seed=i)) for i in range(64))
            )
            for i, result in enumerate(results):
                np.testing.assert_array_equal(result["y"], affine(random_x(2, seed=i)))

    asyncio.run(main())


# --- Batcher on real sessions --------------------------------------------------------------------


def test_batcher_mixed_rows_and_padding() -> None:
    engine = make_engine(delay_us=200.0)
    requests = [random_x(1 + i % 5, seed=i) for i in range(200)]
    with trtfast.Batcher(engine, max_delay_us=2000, batch_sizes=(1, 2, 4, 8, 16, 32, 64)) as b:
        with ThreadPoolExecutor(64) as pool:
            results = list(pool.map(lambda x: b(x=x)["y"], requests))
        metrics = b.metrics()
    for x, y in zip(requests, results, strict=True):
        assert y.shape == x.shape
        np.testing.assert_array_equal(y, affine(x))
    assert metrics["rows"] == sum(len(x) for x in requests)
    assert metrics["batches"] < len(requests)


def test_batcher_device_arrays_come_back_on_the_device() -> None:
    cupy = pytest.importorskip("cupy")
    engine = make_engine()
    with trtfast.Batcher(engine, max_delay_us=2000) as batcher:
        with ThreadPoolExecutor(16) as pool:
            results = list(
                pool.map(lambda i: batcher(x=cupy.asarray(random_x(2, seed=i)))["y"], range(16))
            )
    for i, y in enumerate(results):
        assert isinstance(y, cupy.ndarray)
        np.testing.assert_array_equal(cupy.asnumpy(y), affine(random_x(2, seed=i)))


def test_batcher_overload_and_timeouts() -> None:
    engine = make_engine(delay_us=300_000.0)
    with trtfast.Batcher(engine, max_batch=1, max_delay_us=0, max_queue=2, workers=1) as batcher:
        with ThreadPoolExecutor(3) as pool:
            running = pool.submit(batcher, x=random_x(1))
            time.sleep(0.05)
            queued = [pool.submit(batcher, x=random_x(1, seed=i)) for i in (1, 2)]
            time.sleep(0.05)
            with pytest.raises(trtfast.OverloadedError):
                batcher(x=random_x(1, seed=3))
            for future in (running, *queued):
                future.result()
        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(batcher, x=random_x(1))
            time.sleep(0.05)
            with pytest.raises(TimeoutError):
                batcher(x=random_x(1), timeout=0.05)
            running.result()
        assert batcher.metrics()["timed_out"] == 1


@pytest.mark.parametrize("mode", ["threads", "asyncio"])
def test_batcher_answers_256_concurrent_clients_once_each(mode: str) -> None:
    engine = make_engine(delay_us=50.0)
    answered: list[int] = []
    with trtfast.Batcher(engine, max_delay_us=1000, max_queue=1024) as batcher:
        if mode == "threads":

            def client(i: int) -> None:
                for k in range(4):
                    y = batcher(x=np.full((1, 4), i * 4 + k, np.float32))["y"]
                    answered.append(int(y[0, 0] - 1) // 2)

            with ThreadPoolExecutor(256) as pool:
                list(pool.map(client, range(256)))
        else:

            async def client_async(i: int) -> None:
                for k in range(4):
                    y = (await batcher.run_async(x=np.full((1, 4), i * 4 + k, np.float32)))["y"]
                    answered.append(int(y[0, 0] - 1) // 2)

            async def main() -> None:
                await asyncio.gather(*(client_async(i) for i in range(256)))

            asyncio.run(main())
        metrics = batcher.metrics()
    assert sorted(answered) == list(range(1024))
    assert metrics["requests"] == 1024 and metrics["rows"] == 1024
