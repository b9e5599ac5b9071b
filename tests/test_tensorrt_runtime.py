"""The TensorRT adapter: runtime creation, refusal of bad plans, log forwarding."""

from __future__ import annotations

import logging

import pytest

import trtfast
from trtfast import _core

needs_adapter = pytest.mark.skipif(
    not _core.tensorrt_adapter_available(),
    reason="trtfast was built without TensorRT headers (no TensorRT adapter)",
)


def _has_adapter(library: _core.TensorRTLibrary) -> bool:
    return str(library.major) in trtfast.build_info()["tensorrt_adapters"]


def _library(adapter: bool = True) -> _core.TensorRTLibrary:
    """The library trtfast finds; with `adapter`, one whose major this build has an adapter for,
    without, one whose major it has none for."""
    try:
        library = trtfast.tensorrt_library()
    except trtfast.TensorRTUnavailableError as error:
        pytest.skip(f"no usable TensorRT library: {str(error).splitlines()[0]}")
    if _has_adapter(library) != adapter:
        pytest.skip(
            f"this trtfast {'has no' if adapter else 'has an'} adapter for TensorRT "
            f"{library.major} ({library.path})"
        )
    return library


def test_without_adapter_runtime_says_how_to_fix() -> None:
    library = _library(adapter=False)
    with pytest.raises(trtfast.TensorRTUnavailableError) as raised:
        _core.Runtime(library)
    message = str(raised.value)
    if _core.tensorrt_adapter_available():
        assert f"built without TensorRT {library.major} support" in message
        assert f"TensorRT{library.major}_ROOT" in message
    else:
        assert "TensorRT_ROOT" in message


@needs_adapter
@pytest.mark.skipif(_core.cuda.device_count() > 0, reason="this machine has a GPU")
def test_without_gpu_runtime_is_refused_before_the_factory() -> None:
    library = _library()
    with pytest.raises(trtfast.TensorRTUnavailableError, match="needs a CUDA device"):
        _core.Runtime(library)


@needs_adapter
@pytest.mark.gpu
def test_runtime_refuses_junk_plan_with_tensorrt_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    library = _library()
    runtime = _core.Runtime(library, 0)
    assert runtime.device == 0
    caplog.set_level(logging.DEBUG, logger="trtfast.tensorrt")
    with pytest.raises(trtfast.EngineFormatError, match=r"refused the plan: .+") as raised:
        runtime.deserialize(b"\x00" * 4096)
    # The message TensorRT logged is both in the exception and on the Python logger.
    errors = [
        r for r in caplog.records if r.name == "trtfast.tensorrt" and r.levelno >= logging.ERROR
    ]
    assert errors, "TensorRT's error did not reach logging"
    assert errors[-1].getMessage() in str(raised.value)
