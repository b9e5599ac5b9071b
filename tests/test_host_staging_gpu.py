"""Host arrays on a GPU: page-locked arrays copied by DMA without staging (trtfast.empty, torch's
pin_memory, cupy's pinned arrays), large results in pooled page-locked arrays, and pageable arrays
staged in chunks by several threads. Every size and setting gives the same bytes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from gpu_executor import require_test_executor

import trtfast
from trtfast import _core

pytestmark = pytest.mark.gpu

_testing = require_test_executor()

FEATURES = 1024  # 4 KB a row


def affine(x: np.ndarray) -> np.ndarray:
    return x * np.float32(2) + np.float32(1)


def rows(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, FEATURES), dtype=np.float32)


@pytest.fixture(scope="module")
def engine() -> trtfast.Engine:
    return trtfast.Engine(_testing.affine(features=FEATURES, profiles=[(1, 1, 16384)]))


@pytest.fixture
def tuning() -> Iterator[Any]:
    """Sets host-copy settings for one test and restores them after."""
    saved = _core.host_copy_tuning()
    yield _core.set_host_copy_tuning
    _core.set_host_copy_tuning(**saved)


def pooled(array: np.ndarray) -> bool:
    """True for an array over a block of trtfast's page-locked pool."""
    return '"trtfast.PinnedBlock"' in repr(array.base)


def staged(session: Any) -> tuple[int, int]:
    stats = session.stats
    return stats["staged_bytes"], stats["direct_bytes"]


def test_empty_gives_pinned_memory_that_returns_to_the_pool() -> None:
    _core.trim_pinned_pool()
    live = _core.pinned_pool_stats()["live_bytes"]
    first = trtfast.empty((256, FEATURES))
    assert _core.is_pinned_host(first) and pooled(first)
    address = first.ctypes.data
    view = first[10:20]
    del first
    assert _core.pinned_pool_stats()["live_bytes"] - live == 256 * FEATURES * 4  # the view's
    assert _core.is_pinned_host(view[1:])  # a view of a view is known by its pool too
    del view
    assert _core.pinned_pool_stats()["live_bytes"] == live
    hits = _core.pinned_pool_stats()["hits"]
    again = trtfast.empty((256, FEATURES))
    assert again.ctypes.data == address and _core.pinned_pool_stats()["hits"] == hits + 1


def test_trim_unpins_idle_blocks_before_it_returns() -> None:
    # A block given back goes to a background thread to be freed; trim waits for it, and for
    # every idle block, so the memory is the machine's again when it returns.
    import ctypes

    _core.trim_pinned_pool()
    block = trtfast.empty((64, FEATURES))
    address = block.ctypes.data
    del block  # idle in the pool
    assert _core.pinned_pool_stats()["idle_bytes"] >= 64 * FEATURES * 4
    _core.trim_pinned_pool()
    assert _core.pinned_pool_stats()["idle_bytes"] == 0
    # Asks CUDA about the address without touching the memory behind it.
    probe = np.frombuffer((ctypes.c_char * 4096).from_address(address), dtype=np.uint8)
    assert not _core.is_pinned_host(probe)


def test_pinned_input_and_out_go_by_dma_without_staging(engine: trtfast.Engine) -> None:
    x = trtfast.empty((64, FEATURES))
    x[...] = rows(64)
    y = trtfast.empty((64, FEATURES))
    with engine.session() as session:
        before = staged(session)
        for _ in range(3):  # graphs: captured once, then replayed
            y[...] = 0
            session(x=x, out={"y": y})
            np.testing.assert_array_equal(y, affine(x))
        staged_bytes, direct = staged(session)
        assert staged_bytes == before[0]
        assert direct - before[1] == 3 * 2 * x.nbytes


def test_small_pinned_arrays_from_the_pool_skip_staging_too(engine: trtfast.Engine) -> None:
    x = trtfast.empty((2, FEATURES))  # 8 KB: known by its pool, no lookup
    x[...] = rows(2)
    with engine.session() as session:
        result = session(x=x)["y"]
        np.testing.assert_array_equal(result, affine(x))
        assert session.stats["direct_bytes"] == x.nbytes


