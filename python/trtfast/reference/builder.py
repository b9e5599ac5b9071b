"""``trtfast.reference.build``: ``trtfast.build`` with TensorRT's Python API as the TensorRT step.

Options, profiles, model preparation, caches and the engine file are ``trtfast.build``'s own;
only the step from ONNX bytes to a plan differs: ``Builder``, ``OnnxParser`` and a builder
config, as a Python program using TensorRT writes them.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from .._library import package_folder
from ..build import (
    BuildOptions,
    ChildProcessPlanBuilder,
    PathArgument,
    PlanBuilder,
    ProgressCallback,
    build_with,
    gpu_identity,
    library_identity,
)
from ..errors import BuildError, BuildOptionError
from . import _cuda
from ._tensorrt import TensorRT, check_edition, dtype_name, logged, tensorrt

if TYPE_CHECKING:
    from ..engine_file import EngineInfo
    from ..prepare import ModelSource
    from ..profiles import ShapesArgument

Progress = Callable[[str, str, int, int], bool]

# Data types a strongly typed network must hold for each reduced precision.
_PRECISION_TYPES = {"fp16": "HALF", "bf16": "BF16", "int8": "INT8", "fp8": "FP8"}
# Builder flags of weakly typed builds (TensorRT 10); int8 and fp8 fall back to fp16, not fp32.
_PRECISION_FLAGS = {
    "fp32": (),
    "fp16": ("FP16",),
    "bf16": ("BF16",),
    "int8": ("INT8", "FP16"),
    "fp8": ("FP8", "FP16"),
}

# TensorRT's plugin registry is process-wide and refuses a library loaded twice.


def build(
    model: ModelSource,
    *,
    edition: str = "standard",
    output: PathArgument | None = None,
    precision: str | None = None,
    shapes: ShapesArgument | None = None,
    workspace: int | str | None = None,
    timing_cache: PathArgument | None = None,
    cache_dir: PathArgument | None = None,
    optimization_level: int | None = None,
    version_compatible: bool = False,
    hardware_compatibility: str | None = None,
    plugins: Sequence[PathArgument] = (),
    progress: bool | ProgressCallback | str = "auto",
    device: int = 0,
    prepare: str = "auto",
) -> EngineInfo | bytes:
    """``trtfast.build`` through TensorRT's Python API; the same options and the same engine
    file, plus ``edition``:

    edition: "standard" (the ``tensorrt`` package) or "rtx" (``tensorrt_rtx``, TensorRT for RTX:
        builds need no GPU and the engine runs on any GPU it supports, so the engine file names
        no GPU; it has no timing cache).
    """
    edition = check_edition(edition)
    if edition == "rtx" and timing_cache is not None:
        raise BuildOptionError("timing_cache: TensorRT-RTX has no timing cache; leave it out")
    if edition == "rtx" and hardware_compatibility not in (None, "none"):
        raise BuildOptionError(
            "hardware_compatibility: TensorRT-RTX engines run on every GPU TensorRT-RTX supports; "
            "leave it out"
        )
    return build_with(
        _plan_builder(edition),
        model,
        output=output,
        precision=precision,
        shapes=shapes,
        workspace=workspace,
        timing_cache=timing_cache,
        cache_dir=cache_dir,
        optimization_level=optimization_level,
        version_compatible=version_compatible,
        hardware_compatibility=hardware_compatibility,
        plugins=plugins,
        progress=progress,
        device=device,
        prepare=prepare,
    )


class PythonPlanBuilder:
    """The TensorRT step of a build, through TensorRT's Python API."""

    def __init__(self, edition: str) -> None:
        self.tensorrt: TensorRT = tensorrt(edition)
        self.edition = edition
        self.tensorrt_version = self.tensorrt.version
        # TensorRT 11 and TensorRT-RTX have no precision flags: every network is strongly typed.
        self.strongly_typed = not hasattr(self.tensorrt.module.BuilderFlag, "FP16")
        libraries = "tensorrt_rtx_libs" if edition == "rtx" else "tensorrt_libs"
        self.library = library_identity(package_folder(libraries), libraries)

    def target(self, device: int) -> dict[str, Any]:
        if self.edition == "rtx":
            return {}
        return gpu_identity(device)

    @contextlib.contextmanager
    def _on_device(self, device: int) -> Iterator[None]:
        if self.edition == "rtx":  # builds on the CPU
            yield
            return
        with _cuda.on_device(_cuda.runtime(), device):
            yield

    def build_plan(
        self, onnx: bytes, options: dict[str, Any], progress: Progress
    ) -> dict[str, Any]:
        trt, logger = self.tensorrt.module, self.tensorrt.logger
        # Errors TensorRT's worker threads log reach the BuildError too.
        collect = self.tensorrt.errors.collect(any_thread=True)
        with self._on_device(options["device"]), collect as errors:
            builder = trt.Builder(logger)
            self.tensorrt.load_plugins(options["plugins"])
            flags = 0
            if self.strongly_typed:
                flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
            network = builder.create_network(flags)
            # The network keeps what it needs from the parser.
            parser = trt.OnnxParser(network, logger)
            _parse(parser, onnx, options["model_dir"], errors)
            if options["version_compatible"]:
                # As trtexec does: the plugin libraries the parser used are loaded for the build
                # and serialized with the plan (NvOnnxParser.h, getUsedVCPluginLibraries).
                used = _used_vc_plugin_libraries(parser)
                self.tensorrt.load_plugins(used)
                options = {**options, "plugins": list(dict.fromkeys([*options["plugins"], *used]))}
            if self.strongly_typed:
                _check_precision(trt, network, options["precision"])
            inputs = [_spec(network.get_input(i), True) for i in range(network.num_inputs)]
            outputs = [_spec(network.get_output(i), False) for i in range(network.num_outputs)]

            config = builder.create_builder_config()
            self._configure(config, options, errors)
            _add_profiles(builder, config, network, options["profiles"], errors)
            timing_cache = self._attach_timing_cache(config, options["timing_cache"])
            monitor = _monitor(trt, progress)
            config.progress_monitor = monitor

            plan = builder.build_serialized_network(network, config)
            monitor.raise_pending()
            if plan is None or plan.nbytes == 0:
                raise BuildError(
                    f"TensorRT {self.tensorrt_version} built no engine: {logged(errors)}"
                )
            serialized_cache = timing_cache.serialize() if timing_cache is not None else None
            return {
                "plan": bytes(plan),
                "timing_cache": bytes(serialized_cache) if serialized_cache else None,
                "tensorrt_version": self.tensorrt_version,
                "inputs": inputs,
                "outputs": outputs,
                "device": self.target(options["device"]),
            }

    def _configure(self, config: Any, options: dict[str, Any], errors: list[str]) -> None:
        """Any error TensorRT logs while an option is set means it refused the option, even where
        the setter returns nothing (``set_memory_pool_limit``): a BuildOptionError names it."""
        trt = self.tensorrt.module

        @contextlib.contextmanager
        def setting(option: str) -> Iterator[None]:
            before = len(errors)
            yield
            if len(errors) > before:
                raise BuildOptionError(f"TensorRT refused {option}: {logged(errors[before:])}")

        # NvInfer.h (10.x), BuilderFlag::kFP8: "not supported when HardwareCompatibilityLevel::
        # kAMPERE_PLUS is enabled".
        if (
            self.edition == "standard"
            and self.tensorrt_version.split(".")[0] == "10"
            and options["precision"] == "fp8"
            and options["hardware_compatibility"] == "ampere_plus"
        ):
            raise BuildOptionError(
                "precision='fp8' and hardware_compatibility='ampere_plus' cannot be combined in "
                "TensorRT 10: choose another precision, or hardware_compatibility="
                "'same_compute_capability' or None"
            )
        if not self.strongly_typed:
            with setting(f"precision={options['precision']}"):
                for flag in _PRECISION_FLAGS[options["precision"]]:
                    config.set_flag(getattr(trt.BuilderFlag, flag))
        if options["workspace"] is not None:
            workspace = options["workspace"]
            with setting(f"workspace={workspace} bytes"):
                config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
            kept = config.get_memory_pool_limit(trt.MemoryPoolType.WORKSPACE)
            if kept != workspace:
                raise BuildOptionError(
                    f"TensorRT refused workspace={workspace} bytes (it kept a limit of {kept} "
                    "bytes)"
                )
        if options["optimization_level"] is not None:
            with setting(f"optimization_level={options['optimization_level']}"):
                config.builder_optimization_level = options["optimization_level"]
        if options["version_compatible"]:
            with setting("version_compatible"):
                config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
                # A version-compatible plan carries its plugins so a later runtime can load them.
                config.plugins_to_serialize = list(options["plugins"])
        if options["hardware_compatibility"] is not None:
            option = f"hardware_compatibility={options['hardware_compatibility']!r}"
            # SAME_COMPUTE_CAPABILITY first appears in TensorRT 10.9.
            level = getattr(
                trt.HardwareCompatibilityLevel, options["hardware_compatibility"].upper(), None
            )
            if level is None:
                raise BuildOptionError(
                    f"{option} needs TensorRT 10.9 or later; this is TensorRT "
                    f"{self.tensorrt_version}"
                )
            with setting(option):
                config.hardware_compatibility_level = level

    def _attach_timing_cache(self, config: Any, serialized: bytes | None) -> Any:
        """A cache made by another TensorRT version or GPU is replaced by a new one: a stale
        cache slows a build down, it does not fail it."""
        if self.edition == "rtx":  # TensorRT-RTX has none
            return None
        with self.tensorrt.errors.collect():
            if serialized:
                cache = config.create_timing_cache(serialized)
                if cache is not None and config.set_timing_cache(cache, False):
                    return cache
        cache = config.create_timing_cache(b"")
        if cache is None or not config.set_timing_cache(cache, False):
            raise BuildError("TensorRT could not create a timing cache")
        return cache

    def combine_timing_caches(self, caches: Sequence[bytes], device: int) -> bytes:
        trt = self.tensorrt.module
        with self._on_device(device), self.tensorrt.errors.collect():
            config = trt.Builder(self.tensorrt.logger).create_builder_config()
            combined = config.create_timing_cache(b"")
            for serialized in caches:
                cache = config.create_timing_cache(serialized)
                if cache is not None:
                    combined.combine(cache, False)  # a stale cache is left out
            return bytes(combined.serialize())


