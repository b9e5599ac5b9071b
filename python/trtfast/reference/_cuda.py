"""The CUDA runtime through cuda-python (``cuda.bindings``): device checks, a stream, and
buffers of pinned host memory paired with device memory. Every call's status is checked."""

from __future__ import annotations

import contextlib
import ctypes
import importlib
from types import ModuleType
from typing import Any

import numpy as np

from ..errors import CudaError

INSTALL = "pip install 'trtfast[reference]' (cuda-python's cuda-bindings)"


def runtime() -> ModuleType:
    """``cuda.bindings.runtime``; ImportError saying what to install when it is missing."""
    try:
        return importlib.import_module("cuda.bindings.runtime")
    except ImportError as error:
        raise ImportError(
            f"trtfast's reference runtime needs cuda-python ({error}): {INSTALL}"
        ) from error


def check(cudart: ModuleType, result: tuple[Any, ...], call: str) -> Any:
    """The value of a cuda-python call (None, one value or a tuple); CudaError on failure."""
    status, *values = result
    if int(status) != 0:
        error = CudaError(f"{call} failed: {_describe(cudart, status)}")
        error.code = int(status)
        raise error
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def _describe(cudart: ModuleType, status: Any) -> str:
    """As trtfast's C++ core words a CUDA error: name (code): message."""
    name = _text(cudart.cudaGetErrorName(status)[1])
    return f"{name} ({int(status)}): {_text(cudart.cudaGetErrorString(status)[1])}"


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def device_count(cudart: ModuleType) -> tuple[int, str]:
    """(usable devices, why none are usable or "")."""
    status, count = cudart.cudaGetDeviceCount()
    if int(status) != 0:
        return 0, _describe(cudart, status)
    return int(count), ""


def device_properties(cudart: ModuleType, device: int) -> tuple[str, tuple[int, int]]:
    """The name and compute capability of ``device``."""
    properties = check(cudart, cudart.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
    name = properties.name
    name = name.split(b"\0", 1)[0].decode(errors="replace") if isinstance(name, bytes) else name
    return str(name), (int(properties.major), int(properties.minor))


@contextlib.contextmanager
def on_device(cudart: ModuleType, device: int) -> Any:
    """Makes ``device`` current for the calling thread, and the previous one again after."""
    previous = check(cudart, cudart.cudaGetDevice(), "cudaGetDevice")
    check(cudart, cudart.cudaSetDevice(device), f"cudaSetDevice({device})")
    try:
        yield
    finally:
        cudart.cudaSetDevice(previous)


class Stream:
    """An owned stream that does not synchronize with the legacy default stream."""

    def __init__(self, cudart: ModuleType) -> None:
        self.cudart = cudart
        self.stream = check(
            cudart,
            cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking),
            "cudaStreamCreateWithFlags",
        )
        self.handle = int(self.stream)

    def synchronize(self) -> None:
        check(self.cudart, self.cudart.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")

    def close(self) -> None:
        if self.stream is not None:
            self.cudart.cudaStreamDestroy(self.stream)
            self.stream = None

    def __del__(self) -> None:
        # Best effort: at interpreter exit CUDA may be gone already.
        with contextlib.suppress(Exception):
            self.close()


class StagedBuffer:
    """Device memory for one tensor and its pinned host staging area; grows on demand.

    At least one byte is held, so even an empty tensor has an address to give TensorRT.
    """

    def __init__(self, cudart: ModuleType) -> None:
        self.cudart = cudart
        self.capacity = 0
        self.device = 0
        self.host = 0

    def reserve(self, nbytes: int) -> None:
        if nbytes <= self.capacity and self.capacity:
            return
        self.close()
        size = max(nbytes, 1)
        self.device = int(check(self.cudart, self.cudart.cudaMalloc(size), "cudaMalloc"))
        self.host = int(check(self.cudart, self.cudart.cudaMallocHost(size), "cudaMallocHost"))
        self.capacity = size

    def host_array(self, dtype: np.dtype[Any], shape: tuple[int, ...]) -> np.ndarray[Any, Any]:
        """The pinned staging area seen as an array of ``dtype`` and ``shape``."""
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        raw = (ctypes.c_ubyte * max(nbytes, 1)).from_address(self.host)
        flat = np.frombuffer(memoryview(raw).cast("B"), dtype=np.uint8, count=nbytes)
        return flat.view(dtype).reshape(shape)

    def to_device(self, nbytes: int, stream: Stream) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        call = self.cudart.cudaMemcpyAsync(self.device, self.host, nbytes, kind, stream.stream)
        check(self.cudart, call, "cudaMemcpyAsync (host to device)")

    def to_host(self, nbytes: int, stream: Stream) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        call = self.cudart.cudaMemcpyAsync(self.host, self.device, nbytes, kind, stream.stream)
        check(self.cudart, call, "cudaMemcpyAsync (device to host)")

    def close(self) -> None:
        if self.device:
            self.cudart.cudaFree(self.device)
        if self.host:
            self.cudart.cudaFreeHost(self.host)
        self.device = self.host = self.capacity = 0

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()