def test_torch_and_cupy_pinned_host_memory_is_used_in_place(engine: trtfast.Engine) -> None:
    torch = pytest.importorskip("torch")
    cupyx = pytest.importorskip("cupyx")
    data = rows(32, seed=1)
    pinned_torch = torch.from_numpy(data).pin_memory()
    pinned_cupy = cupyx.empty_pinned(data.shape, np.float32)
    pinned_cupy[...] = data
    with engine.session(torch_results=False) as session:
        for x in (pinned_torch, pinned_cupy):
            staged_before, direct_before = staged(session)
            result = session(x=x)["y"]
            np.testing.assert_array_equal(result, affine(data))
            staged_bytes, direct = staged(session)
            # In by DMA from the caller's memory, out by DMA into a pooled array.
            assert staged_bytes == staged_before
            assert direct - direct_before == 2 * data.nbytes


def test_large_results_come_back_in_pooled_pinned_arrays_that_later_calls_leave_alone(
    engine: trtfast.Engine,
) -> None:
    a, b = rows(64, seed=2), rows(64, seed=3)
    with engine.session() as session:
        first = session(x=a)["y"]
        assert pooled(first) and _core.is_pinned_host(first)
        second = session(x=b)["y"]
        assert second.ctypes.data != first.ctypes.data
        np.testing.assert_array_equal(first, affine(a))
        np.testing.assert_array_equal(second, affine(b))
        address = first.ctypes.data
        del first
        third = session(x=a)["y"]  # the freed block comes back
        assert third.ctypes.data == address
        np.testing.assert_array_equal(third, affine(a))
        small = session(x=rows(4))["y"]  # 16 KB: an ordinary array
        assert not pooled(small) and not _core.is_pinned_host(small)


@pytest.mark.parametrize("threads", [1, 3, 4])
@pytest.mark.parametrize("n", [1, 3, 257, 1000, 4096, 16384])
def test_chunked_parallel_staging_keeps_every_byte(
    engine: trtfast.Engine, tuning: Any, threads: int, n: int
) -> None:
    # Chunks and slices that fall mid-row and leave a short last chunk, all written with
    # streaming stores, from a source 4 bytes past a cache line.
    tuning(
        threads=threads,
        parallel_min_bytes=4096,
        chunk_bytes=40_000,
        pipeline_min_bytes=8192,
        pooled_outputs=False,
        streaming_min_bytes=0,
    )
    backing = np.empty(n * FEATURES + 16, np.float32)
    start = (1 - backing.ctypes.data // 4) % 16
    x = backing[start : start + n * FEATURES].reshape(n, FEATURES)
    assert x.ctypes.data % 64 == 4
    x[...] = rows(n, seed=n)
    out = np.full_like(x, np.nan)
    with engine.session() as session:
        np.testing.assert_array_equal(session(x=x)["y"], affine(x))
        session(x=x, out={"y": out})
        np.testing.assert_array_equal(out, affine(x))
        assert session.stats["staged_bytes"] == 4 * x.nbytes


@pytest.mark.parametrize("kib", [8, 64, 256, 1024, 4096, 16384, 65536])
def test_every_size_from_8_kb_to_64_mb_round_trips(engine: trtfast.Engine, kib: int) -> None:
    x = rows(kib // 4, seed=kib)
    pinned_x, pinned_y = trtfast.empty(x.shape), trtfast.empty(x.shape)
    pinned_x[...] = x
    out = np.empty_like(x)
    with engine.session() as session:
        np.testing.assert_array_equal(session(x=x)["y"], affine(x))
        session(x=x, out={"y": out})
        np.testing.assert_array_equal(out, affine(x))
        session(x=pinned_x, out={"y": pinned_y})
        np.testing.assert_array_equal(pinned_y, affine(x))


def test_alternating_pinned_and_pageable_arrays_with_graphs(engine: trtfast.Engine) -> None:
    pageable = rows(128, seed=5)
    pinned = trtfast.empty(pageable.shape)
    pinned[...] = rows(128, seed=6)
    with engine.session(cuda_graph=True) as session:
        for _ in range(4):
            for x in (pageable, pinned):
                np.testing.assert_array_equal(session(x=x)["y"], affine(x))
        assert session.stats["graph_launches"] > 0


def test_awaited_calls_read_pinned_inputs_in_place(engine: trtfast.Engine) -> None:
    x = trtfast.empty((512, FEATURES))
    x[...] = rows(512, seed=7)
    with engine.session() as session:
        result = asyncio.run(session.run_async(x=x))
        np.testing.assert_array_equal(result["y"], affine(x))
        assert staged(session) == (0, 2 * x.nbytes)
