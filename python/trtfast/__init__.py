"""trtfast: build NVIDIA TensorRT engines from ONNX and run them with minimal host overhead."""

from __future__ import annotations

from typing import Any

from . import _core
from ._library import tensorrt_library
from .engine import DeviceArray, Engine, Session
from .errors import (
    BuildError,
    CudaError,
    EngineCompatibilityError,
    EngineFormatError,
    InputError,
    TensorRTUnavailableError,
    TrtfastError,
)

__version__: str = _core.build_info()["version"]


def build_info() -> dict[str, Any]:
    """What this build was compiled with: ``version``, ``tensorrt_headers`` (None without the
    TensorRT adapter), ``cuda_runtime`` and ``compiler``."""
    return dict(_core.build_info())


__all__ = [
    "BuildError",
    "CudaError",
    "DeviceArray",
    "Engine",
    "EngineCompatibilityError",
    "EngineFormatError",
    "InputError",
    "Session",
    "TensorRTUnavailableError",
    "TrtfastError",
    "__version__",
    "build_info",
    "tensorrt_library",
]
