"""``trtfast.reference.Engine``: an engine run through TensorRT's Python API and cuda-python,
as a Python program using TensorRT runs one.

Loaded and called like :class:`trtfast.Engine` (the same engine files, the same compatibility
checks and input checks, the same exceptions), so either serves the same code: the reference
for parity checks, and the measure of what trtfast's C++ core saves per call. Each call stages
host arrays through pinned memory, sets shapes and addresses, enqueues with
``execute_async_v3`` (a failed enqueue raises), copies the outputs back and synchronizes.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import _core
from ..engine import _plugin_files, _spec, check_compatibility, check_host_code
from ..errors import EngineCompatibilityError, EngineFormatError, InputError, TrtfastError
from . import _cuda
from ._tensorrt import TensorRT, dtype_name, logged, tensorrt

if TYPE_CHECKING:
    from ..engine_file import EngineInfo, TensorSpec

# DLPack's device type of CUDA memory.
_DLPACK_CUDA = 2


class Engine:
    """A TensorRT engine run through TensorRT's Python API: ``Engine.load(path)``, then
    ``engine(x=...)`` or ``engine({"x": ...})`` returns a dict of numpy outputs. Calls from
    several threads take turns on the one execution context."""

    def __init__(
        self,
        *,
        tensorrt: TensorRT,
        runtime: Any,
        engine: Any,
        device: int,
        info: EngineInfo | None,
    ) -> None:
        """Use :meth:`load`."""
        self.info = info
        self._tensorrt = tensorrt
        self._runtime = runtime  # outlives the engine
        self._engine = engine
        self._device = device
        self._cudart = _cuda.runtime()
        self._lock = threading.Lock()
        self._signature = _signature(engine)
        self._dtypes = {
            entry["name"]: _numpy_dtype(entry["name"], entry["dtype"])
            for entry in [*self._signature.inputs, *self._signature.outputs]
        }
        with _cuda.on_device(self._cudart, device), tensorrt.errors.collect() as errors:
            self._context = engine.create_execution_context()
            if self._context is None:
                raise TrtfastError(
                    "TensorRT could not create an execution context (out of device memory?): "
                    + logged(errors)
                )
            self._stream = _cuda.Stream(self._cudart)
        self._buffers = {name: _cuda.StagedBuffer(self._cudart) for name in self._dtypes}
        self._profile = 0

    @classmethod
    def load(
        cls,
        source: str | os.PathLike[str] | bytes,
        *,
        device: int = 0,
        allow_host_code: bool = False,
        plugins: Sequence[str | os.PathLike[str]] = (),
    ) -> Engine:
        """Loads an engine file (path or bytes) onto CUDA device ``device``, with the TensorRT
        edition it was built for. Checked as :meth:`trtfast.Engine.load` checks it before
        TensorRT sees the plan: EngineCompatibilityError names what the engine was built for
        and what is here; engines that embed host code need ``allow_host_code=True``.
        ``plugins``: the plugin libraries the engine was built with, loaded before the plan."""
        from .. import engine_file

        plugin_files = _plugin_files(plugins)
        info, plan = engine_file.read(source)
        check_host_code(info, allow_host_code, source)
        edition = info.edition or "standard"
        trt = tensorrt(edition)
        cudart = _cuda.runtime()
        count, reason = _cuda.device_count(cudart)
        if not 0 <= device < count:
            raise EngineCompatibilityError(
                f"cannot load the engine on CUDA device {device}: this machine has {count} "
                f"usable device(s)" + (f" ({reason})" if reason else "")
            )
        gpu_name, compute_capability = _cuda.device_properties(cudart, device)
        check_compatibility(
            info,
            tensorrt_version=trt.version,
            library_path=str(trt.module.__file__),
            gpu_name=gpu_name,
            compute_capability=compute_capability,
            edition=edition,
            source=source if not isinstance(source, bytes) else None,
        )
        with _cuda.on_device(cudart, device), trt.errors.collect() as errors:
            runtime = trt.module.Runtime(trt.logger)
            runtime.engine_host_code_allowed = allow_host_code
            trt.load_plugins(plugin_files)
            engine = runtime.deserialize_cuda_engine(plan)
            if engine is None:
                raise EngineFormatError(
                    f"TensorRT {trt.version} refused the plan: {logged(errors)}"
                )
        return cls(tensorrt=trt, runtime=runtime, engine=engine, device=device, info=info)

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return tuple(_spec(entry) for entry in self._signature.inputs)

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return tuple(_spec(entry) for entry in self._signature.outputs)

    @property
    def device(self) -> int:
        return self._device

    def __call__(
        self, inputs: Mapping[str, Any] | None = None, /, *, out: Any = None, **named: Any
    ) -> dict[str, Any]:
        """Runs one call: inputs as a mapping, as keywords, or both; ``out={"y": array}`` writes
        an output into the caller's numpy array. Returns every output by name."""
        feeds = gather_inputs(inputs, named)
        with self._lock:
            if self._context is None:
                raise RuntimeError("this Engine is closed")
            # As trtfast's sessions choose: the current profile while it accepts the shapes.
            profile = self._signature.check(feeds, self._device, current=self._profile)
            arrays = {name: _host_array(name, value) for name, value in feeds.items()}
            with _cuda.on_device(self._cudart, self._device):
                return self._run(profile, arrays, dict(out or {}))

    def _run(
        self, profile: int, arrays: dict[str, np.ndarray[Any, Any]], out: dict[str, Any]
    ) -> dict[str, Any]:
        context, stream = self._context, self._stream
        with self._tensorrt.errors.collect() as errors:
            if profile != self._profile:
                select_profile(context, profile, stream.handle, errors)
                self._profile = profile
            for name, array in arrays.items():
                if not context.set_input_shape(name, array.shape):
                    raise TrtfastError(
                        f"TensorRT refused shape {list(array.shape)} for input '{name}': "
                        + logged(errors)
                    )
                buffer = self._buffers[name]
                buffer.reserve(array.nbytes)
                np.copyto(buffer.host_array(array.dtype, array.shape), array)
                buffer.to_device(array.nbytes, stream)
                self._bind(name, buffer, errors)
            shapes = {}
            for entry in self._signature.outputs:
                name = entry["name"]
                shape = tuple(int(dim) for dim in context.get_tensor_shape(name))
                if any(dim < 0 for dim in shape):
                    raise TrtfastError(
                        f"output '{name}' has the data-dependent shape {list(shape)}, which the "
                        "reference runtime does not support"
                    )
                shapes[name] = shape
                self._buffers[name].reserve(self._nbytes(name, shape))
                self._bind(name, self._buffers[name], errors)
            targets = _output_targets(out, shapes, self._dtypes)
            # TensorRT's binding returns False on failure: raised here, never stale outputs.
            if not context.execute_async_v3(stream.handle):
                raise TrtfastError(f"TensorRT execute_async_v3 failed: {logged(errors)}")
        for name, shape in shapes.items():
            self._buffers[name].to_host(self._nbytes(name, shape), stream)
        stream.synchronize()
        results: dict[str, Any] = {}
        for name, shape in shapes.items():
            staged = self._buffers[name].host_array(self._dtypes[name], shape)
            if name in targets:
                np.copyto(targets[name], staged)
                results[name] = targets[name]
            else:
                results[name] = staged.copy()
        return results

    def _nbytes(self, name: str, shape: tuple[int, ...]) -> int:
        return int(np.prod(shape, dtype=np.int64)) * self._dtypes[name].itemsize

    def _bind(self, name: str, buffer: _cuda.StagedBuffer, errors: list[str]) -> None:
        if not self._context.set_tensor_address(name, buffer.device):
            raise TrtfastError(f"TensorRT refused the address of tensor '{name}': {logged(errors)}")

    def close(self) -> None:
        """Frees the execution context, the stream and the buffers."""
        with self._lock:
            for buffer in self._buffers.values():
                buffer.close()
            self._stream.close()
            self._context = None

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def select_profile(context: Any, profile: int, stream: int, errors: list[str]) -> None:
    """Switches ``context`` to ``profile``, failing as trtfast's C++ path fails: TrtfastError with
    what TensorRT logged (``errors``, collected meanwhile). TensorRT's binding raises a bare
    RuntimeError on failure rather than returning False; either way counts."""
    try:
        selected = context.set_optimization_profile_async(profile, stream)
    except RuntimeError as error:
        raise TrtfastError(
            f"TensorRT could not select optimization profile {profile}: "
            + logged(errors or [str(error)])
        ) from error
    if not selected or errors:
        raise TrtfastError(
            f"TensorRT could not select optimization profile {profile}: " + logged(errors)
        )


