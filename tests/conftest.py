"""Capability checks: `gpu` and `tensorrt` tests skip with the reason where they cannot run."""

from __future__ import annotations

import pytest

import trtfast
from trtfast import _core


def gpu_unavailable_reason() -> str | None:
    if _core.cuda.device_count() > 0:
        return None
    return f"no usable NVIDIA GPU ({_core.cuda.unavailable_reason()})"


def tensorrt_unavailable_reason() -> str | None:
    """Why real engines cannot be built and run here, or None when they can."""
    if not _core.tensorrt_adapter_available():
        return "trtfast was built without TensorRT headers (no TensorRT adapter)"
    try:
        library = trtfast.tensorrt_library()
    except trtfast.TensorRTUnavailableError as error:
        return f"no TensorRT library: {str(error).splitlines()[0]}"
    if str(library.major) not in trtfast.build_info()["tensorrt_adapters"]:
        return f"this trtfast has no adapter for TensorRT {library.major} ({library.path})"
    if library.kind != "full":
        return (
            f"only the {library.kind} TensorRT runtime is installed ({library.path}); "
            "building needs the full library"
        )
    return gpu_unavailable_reason()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--wheel", help="a built trtfast wheel, for tests/test_wheel.py to check")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reasons = {"gpu": gpu_unavailable_reason(), "tensorrt": tensorrt_unavailable_reason()}
    for item in items:
        for marker, reason in reasons.items():
            if reason is not None and marker in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))