def _plan_builder(edition: str) -> Callable[[BuildOptions], PlanBuilder]:
    return lambda options: ChildProcessPlanBuilder(functools.partial(PythonPlanBuilder, edition))


def _parse(parser: Any, onnx: bytes, model_dir: str | None, errors: list[str]) -> None:
    # The parser finds external weights beside the model path it is given.
    path = os.path.join(os.path.abspath(model_dir), "model.onnx") if model_dir else None
    if parser.parse(onnx, path):
        return
    entries = []
    lines = ["TensorRT's ONNX parser rejected the model:"]
    for index in range(parser.num_errors):
        error = parser.get_error(index)
        node, name, op_type = int(error.node()), str(error.node_name()), str(error.node_operator())
        where = ""
        if node >= 0:
            where = f"node {node}" + (f" '{name}'" if name else "")
            where += (f" ({op_type})" if op_type else "") + ": "
        lines.append(f"  - {where}{error.desc()}")
        entries.append(
            {
                "message": str(error.desc()),
                "node_name": name,
                "op_type": op_type,
                "node_index": node,
            }
        )
    message = "\n".join(lines) if entries else f"{lines[0]} {logged(errors)}"
    raise BuildError(message, entries)


def _check_precision(trt: Any, network: Any, precision: str) -> None:
    """A strongly typed network takes its types from the model: a reduced precision the model
    does not carry would silently give an fp32 engine, so it is an error instead."""
    if precision == "fp32":
        return
    wanted = getattr(trt.DataType, _PRECISION_TYPES[precision])
    tensors = [network.get_input(i) for i in range(network.num_inputs)]
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        tensors.extend(layer.get_output(j) for j in range(layer.num_outputs))
    if not any(tensor.dtype == wanted for tensor in tensors):
        raise BuildError(
            f"precision {precision} was asked for, but the network has no "
            f"{dtype_name(wanted)} tensor, so the engine would run in fp32: a strongly typed "
            "network takes its types from the ONNX model, so the model must be converted to "
            "that precision before the build"
        )