def gather_inputs(inputs: Mapping[str, Any] | None, named: Mapping[str, Any]) -> dict[str, Any]:
    """One dict of a call's inputs, given as a mapping, as keywords, or both."""
    if inputs is not None and not isinstance(inputs, Mapping):
        raise InputError(
            f"inputs must map input names to arrays, not {type(inputs).__name__}; or pass them "
            "as keywords"
        )
    feeds = dict(inputs or {})
    for name, value in named.items():
        if name in feeds:
            raise InputError(f"input '{name}' is given twice")
        feeds[name] = value
    return feeds


def _host_array(name: str, value: Any) -> np.ndarray[Any, Any]:
    device = getattr(value, "__dlpack_device__", None)
    on_gpu = hasattr(value, "__cuda_array_interface__") or (
        callable(device) and int(device()[0]) == _DLPACK_CUDA
    )
    if on_gpu:
        raise InputError(
            f"input '{name}': the reference runtime takes host (numpy) arrays; this one is in "
            "GPU memory (trtfast.Engine binds device arrays without a copy)"
        )
    return np.asarray(value)


def _output_targets(
    out: dict[str, Any], shapes: dict[str, tuple[int, ...]], dtypes: dict[str, np.dtype[Any]]
) -> dict[str, np.ndarray[Any, Any]]:
    for name, target in out.items():
        if name not in shapes:
            known = ", ".join(f"'{output}'" for output in shapes)
            raise InputError(f"unknown output '{name}'; the engine's outputs are {known}")
        if not isinstance(target, np.ndarray):
            raise InputError(
                f"output '{name}': the reference runtime writes into numpy arrays, not "
                f"{type(target).__name__}"
            )
        if target.dtype != dtypes[name] or target.shape != shapes[name]:
            raise InputError(
                f"output '{name}': expected {dtypes[name]} {list(shapes[name])}, received "
                f"{target.dtype} {list(target.shape)}"
            )
        if not target.flags.writeable:
            raise InputError(f"output '{name}': the array given is read-only")
    return dict(out)


