"""trtfast's exceptions: one hierarchy, rooted at TrtfastError."""

from __future__ import annotations

from typing import Any


class TrtfastError(Exception):
    """Base class of every error trtfast raises on purpose."""


class TensorRTUnavailableError(TrtfastError):
    """TensorRT, or a CUDA device it needs, cannot be used on this machine."""


class EngineFormatError(TrtfastError):
    """An engine file is truncated, corrupt, or not an engine."""


class EngineCompatibilityError(TrtfastError):
    """A valid engine built for another TensorRT version, edition or GPU."""


class BuildError(TrtfastError):
    """Building an engine failed; ``parser_errors`` lists what the ONNX parser reported."""

    def __init__(self, message: str, parser_errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.parser_errors: list[dict[str, Any]] = list(parser_errors or [])


class BuildOptionError(BuildError, ValueError):
    """An argument of ``trtfast.build`` is invalid; raised before any build starts."""


class ProfileError(BuildOptionError):
    """Optimization-profile shapes do not fit the model's inputs; names the input and the rule."""


class InputError(TrtfastError, ValueError):
    """A tensor passed to an engine does not match what the engine expects."""


class CudaError(TrtfastError):
    """A CUDA runtime call failed; ``code`` is CUDA's error number."""

    code: int = -1


class OverloadedError(TrtfastError):
    """A batcher's queue is full: the request was refused at once, not queued."""


class TrtfastWarning(UserWarning):
    """Base class of trtfast's warnings: something went wrong and trtfast went on without it."""


class CacheWarning(TrtfastWarning):
    """An engine or timing cache could not be read or written; the work went on without it."""


class PerformanceWarning(TrtfastWarning):
    """trtfast fell back to a slower way, such as pageable instead of pinned host memory."""


__all__ = [
    "BuildError",
    "BuildOptionError",
    "CacheWarning",
    "CudaError",
    "EngineCompatibilityError",
    "EngineFormatError",
    "InputError",
    "OverloadedError",
    "PerformanceWarning",
    "ProfileError",
    "TensorRTUnavailableError",
    "TrtfastError",
    "TrtfastWarning",
]


class EngineCompatibilityWarning(TrtfastWarning):
    """An engine loads on a GPU other than the model it was built for (same compute capability):
    TensorRT allows it, but it may run slower or fail."""
