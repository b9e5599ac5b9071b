"""Host staging memory: pinned where the system grants it, else pageable with a warning; a
failure of both names the bytes asked for."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from typing import Any

import numpy as np
import pytest

import trtfast
from trtfast import _core

cuda = _core.cuda

# Run where pinning must fail: no GPU visible to CUDA (the same on a GPU machine and without a
# driver), so that the fallback path runs for real.
PAGEABLE_FALLBACK = textwrap.dedent(
    """
    import warnings
    import numpy as np
    import trtfast
    from trtfast import _core

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        buffer = _core.cuda.HostBuffer(3 << 20)
    assert not buffer.pinned and buffer.nbytes == 3 << 20
    assert buffer.pinned_failure.startswith("cudaHostAlloc of 3145728 pinned bytes failed")
    assert buffer.ptr % 4096 == 0
    (warning,) = caught
    assert warning.category is trtfast.PerformanceWarning
    print(warning.message)
    view = np.frombuffer(buffer, dtype=np.uint8)
    view[:] = 7
    assert int(view.sum()) == 7 * (3 << 20) and not view.flags.owndata

    warnings.simplefilter("error")  # a caller that turns the warning into an error gets it raised
    try:
        _core.cuda.HostBuffer(64)
    except trtfast.PerformanceWarning:
        pass
    else:
        raise AssertionError("the warning was not raised as an error")
    """
)


def run_without_gpu(script: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result


def test_pinning_failure_falls_back_to_pageable_memory_with_a_warning() -> None:
    result = run_without_gpu(PAGEABLE_FALLBACK)
    warning = "pinned host memory is unavailable (cudaHostAlloc of 3145728 pinned bytes failed"
    assert warning in result.stdout
    assert "using 3145728 bytes of pageable memory instead" in result.stdout


def test_when_no_host_memory_is_left_the_error_names_the_bytes() -> None:
    too_much = 1 << 62
    with pytest.raises(trtfast.CudaError, match=f"cannot allocate {too_much} bytes of host memory"):
        cuda.HostBuffer(too_much)


def test_an_empty_buffer_needs_no_memory() -> None:
    buffer = cuda.HostBuffer(0)
    assert buffer.nbytes == 0 and buffer.ptr == 0 and buffer.pinned
    assert np.frombuffer(buffer, dtype=np.uint8).size == 0


@pytest.mark.gpu
def test_on_a_gpu_host_memory_is_pinned_without_a_warning() -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        buffer = cuda.HostBuffer(1 << 20)
    assert buffer.pinned and buffer.pinned_failure == ""
    data = np.arange(1 << 18, dtype=np.float32)
    np.frombuffer(buffer, dtype=np.float32)[:] = data
    device = cuda.DeviceBuffer(data.nbytes)
    back = cuda.HostBuffer(data.nbytes)
    stream = cuda.Stream()
    cuda.copy_async(device.ptr, buffer.ptr, data.nbytes, stream)
    cuda.copy_async(back.ptr, device.ptr, data.nbytes, stream)
    stream.synchronize()
    np.testing.assert_array_equal(np.frombuffer(back, dtype=np.float32), data)


def test_performance_warning_is_a_trtfast_warning() -> None:
    assert issubclass(trtfast.PerformanceWarning, trtfast.TrtfastWarning)
    assert issubclass(trtfast.CacheWarning, trtfast.TrtfastWarning)
    assert issubclass(trtfast.TrtfastWarning, UserWarning)


# --- trtfast.empty and host-copy settings ---------------------------------------------------------

EMPTY_WITHOUT_GPU = textwrap.dedent(
    """
    import warnings
    import numpy as np
    import trtfast
    from trtfast import _core

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        array = trtfast.empty((3, 5), np.int16)
    assert array.shape == (3, 5) and array.dtype == np.int16 and array.flags.c_contiguous
    assert not _core.is_pinned_host(array)
    (warning,) = caught
    assert warning.category is trtfast.PerformanceWarning, warning
    print(warning.message)
    assert _core.pinned_pool_stats()["refusals"] == 1
    """
)


def test_empty_without_pinnable_memory_returns_an_ordinary_array_and_says_why() -> None:
    result = run_without_gpu(EMPTY_WITHOUT_GPU)
    assert "trtfast.empty: returning pageable memory" in result.stdout
    assert "cudaHostAlloc of 4096 bytes failed" in result.stdout


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((2, -1), "negative dimension -1"),
        ((1,) * 9, "at most 8 dimensions"),
        ((2**40, 2**40), "overflows"),
    ],
)
def test_empty_refuses_shapes_no_array_can_have(shape: tuple[int, ...], message: str) -> None:
    with pytest.raises(trtfast.InputError, match=message):
        trtfast.empty(shape)


def test_empty_takes_an_int_and_any_numpy_dtype_spelling() -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", trtfast.PerformanceWarning)
        assert trtfast.empty(4).shape == (4,)
        assert trtfast.empty(np.int64(5)).shape == (5,)
        assert trtfast.empty((2, np.int32(2)), "float16").dtype == np.float16
        assert trtfast.empty((0, 3)).size == 0


@pytest.mark.parametrize("dtype", [object, [("name", object), ("value", "f4")]])
def test_empty_refuses_dtypes_that_hold_python_objects(dtype: Any) -> None:
    # Pooled memory is reused uncleared: object references in it would point anywhere.
    with pytest.raises(trtfast.InputError, match="holds Python objects"):
        trtfast.empty(3, dtype)


def test_host_copy_settings_refuse_what_cannot_work() -> None:
    saved = _core.host_copy_tuning()
    try:
        with pytest.raises(TypeError, match="unexpected setting 'thread'"):
            _core.set_host_copy_tuning(thread=2)
        with pytest.raises(trtfast.TrtfastError, match="at least one thread"):
            _core.set_host_copy_tuning(threads=0)
        _core.set_host_copy_tuning(threads=2, chunk_bytes=1 << 20)
        assert _core.host_copy_tuning()["threads"] == 2
    finally:
        _core.set_host_copy_tuning(**saved)
    assert _core.host_copy_tuning() == saved


@pytest.mark.parametrize("streaming_min_bytes", [0, 1 << 62], ids=["streaming", "memcpy"])
@pytest.mark.parametrize("threads", [1, 3, 8])
@pytest.mark.parametrize("nbytes", [0, 1, 63, 64, 65, 4096, 32771, (1 << 20) + 13, 9_000_001])
def test_host_copies_keep_every_byte_whatever_the_threads_and_stores(
    threads: int, nbytes: int, streaming_min_bytes: int
) -> None:
    saved = _core.host_copy_tuning()
    try:
        _core.set_host_copy_tuning(
            threads=threads, parallel_min_bytes=64, streaming_min_bytes=streaming_min_bytes
        )
        rng = np.random.default_rng(nbytes)
        # Streaming stores write whole aligned cache lines: destinations at four offsets within
        # a line, a source at another, and a line of guard bytes either side.
        for residue in (0, 1, 17, 63):
            source = rng.integers(0, 256, nbytes + 7, dtype=np.uint8)[7:]
            padded = np.full(nbytes + 192, 0xA5, dtype=np.uint8)
            offset = 64 + (residue - padded.ctypes.data) % 64
            destination = padded[offset : offset + nbytes]
            _core.host_copy(destination, source)
            np.testing.assert_array_equal(destination, source)
            assert (padded[:offset] == 0xA5).all() and (padded[offset + nbytes :] == 0xA5).all()
    finally:
        _core.set_host_copy_tuning(**saved)


def test_host_copies_from_many_threads_at_once_stay_apart() -> None:
    from concurrent.futures import ThreadPoolExecutor

    saved = _core.host_copy_tuning()
    try:
        _core.set_host_copy_tuning(threads=4, parallel_min_bytes=1024)
        sources = [np.full(3_000_017, k, dtype=np.uint8) for k in range(8)]
        destinations = [np.zeros_like(s) for s in sources]

        def copy(k: int) -> None:
            for _ in range(20):
                _core.host_copy(destinations[k], sources[k])
                assert (destinations[k] == k).all()
                destinations[k][:] = 255

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(copy, range(8)))
    finally:
        _core.set_host_copy_tuning(**saved)


def test_host_copy_refuses_arrays_of_different_sizes() -> None:
    with pytest.raises(trtfast.InputError, match=r"same size in bytes.*received 8 and 4 bytes"):
        _core.host_copy(np.zeros(2, np.float32), np.zeros(1, np.float32))