def _signature(engine: Any) -> Any:
    """The engine's inputs and outputs as trtfast's signature, which checks a call's inputs
    exactly as :class:`trtfast.Engine` does."""
    profiles = int(engine.num_optimization_profiles)
    inputs, outputs = [], []
    for index in range(engine.num_io_tensors):
        name = engine.get_tensor_name(index)
        if engine.get_tensor_location(name).name == "HOST":
            raise TrtfastError(
                f"tensor '{name}' lives in host memory (a shape tensor), which the reference "
                "runtime does not support"
            )
        dtype = dtype_name(engine.get_tensor_dtype(name))
        shape = tuple(int(dim) for dim in engine.get_tensor_shape(name))
        if engine.get_tensor_mode(name).name == "INPUT":
            ranges = []
            if -1 in shape:
                for profile in range(profiles):
                    low, opt, high = engine.get_tensor_profile_shape(name, profile)
                    ranges.append((tuple(low), tuple(opt), tuple(high)))
            inputs.append((name, dtype, shape, ranges))
        else:
            outputs.append((name, dtype, shape))
    return _core.Signature(inputs, outputs, profiles)


def _numpy_dtype(name: str, dtype: str) -> np.dtype[Any]:
    try:
        return np.dtype(dtype)
    except TypeError:
        pass
    try:
        import ml_dtypes
    except ImportError as error:
        raise ImportError(
            f"tensor '{name}' has dtype {dtype}, which numpy has through ml_dtypes: "
            "pip install ml_dtypes"
        ) from error
    if not hasattr(ml_dtypes, dtype) or dtype in ("int4", "float4_e2m1fn"):
        raise TrtfastError(
            f"tensor '{name}' has dtype {dtype}, which the reference runtime does not support"
        )
    found: np.dtype[Any] = np.dtype(getattr(ml_dtypes, dtype))
    return found
