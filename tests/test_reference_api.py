"""The reference path's API on any machine: it is called like trtfast's own, checks what it is
given the same way, and says what to install when a piece is missing."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import numpy as np
import pytest
from rtx_engines import rtx_engine

import trtfast
from trtfast import models, reference
from trtfast.reference import _tensorrt
from trtfast.reference.runtime import _host_array, _output_targets, gather_inputs, select_profile


def _parameters(function: object) -> list[tuple[str, object, object]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def test_engine_is_loaded_and_called_like_trtfast_engine() -> None:
    # The reference path runs one execution context: it has no pool to cap.
    ours = [p for p in _parameters(trtfast.Engine.load) if p[0] != "max_sessions"]
    assert _parameters(reference.Engine.load) == ours
    assert _parameters(reference.Engine.__call__) == _parameters(trtfast.Engine.__call__)
    for member in ("inputs", "outputs", "device", "close"):
        assert hasattr(trtfast.Engine, member)
        assert hasattr(reference.Engine, member)


def test_build_takes_trtfast_builds_options_and_an_edition() -> None:
    ours = _parameters(trtfast.build)
    theirs = _parameters(reference.build)
    assert theirs[0] == ours[0]
    assert theirs[1] == ("edition", inspect.Parameter.KEYWORD_ONLY, "standard")
    assert theirs[2:] == ours[1:]


def test_build_options_are_checked_before_tensorrt(tmp_path: Path) -> None:
    source = models.path("mlp", tmp_path)
    with pytest.raises(trtfast.BuildOptionError, match="edition must be 'standard' or 'rtx'"):
        reference.build(source, edition="gpu", output=tmp_path / "e")
    with pytest.raises(trtfast.BuildOptionError, match="precision must be one of"):
        reference.build(source, edition="rtx", output=tmp_path / "e", precision="fp7")


def _hide(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)  # makes `import name` fail
    monkeypatch.setattr(_tensorrt, "_loaded", {})


@pytest.mark.parametrize(
    ("edition", "modules", "install"),
    [
        ("standard", ("tensorrt", "tensorrt_bindings"), "pip install tensorrt-cu13"),
        ("rtx", ("tensorrt_rtx", "tensorrt_rtx_bindings"), "pip install tensorrt-rtx-cu13"),
    ],
)
def test_missing_tensorrt_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    edition: str,
    modules: tuple[str, ...],
    install: str,
) -> None:
    _hide(monkeypatch, *modules)
    assert install in (reference.unavailable_reason(edition) or "")
    with pytest.raises(trtfast.TensorRTUnavailableError, match=install):
        reference.build(
            models.path("mlp", tmp_path),
            edition=edition,
            output=tmp_path / "e",
            shapes=models.shapes("mlp"),
            progress=False,
        )
    assert not (tmp_path / "e").exists()


def test_engine_files_are_checked_before_tensorrt_is_needed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _hide(monkeypatch, "tensorrt", "tensorrt_bindings", "tensorrt_rtx", "tensorrt_rtx_bindings")
    with pytest.raises(trtfast.EngineFormatError, match="neither a trtfast engine"):
        reference.Engine.load(b"not an engine at all")
    (tmp_path / "empty.engine").write_bytes(b"")
    with pytest.raises(trtfast.EngineFormatError):
        reference.Engine.load(tmp_path / "empty.engine")
    with pytest.raises(FileNotFoundError):
        reference.Engine.load(tmp_path / "missing.engine")


def test_loading_without_cuda_python_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    engine = rtx_engine(tmp_path)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", None)
    with pytest.raises(ImportError, match=r"pip install 'trtfast\[reference\]'"):
        reference.Engine.load(engine)


def test_inputs_by_mapping_keywords_or_both() -> None:
    x, y = np.zeros(2), np.ones(2)
    assert gather_inputs({"x": x}, {}) == {"x": x}
    assert gather_inputs(None, {"x": x}) == {"x": x}
    assert gather_inputs({"x": x}, {"y": y}) == {"x": x, "y": y}
    with pytest.raises(trtfast.InputError, match="input 'x' is given twice"):
        gather_inputs({"x": x}, {"x": y})
    with pytest.raises(trtfast.InputError, match="inputs must map input names to arrays"):
        gather_inputs([x], {})  # type: ignore[arg-type]


class _CudaArray:
    @property
    def __cuda_array_interface__(self) -> dict[str, object]:
        return {"shape": (2,), "typestr": "<f4", "data": (0, False), "version": 3}


class _DLPackOnGpu:
    def __dlpack_device__(self) -> tuple[int, int]:
        return (2, 0)


def test_device_arrays_are_refused_with_the_reason() -> None:
    for value in (_CudaArray(), _DLPackOnGpu()):
        with pytest.raises(trtfast.InputError, match="input 'x': the reference runtime takes host"):
            _host_array("x", value)
    assert _host_array("x", [1.0, 2.0]).dtype == np.float64


def test_output_arrays_given_must_match() -> None:
    shapes = {"y": (2, 3)}
    dtypes = {"y": np.dtype(np.float32)}
    good = np.zeros((2, 3), np.float32)
    assert _output_targets({"y": good}, shapes, dtypes)["y"] is good
    with pytest.raises(
        trtfast.InputError, match="unknown output 'z'; the engine's outputs are 'y'"
    ):
        _output_targets({"z": good}, shapes, dtypes)
    with pytest.raises(
        trtfast.InputError, match=r"output 'y': expected float32 \[2, 3\], received float64"
    ):
        _output_targets({"y": np.zeros((2, 3))}, shapes, dtypes)
    with pytest.raises(trtfast.InputError, match="numpy arrays, not list"):
        _output_targets({"y": [[0.0] * 3] * 2}, shapes, dtypes)
    frozen = np.zeros((2, 3), np.float32)
    frozen.flags.writeable = False
    with pytest.raises(trtfast.InputError, match="read-only"):
        _output_targets({"y": frozen}, shapes, dtypes)


class RefusingContext:
    """What TensorRT's Python binding does when a profile switch fails: logs, then raises a bare
    RuntimeError (it never returns False)."""

    def __init__(self, errors: list[str]) -> None:
        self._errors = errors

    def set_optimization_profile_async(self, profile: int, stream: int) -> bool:
        self._errors.append(f"setOptimizationProfileAsync: profile {profile} is out of range")
        raise RuntimeError("setOptimizationProfileAsync failed")


def test_a_failed_profile_switch_raises_trtfasts_error_with_the_logged_messages() -> None:
    errors: list[str] = []
    with pytest.raises(
        trtfast.TrtfastError,
        match=r"TensorRT could not select optimization profile 3: "
        r"setOptimizationProfileAsync: profile 3 is out of range",
    ) as raised:
        select_profile(RefusingContext(errors), 3, 0, errors)
    assert isinstance(raised.value.__cause__, RuntimeError)
