"""Finding TensorRT: the pip packages' folders come from Python, the search itself from C++."""

from __future__ import annotations

import importlib.util
import logging

from . import _core

# pip package (import name) -> kind of library it ships, in search order.
_PACKAGES = (("tensorrt_libs", "full"), ("tensorrt_lean_libs", "lean"))

# TensorRT's severities (0 internal error .. 4 verbose) as logging levels.
_LEVELS = (logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO, logging.DEBUG)

tensorrt_logger = logging.getLogger("trtfast.tensorrt")


def package_folder(package: str) -> str:
    # find_spec locates the package without running its __init__, which would load every
    # library in it.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return ""
    return str(next(iter(spec.submodule_search_locations)))


def tensorrt_library() -> _core.TensorRTLibrary:
    """The TensorRT library trtfast will use: ``path``, ``version`` and ``kind``.

    Searched in order: the file named by ``TRTFAST_TENSORRT_LIBRARY``, the pip packages
    ``tensorrt_libs`` (full) and ``tensorrt_lean_libs`` (lean runtime), then the system loader
    path. Raises TensorRTUnavailableError listing every place searched and how to fix it.
    """
    folders = [(package, package_folder(package), kind) for package, kind in _PACKAGES]
    return _core.find_tensorrt_library(folders)


def _forward_to_logging(severity: int, message: str) -> None:
    tensorrt_logger.log(_LEVELS[min(max(severity, 0), 4)], message)


_core.set_tensorrt_log_sink(_forward_to_logging)
