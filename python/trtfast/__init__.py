"""trtfast: build NVIDIA TensorRT engines from ONNX and run them with minimal host overhead."""

from __future__ import annotations

import importlib
import operator
import os
import sys
import types
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from . import _core
from ._library import tensorrt_library
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

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from . import models, reference
    from .batcher import Batcher
    from .build import build
    from .parity import CompareResult, compare
    from .prepare import PrepareReport, prepare, prepare_with_report

# Building, preparing and the reference path need onnx (and more), which take most of a second
# to import; a program that only runs engines never loads them, nor the batcher.
# name -> (module, attribute or None for the module itself), imported on first use.
_LAZY: dict[str, tuple[str, str | None]] = {
    "models": (".models", None),
    "reference": (".reference", None),
    "Batcher": (".batcher", "Batcher"),
    "build": (".build", "build"),
    "CompareResult": (".parity", "CompareResult"),
    "compare": (".parity", "compare"),
    "PrepareReport": (".prepare", "PrepareReport"),
    "prepare": (".prepare", "prepare"),
    "prepare_with_report": (".prepare", "prepare_with_report"),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'trtfast' has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(module_name, __name__)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value: Any) -> None:
        # Python binds a submodule to its package once imported: trtfast.build and
        # trtfast.prepare name the functions, never their modules.
        if isinstance(value, types.ModuleType) and name in _LAZY and _LAZY[name][1] is not None:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


__version__: str = _core.build_info()["version"]


def build_info() -> dict[str, Any]:
    """What this build was compiled with: ``version``, ``tensorrt_adapters`` (TensorRT major ->
    version of the headers its adapter was compiled with, as strings: ``{"10": "10.16.0",
    "11": "11.1.0"}``; empty without TensorRT headers), ``cuda_runtime`` and ``compiler``."""
    return dict(_core.build_info())


def empty(shape: int | Sequence[int], dtype: npt.DTypeLike = "float32") -> np.ndarray[Any, Any]:
    """A C-contiguous numpy array in page-locked (pinned) host memory from trtfast's pool.

    Sessions copy such arrays by DMA straight to and from the GPU, with no staging copy: fill an
    input in place and pass it, or pass one as ``out=``. The memory goes back to the pool when the
    array and every view of it are gone. Host results of 64 KB or more already come back in such
    arrays. Where memory cannot be pinned (no GPU; the pool's limit, a quarter of the machine's
    memory, reached) it returns an ordinary array and warns with PerformanceWarning saying why.
    """
    import numpy as np  # a program that never asks for pinned arrays does not import numpy here

    try:
        dims: tuple[int, ...] = (operator.index(shape),)  # type: ignore[arg-type]
    except TypeError:
        dims = tuple(operator.index(d) for d in shape)  # type: ignore[union-attr]
    array, why_not = _core.empty_pinned(np.dtype(dtype), list(dims))
    if why_not:
        warnings.warn(
            f"trtfast.empty: returning pageable memory, which sessions copy through staging: "
            f"{why_not}",
            PerformanceWarning,
            stacklevel=2,
        )
    return np.asarray(array)


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
    "empty",
    "export",
    "inspect",
    "models",
    "prepare",
    "prepare_with_report",
    "reference",
    "tensorrt_library",
]