def _spec(tensor: Any, is_input: bool) -> dict[str, Any]:
    return {
        "name": str(tensor.name),
        "dtype": dtype_name(tensor.dtype),
        "shape": [int(dim) for dim in tensor.shape],
        "is_input": is_input,
    }


def _add_profiles(
    builder: Any,
    config: Any,
    network: Any,
    profiles: list[dict[str, Any]],
    errors: list[str],
) -> None:
    # trtfast.build checked the shapes against the model's inputs; the parsed network can still
    # leave an input dynamic the model had fixed, and only it knows which inputs are shape tensors.
    inputs = {tensor.name: tensor for tensor in map(network.get_input, range(network.num_inputs))}
    covered = set(profiles[0]) if profiles else set()
    for name, tensor in inputs.items():
        if name in covered:
            continue
        if tensor.is_shape_tensor:
            raise BuildError(
                f"input '{name}' is a shape tensor (its values decide shapes)"
                + _shape_tensor_hint(name)
            )
        if -1 in tuple(tensor.shape):
            raise BuildError(
                f"input '{name}' has the dynamic shape {tuple(tensor.shape)}; give "
                "its min, opt and max shapes in an optimization profile"
            )
    for index, ranges in enumerate(profiles):
        profile = builder.create_optimization_profile()
        logged_before = len(errors)
        for name, entry in ranges.items():
            values = isinstance(entry, dict)  # {"values": [min, opt, max]}: a shape tensor's
            if name in inputs and inputs[name].is_shape_tensor != values:
                raise BuildError(
                    f"optimization profile {index}, input '{name}': "
                    + (
                        "values are given, but it is not a shape tensor; give its shapes"
                        if values
                        else "shapes are given, but it is a shape tensor (its values decide "
                        "shapes)" + _shape_tensor_hint(name)
                    )
                )
            if values:
                # Polygraphy's way (backend/trt/profile.py): the range of the values, row-major.
                profile.set_shape_input(name, *entry["values"])
            else:
                profile.set_shape(name, *entry)
        if config.add_optimization_profile(profile) < 0 or len(errors) > logged_before:
            raise BuildError(f"TensorRT refused optimization profile {index}: {logged(errors)}")


