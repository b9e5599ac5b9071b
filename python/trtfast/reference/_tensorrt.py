"""TensorRT's Python modules, one per edition, with a logger that feeds Python's logging and
collects the errors TensorRT reports during a call, for the exception that call raises."""

from __future__ import annotations

import contextlib
import importlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from .._library import tensorrt_logger
from ..errors import BuildOptionError, TensorRTUnavailableError, TrtfastError

EDITIONS = ("standard", "rtx")

# edition -> (modules to try, in order: the metapackage's name, then the bindings wheel's own),
# and what to install.
_MODULES = {
    "standard": (("tensorrt", "tensorrt_bindings"), "pip install tensorrt-cu13 (or tensorrt-cu12)"),
    "rtx": (
        ("tensorrt_rtx", "tensorrt_rtx_bindings"),
        "pip install tensorrt-rtx-cu13 (or tensorrt-rtx-cu12)",
    ),
}

# TensorRT DataType member names -> numpy (and ml_dtypes) names, as engine files record them.
DTYPE_NAMES = {
    "FLOAT": "float32",
    "HALF": "float16",
    "BF16": "bfloat16",
    "INT8": "int8",
    "UINT8": "uint8",
    "INT32": "int32",
    "INT64": "int64",
    "BOOL": "bool",
    "FP8": "float8_e4m3fn",
    "INT4": "int4",
    "FP4": "float4_e2m1fn",
    "E8M0": "float8_e8m0fnu",
}


def check_edition(edition: object) -> str:
    if edition not in EDITIONS:
        raise BuildOptionError(f"edition must be 'standard' or 'rtx', not {edition!r}")
    return str(edition)


def import_tensorrt(edition: str) -> ModuleType:
    """TensorRT's Python module for ``edition``; TensorRTUnavailableError says what to install
    when neither of its names imports."""
    names, install = _MODULES[check_edition(edition)]
    failures = []
    for name in names:
        try:
            return importlib.import_module(name)
        except ImportError as error:
            failures.append(f"{name}: {error}")
    raise TensorRTUnavailableError(
        f"the TensorRT {edition} edition's Python API is not installed ({'; '.join(failures)}): "
        f"{install}"
    )


def unavailable_reason(edition: str) -> str | None:
    """Why ``edition``'s Python API cannot be imported here, or None when it can."""
    try:
        import_tensorrt(edition)
    except TensorRTUnavailableError as error:
        return str(error)
    return None


def version(trt: ModuleType) -> str:
    """major.minor.patch of a TensorRT module (its __version__ has a fourth, build number)."""
    return ".".join(str(trt.__version__).split(".")[:3])


def dtype_name(data_type: Any) -> str:
    name = str(getattr(data_type, "name", data_type)).rpartition(".")[2]
    if name not in DTYPE_NAMES:
        raise TrtfastError(f"trtfast does not know TensorRT's data type {name}")
    return DTYPE_NAMES[name]


@dataclass
class TensorRT:
    """A TensorRT module and the one logger every object made from it shares."""

    module: ModuleType
    edition: str
    logger: Any
    errors: _Errors

    @property
    def version(self) -> str:
        return version(self.module)

    def load_plugins(self, paths: Sequence[str]) -> None:
        """Loads each plugin library (a canonical path) into the process's plugin registry, once:
        a registry refuses a library whose plugins it already has (NvInferRuntimeCommon.h,
        IPluginRegistry::loadLibrary). One it cannot load is a TensorRTUnavailableError naming
        the file, as in trtfast's own builder and runtime."""
        registry = self.module.get_plugin_registry()
        with _plugins_lock:
            for path in paths:
                if (self.edition, path) in _plugins_loaded:
                    continue
                with self.errors.collect() as errors:
                    if registry.load_library(path) is None:
                        raise TensorRTUnavailableError(
                            f"TensorRT could not load the plugin library {path}: {logged(errors)}"
                        )
                _plugins_loaded.add((self.edition, path))


# Collections of errors from threads with none of their own (a build's worker threads).
_any_thread_collections: list[list[str]] = []
_any_thread_lock = threading.Lock()


class _Errors(threading.local):
    """Per thread: the error messages TensorRT logged since collecting began, or None."""

    messages: list[str] | None = None

    @contextlib.contextmanager
    def collect(self, any_thread: bool = False) -> Iterator[list[str]]:
        """With ``any_thread``, errors logged on threads that collect none of their own (TensorRT's
        worker threads) are collected here too, as in every other such collection meanwhile."""
        outer = self.messages
        messages: list[str] = []
        self.messages = messages
        if any_thread:
            with _any_thread_lock:
                _any_thread_collections.append(messages)
        try:
            yield messages
        finally:
            self.messages = outer
            if any_thread:
                with _any_thread_lock:
                    _any_thread_collections[:] = [
                        m for m in _any_thread_collections if m is not messages
                    ]

    def add(self, message: str) -> None:
        if self.messages is not None:
            self.messages.append(message)
            return
        with _any_thread_lock:
            for messages in _any_thread_collections:
                messages.append(message)


_loaded: dict[str, TensorRT] = {}
_plugins_loaded: set[tuple[str, str]] = set()
_plugins_lock = threading.Lock()
_loaded_lock = threading.Lock()


def tensorrt(edition: str) -> TensorRT:
    """The module for ``edition`` with its logger, made once per process (TensorRT expects one
    logger for all its objects)."""
    with _loaded_lock:
        if edition not in _loaded:
            module = import_tensorrt(edition)
            errors = _Errors()
            logger = _make_logger(module, errors)
            # TensorRT's standard plugins are registered once, before any parse or load, as
            # trtexec and Polygraphy do (NvInferPlugin.h, initLibNvInferPlugins).
            with errors.collect() as logged_errors:
                if not module.init_libnvinfer_plugins(logger, ""):
                    raise TensorRTUnavailableError(
                        f"TensorRT {version(module)}'s standard plugins could not be registered: "
                        f"{logged(logged_errors)}"
                    )
            _loaded[edition] = TensorRT(module, edition, logger, errors)
        return _loaded[edition]


def _make_logger(trt: ModuleType, errors: _Errors) -> Any:
    severities = trt.ILogger.Severity
    levels = {
        severities.INTERNAL_ERROR: 50,
        severities.ERROR: 40,
        severities.WARNING: 30,
        severities.INFO: 20,
        severities.VERBOSE: 10,
    }

    class Logger(trt.ILogger):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity: Any, message: str) -> None:
            level = levels.get(severity, 30)
            tensorrt_logger.log(level, message)
            if level >= 40:
                errors.add(message)

    return Logger()


def logged(messages: list[str]) -> str:
    """The errors TensorRT logged, as the end of an exception's message."""
    return "; ".join(messages) if messages else "no reason given"
