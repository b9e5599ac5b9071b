"""trtfast: build NVIDIA TensorRT engines from ONNX and run them with minimal host overhead."""

from __future__ import annotations

from typing import Any

from . import _core
from ._library import tensorrt_library
from .build import build
from .errors import (
    BuildError,
    BuildOptionError,
    CudaError,
    EngineCompatibilityError,
    EngineFormatError,
    InputError,
    ProfileError,
    TensorRTUnavailableError,
    TrtfastError,
)
from .prepare import prepare

__version__: str = _core.build_info()["version"]


def build_info() -> dict[str, Any]:
    """What this build was compiled with: ``version``, ``tensorrt_headers`` (None without the
    TensorRT adapter), ``cuda_runtime`` and ``compiler``."""
    return dict(_core.build_info())


__all__ = [
    "BuildError",
    "BuildOptionError",
    "CudaError",
    "EngineCompatibilityError",
    "EngineFormatError",
    "InputError",
    "ProfileError",
    "TensorRTUnavailableError",
    "TrtfastError",
    "__version__",
    "build",
    "build_info",
    "prepare",
    "tensorrt_library",
]
