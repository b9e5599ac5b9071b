"""The module-level skip of GPU test files that run the test executor: they need a usable CUDA
device and trtfast._testing (built only where nvcc was found)."""

from __future__ import annotations

from types import ModuleType

import pytest

from trtfast import _core


def require_test_executor() -> ModuleType:
    """trtfast._testing, or a skip of the calling test module saying what is missing."""
    if _core.cuda.device_count() == 0:
        pytest.skip(
            f"no usable CUDA device: {_core.cuda.unavailable_reason()}", allow_module_level=True
        )
    try:
        from trtfast import _testing
    except ImportError:
        pytest.skip(
            "trtfast._testing was not built (it needs nvcc at build time)", allow_module_level=True
        )
    return _testing