def _used_vc_plugin_libraries(parser: Any) -> list[str]:
    # Canonical paths, so no library is listed twice: setPluginsToSerialize needs each once.
    return [os.path.realpath(path) for path in parser.get_used_vc_plugin_libraries()]


def _shape_tensor_hint(name: str) -> str:
    return (
        f"; give the range of its values: shapes={{'{name}': {{'values': (min, opt, max)}}}} "
        f"or --shapes {name}:values=MIN,OPT,MAX"
    )


def _monitor(trt: Any, progress: Progress) -> Any:
    """A TensorRT progress monitor calling ``progress(event, phase, step, total)``. An exception
    from ``progress`` (KeyboardInterrupt included) cancels the build and is raised once
    TensorRT returns, as is BuildError for a build ``progress`` cancelled by returning False."""

    class Monitor(trt.IProgressMonitor):  # type: ignore[misc]
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.lock = threading.Lock()
            self.phases: dict[str, list[int]] = {}  # phase -> [total, done]
            self.cancelled = False
            self.error: BaseException | None = None

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            with self.lock:
                self.phases[phase_name] = [num_steps, 0]
                self._report("start", phase_name, 0, num_steps)

        def step_complete(self, phase_name: str, step: int) -> bool:
            with self.lock:
                state = self.phases.setdefault(phase_name, [0, 0])
                state[1] = step + 1
                self._report("step", phase_name, state[1], state[0])
                return not self.cancelled

        def phase_finish(self, phase_name: str) -> None:
            with self.lock:
                total, done = self.phases.pop(phase_name, [0, 0])
                self._report("end", phase_name, done, total)

        def _report(self, event: str, phase: str, step: int, total: int) -> None:
            if self.cancelled:
                return
            try:
                if not progress(event, phase, step, total):
                    self.cancelled = True
            except BaseException as error:  # re-raised once TensorRT returns
                self.error = error
                self.cancelled = True

        def raise_pending(self) -> None:
            if self.error is not None:
                raise self.error
            if self.cancelled:
                raise BuildError("the build was cancelled by its progress callback")

    return Monitor()
