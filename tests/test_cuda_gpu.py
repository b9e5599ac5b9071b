"""The cuda layer's RAII wrappers on a real GPU."""

from __future__ import annotations

import re

import numpy as np
import pytest

import trtfast
from trtfast import _core

cuda = _core.cuda

pytestmark = pytest.mark.gpu


def test_devices_report_properties() -> None:
    devices = cuda.devices()
    assert len(devices) == cuda.device_count() > 0
    for device in devices:
        assert device["name"] and device["total_memory"] > 0
        assert device["compute_capability"][0] >= 5
        assert device["multiprocessors"] > 0
        # As nvidia-smi -L writes it.
        assert re.fullmatch(r"GPU-[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", device["uuid"])
    assert len({device["uuid"] for device in devices}) == len(devices)
    assert cuda.driver_version() >= 1000


def test_allocation_and_sizes() -> None:
    buffer = cuda.DeviceBuffer(1 << 20)
    assert buffer.ptr != 0 and buffer.nbytes == 1 << 20 and buffer.device == 0
    empty = cuda.DeviceBuffer(0)
    assert empty.ptr == 0 and empty.nbytes == 0


def test_pinned_copy_round_trip() -> None:
    data = np.random.default_rng(0).standard_normal(1 << 16).astype(np.float32)
    source = cuda.PinnedBuffer(data.nbytes)
    target = cuda.PinnedBuffer(data.nbytes)
    np.frombuffer(source, dtype=np.float32)[:] = data
    device = cuda.DeviceBuffer(data.nbytes)
    stream = cuda.Stream()
    cuda.copy_async(device.ptr, source.ptr, data.nbytes, stream)
    cuda.copy_async(target.ptr, device.ptr, data.nbytes, stream)
    stream.synchronize()
    np.testing.assert_array_equal(np.frombuffer(target, dtype=np.float32), data)


def test_stream_event_ordering() -> None:
    nbytes = 64 << 20
    stream = cuda.Stream()
    start = cuda.Event(timing=True)
    done = cuda.Event(timing=True)
    source = cuda.PinnedBuffer(nbytes)
    device = cuda.DeviceBuffer(nbytes)
    start.record(stream)
    cuda.copy_async(device.ptr, source.ptr, nbytes, stream)
    done.record(stream)
    done.synchronize()
    assert done.query()
    # A 64 MiB copy over PCIe takes measurable time, and events are ordered on the stream.
    assert done.elapsed_ms_since(start) > 0.0


def test_blocking_event_synchronizes() -> None:
    stream = cuda.Stream()
    event = cuda.Event(blocking=True)
    event.record(stream)
    event.synchronize()
    assert event.query()


def test_invalid_device_raises_cuda_error() -> None:
    count = cuda.device_count()
    with pytest.raises(trtfast.CudaError, match=f"device {count} does not exist"):
        cuda.DeviceBuffer(16, device=count)


def test_out_of_memory_names_the_bytes() -> None:
    too_much = cuda.devices()[0]["total_memory"] * 4
    with pytest.raises(trtfast.CudaError, match=f"cudaMalloc of {too_much} bytes"):
        cuda.DeviceBuffer(too_much)
    cuda.DeviceBuffer(1024)  # the failure left no sticky error behind


def test_core_errors_after_tensorrt_is_loaded() -> None:
    # Loading libnvinfer_lean once broke number formatting inside the core; errors must still
    # come out as exceptions with their numbers.
    try:
        trtfast.tensorrt_library()
    except trtfast.TensorRTUnavailableError as error:
        pytest.skip(f"no TensorRT library: {str(error).splitlines()[0]}")
    count = cuda.device_count()
    with pytest.raises(trtfast.CudaError, match=f"device {count + 7} does not exist"):
        cuda.DeviceBuffer(16, device=count + 7)
    with pytest.raises(TypeError):
        cuda.DeviceBuffer("sixteen")  # type: ignore[arg-type]
