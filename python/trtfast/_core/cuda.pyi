"""
RAII wrappers over the CUDA runtime.
"""
from __future__ import annotations
import typing
__all__: list[str] = ['DeviceBuffer', 'Event', 'HostBuffer', 'PinnedBuffer', 'Stream', 'allocation_count', 'copy_async', 'device_count', 'devices', 'driver_version', 'memory_info', 'runtime_version', 'unavailable_reason']
class Stream:
    """
    An owned CUDA stream, non-blocking to the legacy stream.
    """
    def __init__(self, device: typing.SupportsInt | typing.SupportsIndex = 0) -> None:
        ...
    def synchronize(self) -> None:
        ...
    @property
    def device(self) -> int:
        ...
    @property
    def handle(self) -> int:
        ...
class Event:
    """
    A CUDA event; timing only when asked for.
    """
    def __init__(self, device: typing.SupportsInt | typing.SupportsIndex = 0, timing: bool = False, blocking: bool = False) -> None:
        ...
    def elapsed_ms_since(self, start: Event) -> float:
        ...
    def query(self) -> bool:
        """
        True once the recorded work is done.
        """
    def record(self, stream: Stream) -> None:
        ...
    def synchronize(self) -> None:
        ...
class DeviceBuffer:
    """
    Device memory from cudaMalloc.
    """
    def __init__(self, nbytes: typing.SupportsInt | typing.SupportsIndex, device: typing.SupportsInt | typing.SupportsIndex = 0) -> None:
        ...
    @property
    def device(self) -> int:
        ...
    @property
    def nbytes(self) -> int:
        ...
    @property
    def ptr(self) -> int:
        ...
class PinnedBuffer:
    """
    Page-locked host memory; a writable buffer.
    """
    def __init__(self, nbytes: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def nbytes(self) -> int:
        ...
    @property
    def ptr(self) -> int:
        ...
class HostBuffer:
    """
    Host memory for staging copies: pinned when the system grants it, else pageable (with a trtfast.PerformanceWarning); a writable buffer.
    """
    def __init__(self, nbytes: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def nbytes(self) -> int:
        ...
    @property
    def pinned(self) -> bool:
        ...
    @property
    def pinned_failure(self) -> str:
        """
        Why pinning failed, in CUDA's words; empty when pinned.
        """
    @property
    def ptr(self) -> int:
        ...
def allocation_count() -> int:
    """
    cudaMalloc and cudaHostAlloc calls trtfast has made in this process.
    """
def copy_async(dst: typing.SupportsInt | typing.SupportsIndex, src: typing.SupportsInt | typing.SupportsIndex, nbytes: typing.SupportsInt | typing.SupportsIndex, stream: Stream) -> None:
    """
    Asynchronous copy between any two addresses (direction inferred by CUDA).
    """
def device_count() -> int:
    """
    Usable CUDA devices; 0 without driver or device.
    """
def devices() -> list[dict[str, typing.Any]]:
    """
    Name, compute capability, memory, multiprocessors and UUID of each device.
    """
def driver_version() -> int:
    """
    CUDA version the installed driver supports; 0 without a driver.
    """
def memory_info(device: typing.SupportsInt | typing.SupportsIndex = 0) -> tuple[int, int]:
    """
    (free, total) bytes of the device's memory.
    """
def runtime_version() -> int:
    """
    CUDA runtime version linked into trtfast (1000 * major + 10 * minor).
    """
def unavailable_reason() -> str:
    """
    Why no device is usable, in CUDA's words; empty when devices exist.
    """
