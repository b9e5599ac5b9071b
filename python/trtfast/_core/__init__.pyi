"""
trtfast's C++ core. Use the trtfast package, not this module.
"""
from __future__ import annotations
import collections.abc
import typing
from . import cuda
__all__: list[str] = ['DeserializedEngine', 'Runtime', 'TensorRTLibrary', 'build_info', 'compiled_tensorrt_major', 'cuda', 'find_tensorrt_library', 'open_tensorrt_library', 'set_tensorrt_log_sink', 'tensorrt_adapter_available']
class TensorRTLibrary:
    """
    A loaded TensorRT library: where it is, its version and kind.
    """
    def __repr__(self) -> str:
        ...
    @property
    def kind(self) -> str:
        """
        'full' (builds and runs engines) or 'lean' (runs them only).
        """
    @property
    def origin(self) -> str:
        """
        Where the search found it.
        """
    @property
    def path(self) -> str:
        ...
    @property
    def version(self) -> str:
        """
        major.minor.patch, as the library reports it.
        """
class DeserializedEngine:
    """
    A TensorRT engine deserialized from a plan.
    """
    @property
    def num_io_tensors(self) -> int:
        ...
class Runtime:
    """
    A TensorRT runtime bound to one device.
    """
    def __init__(self, library: TensorRTLibrary, device: typing.SupportsInt | typing.SupportsIndex = 0) -> None:
        ...
    def deserialize(self, plan: bytes) -> DeserializedEngine:
        ...
    @property
    def device(self) -> int:
        ...
def build_info() -> dict[str, typing.Any]:
    """
    What this build of trtfast was compiled with.
    """
def compiled_tensorrt_major() -> int:
    ...
def find_tensorrt_library(package_folders: collections.abc.Sequence[tuple[str, str, str]]) -> TensorRTLibrary:
    """
    Search TRTFAST_TENSORRT_LIBRARY, then (package, folder, kind) triples (folder '' when the package is not installed), then the system loader path.
    """
def open_tensorrt_library(path: str, origin: str = 'explicit path') -> TensorRTLibrary:
    ...
def set_tensorrt_log_sink(sink: collections.abc.Callable[[int, str], None]) -> None:
    """
    sink(severity: int, message: str), severity 0 (internal error)..4.
    """
def tensorrt_adapter_available() -> bool:
    """
    True when this build can create TensorRT objects.
    """
