"""Host staging memory: pinned where the system grants it, else pageable with a warning; a
failure of both names the bytes asked for."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

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


def test_pinning_failure_falls_back_to_pageable_memory_with_a_warning() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PAGEABLE_FALLBACK],
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
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
