"""trtfast: build NVIDIA TensorRT engines from ONNX and run them with minimal host overhead."""

from __future__ import annotations

import os
from typing import Any

from . import _core, models, reference
from ._library import tensorrt_library
from .batcher import Batcher
from .build import build
from .engine import DeviceArray, Engine, Session
from .engine_file import EngineInfo, TensorSpec, export_plan, read_info
from .errors import (
    BuildError,
    BuildOptionError,
    CacheWarning,
    CudaError,
    EngineCompatibilityError,
    EngineCompatibilityWarning,
    EngineFormatError,
    InputError,
    OverloadedError,
    PerformanceWarning,
    ProfileError,
    TensorRTUnavailableError,
    TrtfastError,
    TrtfastWarning,
)
from .parity import CompareResult, compare
from .prepare import PrepareReport, prepare, prepare_with_report

__version__: str = _core.build_info()["version"]


def build_info() -> dict[str, Any]:
    """What this build was compiled with: ``version``, ``tensorrt_headers`` (None without the
    TensorRT adapter), ``cuda_runtime`` and ``compiler``."""
    return dict(_core.build_info())


def inspect(path: str | os.PathLike[str]) -> EngineInfo:
    """What an engine file (or a bare TensorRT plan) says about itself, after checking the
    whole file, plan included. Raises EngineFormatError naming what is wrong."""
    return read_info(path, check_plan=True)


def export(path: str | os.PathLike[str], output: str | os.PathLike[str]) -> None:
    """Write the engine's bare TensorRT plan to `output` (atomically), for trtexec or Triton."""
    export_plan(path, output)


__all__ = [
    "Batcher",
    "BuildError",
    "BuildOptionError",
    "CacheWarning",
    "CompareResult",
    "CudaError",
    "DeviceArray",
    "Engine",
    "EngineCompatibilityError",
    "EngineCompatibilityWarning",
    "EngineFormatError",
    "EngineInfo",
    "InputError",
    "OverloadedError",
    "PerformanceWarning",
    "PrepareReport",
    "ProfileError",
    "Session",
    "TensorRTUnavailableError",
    "TensorSpec",
    "TrtfastError",
    "TrtfastWarning",
    "__version__",
    "build",
    "build_info",
    "compare",
    "export",
    "inspect",
    "models",
    "prepare",
    "prepare_with_report",
    "reference",
    "tensorrt_library",
]
