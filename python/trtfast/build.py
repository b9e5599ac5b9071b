"""``trtfast.build``: an ONNX model in, an engine file out.

Everything around TensorRT's builder lives here: option checks, optimization profiles, precision
(ONNX conversion on TensorRT 11, builder flags before), the timing cache shared between builds
and processes, the engine cache, and progress. Every check runs before the build starts, and
every file is written whole or not at all.
"""

from __future__ import annotations

import ctypes
import glob
import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import re
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, overload

from . import _build_process, _core
from ._choices import HARDWARE_COMPATIBILITY
from ._files import atomic_write
from ._library import package_folder, tensorrt_library
from .errors import (
    BuildError,
    BuildOptionError,
    CacheWarning,
    EngineFormatError,
    TensorRTUnavailableError,
)
from .prepare import (
    PREPARE_MODES,
    Precision,
    PreparedModel,
    PrepareMode,
    load,
    model_inputs,
    normalize_precision,
    parser_input,
    prepare_model,
    require_build_extra,
    require_quantized,
)
from .profiles import Profile, as_options, resolve

if TYPE_CHECKING:
    from .engine_file import EngineInfo
    from .prepare import LoadedModel, ModelSource
    from .profiles import ShapesArgument

PathArgument = str | os.PathLike[str]
# progress(event, phase, step, total): event is "start", "step" or "end"; returning False
# cancels the build.
ProgressCallback = Callable[[str, str, int, int], Any]

OPTIMIZATION_LEVELS = range(6)
# Bumped whenever preparation or option handling changes what an engine built from the same
# request holds, so that the engine cache never returns an engine built the old way.
CACHE_SCHEMA = 2

logger = logging.getLogger("trtfast.build")

_UNITS = {
    "": 1, "b": 1,
    "k": 2**10, "kib": 2**10, "kb": 10**3,
    "m": 2**20, "mib": 2**20, "mb": 10**6,
    "g": 2**30, "gib": 2**30, "gb": 10**9,
    "t": 2**40, "tib": 2**40, "tb": 10**12,
}  # fmt: skip
_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]*)\s*")


def parse_workspace(value: int | str | None) -> int | None:
    """Bytes from an int or a size such as ``"4GiB"``, ``"512MiB"`` or ``"1.5GB"``; K, M, G and
    T alone are binary (KiB, MiB, ...), KB, MB, GB and TB decimal. None leaves TensorRT's
    default (the GPU's memory)."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and (match := _SIZE.fullmatch(value)):
        unit = _UNITS.get(match.group(2).lower())
        if unit is None:
            raise BuildOptionError(
                f"workspace {value!r} has an unknown unit {match.group(2)!r}; use B, KiB, MiB, "
                "GiB, TiB (or KB, MB, GB, TB)"
            )
        size = int(Decimal(match.group(1)) * unit)  # exact, and no float overflow
    else:
        raise BuildOptionError(
            f"workspace must be a number of bytes or a size like '4GiB' or '512MiB', not {value!r}"
        )
    if size < 1:
        raise BuildOptionError(f"workspace must be at least 1 byte, got {value!r}")
    if size > _MAX_WORKSPACE:
        raise BuildOptionError(
            f"workspace {value!r} is more than TensorRT can take ({_MAX_WORKSPACE} bytes, 8 EiB)"
        )
    return size


# TensorRT takes memory-pool limits as a size_t; beyond an int64 no machine has the memory.
_MAX_WORKSPACE = 2**63 - 1
# CUDA numbers devices with an int.
_MAX_DEVICE = 2**31 - 1


@dataclass(frozen=True)
class BuildOptions:
    """The checked, normalized options of one build."""

    precision: Precision
    workspace: int | None
    optimization_level: int | None
    version_compatible: bool
    hardware_compatibility: str | None
    plugins: tuple[str, ...]
    device: int
    prepare: PrepareMode = "auto"

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable; what an engine file records as its build options."""
        return {
            "precision": self.precision,
            "workspace": self.workspace,
            "optimization_level": self.optimization_level,
            "version_compatible": self.version_compatible,
            "hardware_compatibility": self.hardware_compatibility,
            "plugins": list(self.plugins),
        }


def check_options(
    *,
    precision: str | None = None,
    workspace: int | str | None = None,
    optimization_level: int | None = None,
    version_compatible: bool = False,
    hardware_compatibility: str | None = None,
    plugins: Sequence[PathArgument] = (),
    device: int = 0,
    prepare: str = "auto",
) -> BuildOptions:
    """Validate and normalize build options; BuildOptionError names the option and the rule."""
    if prepare not in PREPARE_MODES:
        raise BuildOptionError(f"prepare must be 'auto', 'always' or 'never', not {prepare!r}")
    if optimization_level is not None and (
        not isinstance(optimization_level, int)
        or isinstance(optimization_level, bool)
        or optimization_level not in OPTIMIZATION_LEVELS
    ):
        raise BuildOptionError(
            f"optimization_level must be an int from 0 to 5, not {optimization_level!r}"
        )
    if not isinstance(version_compatible, bool):
        raise BuildOptionError(
            f"version_compatible must be True or False, not {version_compatible!r}"
        )
    hardware = hardware_compatibility
    if isinstance(hardware, str):
        hardware = hardware.lower().replace("-", "_")
        hardware = None if hardware == "none" else hardware
    if hardware is not None and hardware not in HARDWARE_COMPATIBILITY:
        raise BuildOptionError(
            "hardware_compatibility must be None, 'ampere_plus' or 'same_compute_capability', "
            f"not {hardware_compatibility!r}"
        )
    if isinstance(plugins, (str, bytes, os.PathLike)) or not isinstance(plugins, Sequence):
        raise BuildOptionError(f"plugins must be a list of library paths, not {plugins!r}")
    plugin_paths = []
    for plugin in plugins:
        path = Path(plugin)
        if not path.is_file():
            raise BuildOptionError(f"plugin library {os.fspath(plugin)!r} does not exist")
        plugin_paths.append(str(path.resolve()))
    if not isinstance(device, int) or isinstance(device, bool) or not 0 <= device <= _MAX_DEVICE:
        raise BuildOptionError(
            f"device must be a GPU index (an int from 0 to {_MAX_DEVICE}), not {device!r}"
        )
    return BuildOptions(
        precision=normalize_precision(precision),
        workspace=parse_workspace(workspace),
        optimization_level=optimization_level,
        version_compatible=version_compatible,
        hardware_compatibility=hardware,
        plugins=tuple(plugin_paths),
        device=device,
        prepare=prepare,
    )


def cache_key(
    model_sha256: str,
    options: BuildOptions,
    shape_profiles: Sequence[Profile],
    tensorrt_version: str,
    target: dict[str, Any],
    edition: str = "standard",
    library: dict[str, Any] | None = None,
) -> str:
    """Engine-cache key: equal exactly when the model, the options, the TensorRT edition,
    version and library (ONNX parser version, CUDA major of the TensorRT build), what the engine
    is specific to of the GPU (``target_key``), the host platform, the trtfast version and
    ``CACHE_SCHEMA`` are. The plugins' contents count, not only their paths. The device index
    and the timing cache do not: they change neither what the engine computes nor where it
    runs."""
    material = {
        "schema": CACHE_SCHEMA,
        "trtfast": _core.build_info()["version"],
        "model": model_sha256,
        "options": {
            **options.as_dict(),
            "plugins": [_file_sha256(p) for p in options.plugins],
            # Preparation can change the network an engine holds.
            "prepare": options.prepare,
        },
        "profiles": as_options(shape_profiles),
        "tensorrt": tensorrt_version,
        "edition": edition,
        "library": library or {},
        "target": target_key(target, options.hardware_compatibility),
        "platform": platform.machine(),
    }
    text = json.dumps(material, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def target_key(target: dict[str, Any], hardware_compatibility: str | None) -> dict[str, Any]:
    """What of the GPU an engine is specific to. Without hardware compatibility that is the GPU
    model: its name, compute capability, number of SMs (MIG slices of one GPU differ) and memory
    (TensorRT's default workspace); "same_compute_capability" promises the compute capability,
    "ampere_plus" every GPU from Ampere on. {} for an engine tied to no GPU (TensorRT-RTX)."""
    if not target:
        return {}
    if hardware_compatibility == "ampere_plus":
        return {}
    if hardware_compatibility == "same_compute_capability":
        return {"compute_capability": list(target["compute_capability"])}
    return {key: target[key] for key in _GPU_MODEL}


_GPU_MODEL = ("name", "compute_capability", "multiprocessors", "total_memory")


def _file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# Files written whole or not at all


class TimingCacheFile:
    """A TensorRT timing cache on disk, shared by builds in several processes.

    Saving holds a lock file beside the cache, merges what other builds wrote since this one
    loaded, then replaces the file atomically. Loading needs no lock: the file is only ever
    replaced whole. Both raise OSError where the file cannot be read or written. Creating one
    raises ImportError when filelock is missing, so that a build is refused before it starts.
    """

    def __init__(self, path: PathArgument) -> None:
        self.path = Path(path)
        self.filelock = _filelock()

    @property
    def lock_path(self) -> Path:
        # The real path: two builds reaching one cache through different names (a symbolic
        # link) must exclude each other. Resolved when saving, since the link may change.
        real = Path(os.path.realpath(self.path))
        return real.with_name(real.name + ".lock")

    def _lock(self) -> Any:
        return self.filelock.FileLock(str(self.lock_path))

    def load(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None

    def save(
        self,
        cache: bytes,
        loaded: bytes | None,
        merge: Callable[[bytes, bytes], bytes] | None,
    ) -> None:
        """Store ``cache`` (what a build started from ``loaded`` produced). When another build
        saved in between, ``merge(theirs, ours)`` combines both; without a merge, ours wins."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock():
            current = self.path.read_bytes() if self.path.exists() else None
            if current is not None and current != loaded and current != cache:
                if merge is not None:
                    cache = merge(current, cache)
                else:
                    logger.info("timing cache %s changed during the build; replaced", self.path)
            atomic_write(self.path, cache)


def _filelock() -> Any:
    try:
        import filelock
    except ImportError as error:
        raise ImportError(
            f"sharing a timing cache needs filelock ({error}): pip install 'trtfast[build]'"
        ) from error
    return filelock


# ---------------------------------------------------------------------------------------------
# Progress


class _Progress:
    """Routes progress events to a tqdm bar per phase, to the caller's callable, or nowhere."""

    def __init__(self, progress: bool | ProgressCallback | str) -> None:
        self.callback: ProgressCallback | None = None
        self.bars: dict[str, Any] = {}
        self.tqdm: Any = None
        if progress == "auto":
            # Bars only where someone watches: not in logs, pipes and CI output.
            progress = _is_terminal(sys.stderr)
        if callable(progress):
            self.callback = progress
        elif progress is True:
            try:
                from tqdm import tqdm
            except ImportError as error:
                raise ImportError(
                    f"progress bars need tqdm ({error}): pip install 'trtfast[build]', "
                    "or pass progress=False"
                ) from error
            self.tqdm = tqdm
        elif progress is not False:
            raise BuildOptionError(
                f"progress must be 'auto', True, False or a callable, not {progress!r}"
            )

    def __call__(self, event: str, phase: str, step: int, total: int) -> bool:
        if self.callback is not None:
            return self.callback(event, phase, step, total) is not False
        if self.tqdm is not None:
            self._draw(event, phase, step, total)
        return True

    def _draw(self, event: str, phase: str, step: int, total: int) -> None:
        if event == "start":
            self.bars[phase] = self.tqdm(
                total=total or None,
                desc=phase,
                position=len(self.bars),
                leave=not self.bars,
                file=sys.stderr,
                unit="step",
                dynamic_ncols=True,
            )
        elif phase in self.bars:
            bar = self.bars[phase]
            bar.update(max(step - bar.n, 0))
            if event == "end":
                bar.close()
                del self.bars[phase]

    def step(self, phase: str, step: int, total: int) -> None:
        """A step of trtfast's own work; a False from the caller's callable cancels."""
        event = "start" if step == 0 else "end" if step == total else "step"
        if not self(event, phase, step, total):
            raise BuildError(f"build cancelled by the progress callback during {phase!r}")

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()


def _is_terminal(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty()) if callable(isatty) else False


_PHASE = "trtfast build"
_STEPS = 3  # prepare the model, build the plan, write the engine


# ---------------------------------------------------------------------------------------------
# The TensorRT step


class PlanBuilder(Protocol):
    """The one step of a build that runs TensorRT: ONNX bytes in, a serialized plan out.

    trtfast's C++ core is one (``trtfast.build``), TensorRT's Python API another
    (``trtfast.reference.build``); everything around the step is shared.
    """

    #: the TensorRT edition the plans are for: "standard" or "rtx"
    edition: str
    #: the version of the TensorRT library that builds, such as "11.4.0"
    tensorrt_version: str
    #: networks take their types from the model, so reduced precision converts the model
    strongly_typed: bool

    #: what of the TensorRT library changes a plan beyond its version: {"parser": the ONNX
    #: parser's version, "cuda_major": the CUDA major the library was built for}, None where
    #: not known
    library: dict[str, Any]

    def target(self, device: int) -> dict[str, Any]:
        """The GPU an engine built for ``device`` is for, as ``gpu_identity`` describes it; {}
        for an engine that is not tied to one GPU."""
        ...

    def build_plan(
        self, onnx: bytes, options: dict[str, Any], progress: Callable[[str, str, int, int], bool]
    ) -> dict[str, Any]:
        """``_core.build_plan``'s contract: options and the result as that function takes and
        returns them, plus "device": ``target(options["device"])`` as seen where the plan was
        built."""
        ...

    def combine_timing_caches(self, caches: Sequence[bytes], device: int) -> bytes:
        """One timing cache holding the entries of all ``caches``."""
        ...


class ChildProcessPlanBuilder:
    """A PlanBuilder whose TensorRT step runs in a child process (see ``_build_process``): Ctrl-C
    stops a build at once, and a crash inside TensorRT is a BuildError, not the caller's end.

    ``make`` creates the builder, here for what the build asks first and in the child for the
    step; it must pickle (a module-level function or a ``functools.partial`` of one).
    """

    def __init__(self, make: Callable[[], PlanBuilder]) -> None:
        self.make = make
        self.local = make()
        self.edition = self.local.edition
        self.tensorrt_version = self.local.tensorrt_version
        self.strongly_typed = self.local.strongly_typed
        self.library = self.local.library

    def target(self, device: int) -> dict[str, Any]:
        return self.local.target(device)

    def build_plan(
        self, onnx: bytes, options: dict[str, Any], progress: Callable[[str, str, int, int], bool]
    ) -> dict[str, Any]:
        return _build_process.build_plan(self.make, onnx, options, progress)

    def combine_timing_caches(self, caches: Sequence[bytes], device: int) -> bytes:
        return _build_process.combine_timing_caches(self.make, caches, device)


class _CorePlanBuilder:
    """TensorRT through trtfast's C++ core, in this process."""

    edition = "standard"

    def __init__(self, library: Any) -> None:
        self.tensorrt_version = str(library.version)
        self.strongly_typed = int(self.tensorrt_version.split(".")[0]) >= 11
        self.library = library_identity(os.path.dirname(str(library.path)), "tensorrt_libs")
        self.loaded = library

    def target(self, device: int) -> dict[str, Any]:
        return gpu_identity(device)

    def build_plan(
        self, onnx: bytes, options: dict[str, Any], progress: Callable[[str, str, int, int], bool]
    ) -> dict[str, Any]:
        result = dict(_core.build_plan(self.loaded, onnx, options, progress))
        return {**result, "device": self.target(options["device"])}

    def combine_timing_caches(self, caches: Sequence[bytes], device: int) -> bytes:
        return bytes(_core.combine_timing_caches(self.loaded, list(caches), device))


def _core_builder_here() -> PlanBuilder:
    return _CorePlanBuilder(_full_library())


def _core_plan_builder(options: BuildOptions) -> PlanBuilder:
    return ChildProcessPlanBuilder(_core_builder_here)


# ---------------------------------------------------------------------------------------------
# build


@overload
def build(
    model: ModelSource,
    *,
    output: None = None,
    precision: str | None = None,
    shapes: ShapesArgument | None = None,
    workspace: int | str | None = None,
    timing_cache: PathArgument | None = None,
    cache_dir: None = None,
    optimization_level: int | None = None,
    version_compatible: bool = False,
    hardware_compatibility: str | None = None,
    plugins: Sequence[PathArgument] = (),
    progress: bool | ProgressCallback | str = "auto",
    device: int = 0,
    prepare: str = "auto",
) -> bytes: ...


@overload
def build(
    model: ModelSource,
    *,
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
) -> EngineInfo: ...


def build(
    model: ModelSource,
    *,
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
    """Build a TensorRT engine from an ONNX model. Returns the engine file's EngineInfo, whose
    ``path`` is where the engine is (``output``, else its place in ``cache_dir``); with neither
    ``output`` nor ``cache_dir``, returns the engine file's bytes (``Engine.load`` takes them).

    model: a path to an .onnx file (external weights beside it are found), the model's bytes,
        or an ``onnx.ModelProto``.
    output: the engine file to write.
    precision: "fp32" (default), "fp16", "bf16", "int8" or "fp8". On TensorRT 11 fp16 and bf16
        convert the model (inputs and outputs keep their types); int8 and fp8 need a quantized
        (Q/DQ) model.
    shapes: optimization profile(s): ``{input: (min, opt, max)}`` or a list of such dicts.
        Static inputs need none; symbolic dimensions shared with a given input are derived.
    workspace: the builder's workspace limit, in bytes or as a size like "4GiB".
    timing_cache: a timing-cache file, loaded before and merged after the build (safe to share
        between concurrent builds; needs filelock).
    cache_dir: engine cache: a build with the same model, options, trtfast and TensorRT
        library, and GPU model (or what ``hardware_compatibility`` promises) reuses the engine
        stored there, once its header has been checked against the request.
    optimization_level: TensorRT's builder optimization level, 0 to 5.
    version_compatible: build an engine later TensorRT versions can run.
    hardware_compatibility: None, "ampere_plus" or "same_compute_capability".
    plugins: plugin libraries to load for the build.
    progress: "auto" (default) for a progress bar on stderr when stderr is a terminal, True for
        one always, False for none, or a callable taking (event, phase, step, total) that may
        return False to cancel.
    device: the GPU to build for.
    prepare: "auto" (default) builds the model as given and, when TensorRT's ONNX parser
        refuses it, prepares it (``trtfast.prepare``: opset conversion, constant folding,
        shape inference) and tries again, saying so in the log; "always" prepares first;
        "never" builds only the model as given. The engine's build options record what
        preparation did under "prepare".

    TensorRT's step runs in a child process: Ctrl-C raises KeyboardInterrupt at once with
    nothing written, and a crash inside TensorRT is a BuildError.
    """
    return build_with(
        _core_plan_builder,
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


def build_with(
    plan_builder: Callable[[BuildOptions], PlanBuilder],
    model: ModelSource,
    *,
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
    """:func:`build` with the TensorRT step made by ``plan_builder(options)``, called once every
    option and the model have been checked."""
    require_build_extra()
    options = check_options(
        precision=precision,
        workspace=workspace,
        optimization_level=optimization_level,
        version_compatible=version_compatible,
        hardware_compatibility=hardware_compatibility,
        plugins=plugins,
        device=device,
        prepare=prepare,
    )
    output_path = _output_path(output)
    if output_path is not None and isinstance(model, (str, os.PathLike)):
        refuse_overwriting(model, output_path, "the model being built")
    cache_folder = _folder_option(cache_dir, "cache_dir")
    timing = None if timing_cache is None else _timing_cache_option(timing_cache)
    reporter = _Progress(progress)

    loaded = load(model)
    shape_profiles = resolve(shapes, model_inputs(loaded.proto))
    require_quantized(loaded.proto, options.precision)

    builder = plan_builder(options)
    target = builder.target(options.device)
    strongly_typed = builder.strongly_typed

    try:
        # Imported when a build runs, so the rest of this module works without it.
        from .engine_file import encode, read_info, write

        request = _Request(loaded.sha256, options, strongly_typed, shape_profiles, builder, target)
        cached = None
        if cache_folder is not None:
            cached = cache_folder / f"{request.cache_key()}.engine"
            hit = _cache_lookup(cached, request)
            if hit is not None:
                info, plan = hit
                if output_path is not None:
                    write(output_path, info, plan)
                    return replace(info, path=str(output_path))
                return info

        reporter.step(_PHASE, 0, _STEPS)
        loaded_cache = _load_timing_cache(timing) if timing is not None else None

        def build_plan(prepared: PreparedModel | None) -> dict[str, Any]:
            source = (
                # In "auto" the model as given is prepared if the parser refuses it.
                parser_input(loaded, options.precision, strongly_typed, options.prepare == "auto")
                if prepared is None
                else prepared.parser_input(options.precision, strongly_typed)
            )
            with source as (onnx, folder):
                reporter.step(_PHASE, 1, _STEPS)
                return builder.build_plan(
                    onnx,
                    {
                        **options.as_dict(),
                        "strongly_typed": strongly_typed,
                        "profiles": as_options(shape_profiles),
                        "timing_cache": loaded_cache,
                        "device": options.device,
                        "model_dir": folder,
                    },
                    reporter,
                )

        result, preparation = _build_preparing(
            loaded, options, builder.tensorrt_version, build_plan
        )
        reporter.step(_PHASE, 2, _STEPS)
        info = _engine_info(result, request, preparation)
        if cached is not None and (moved := request.target_differs(info)):
            _cache_warning(
                f"the build process built for {moved}, not for the GPU this process sees "
                "(CUDA_VISIBLE_DEVICES differs?); the engine is returned without being cached"
            )
            cached = None
        plan = bytes(result["plan"])
        # The engine first: a timing cache that cannot be saved costs a warning, never the
        # engine already built.
        written = []
        if output_path is not None:
            write(output_path, info, plan)
            written.append(output_path)
        if cached is not None and _store_in_cache(cached, info, plan):
            written.append(cached)
        if timing is not None and result.get("timing_cache"):
            _save_timing_cache(
                timing,
                bytes(result["timing_cache"]),
                loaded_cache,
                lambda theirs, ours: builder.combine_timing_caches([theirs, ours], options.device),
            )
        reporter.step(_PHASE, 3, _STEPS)
        if output_path is None and cache_folder is None:
            return encode(info, plan)
        # The engine as its file describes it (the output, where one was asked for, is first);
        # read from memory when the engine cache could not be written.
        return read_info(written[0] if written else encode(info, plan))
    finally:
        reporter.close()


def _build_preparing(
    loaded: LoadedModel,
    options: BuildOptions,
    tensorrt_version: str,
    build_plan: Callable[[PreparedModel | None], dict[str, Any]],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Build as ``options.prepare`` says; returns the build's result and what the engine
    file records of preparation."""
    mode = options.prepare
    if mode == "always":
        prepared = prepare_model(loaded, tensorrt_version=tensorrt_version)
        return build_plan(prepared), _prepared_record(mode, "prepare='always'", prepared)
    try:
        return build_plan(None), {"mode": mode, "applied": False}
    except BuildError as error:
        # Only the parser's refusals are preparation's to address; a failing build is not.
        if not error.parser_errors:
            raise
        if mode == "never":
            raise BuildError(
                f"{error} (preparing the model may fix this: prepare='auto', or "
                "`trtfast prepare` to see what it changes)",
                error.parser_errors,
            ) from error
        refusal = _first_parser_error(error)
        try:
            prepared = prepare_model(loaded, tensorrt_version=tensorrt_version)
        except Exception as failure:
            raise BuildError(
                f"{error} (preparing the model failed: {failure})", error.parser_errors
            ) from failure
        if not prepared.report.changed:
            raise
        logger.warning(
            "TensorRT's ONNX parser refused the model as given (%s); building it prepared: %s",
            refusal,
            prepared.report.summary(),
        )
        reason = f"the parser refused the model as given: {refusal}"
        return build_plan(prepared), _prepared_record(mode, reason, prepared)


def _prepared_record(mode: str, reason: str, prepared: PreparedModel) -> dict[str, Any]:
    return {"mode": mode, "applied": True, "reason": reason, **prepared.report.to_json()}


def _first_parser_error(error: BuildError) -> str:
    entry = error.parser_errors[0]
    where = f"node {entry.get('node_index')} {entry.get('node_name')!r} ({entry.get('op_type')})"
    return f"{where}: {entry.get('message')}"


def _output_path(output: PathArgument | None) -> Path | None:
    if output is None:
        return None
    if not isinstance(output, (str, os.PathLike)):
        raise BuildOptionError(f"output must be a file path, not {output!r}")
    path = Path(output)
    if path.is_dir():
        raise BuildOptionError(f"output {str(path)!r} is a folder; name the engine file to write")
    if not path.parent.is_dir():
        raise BuildOptionError(f"the folder of output {str(path)!r} does not exist")
    return path


def refuse_overwriting(source: PathArgument, output: PathArgument, what: str) -> None:
    """BuildOptionError when ``output`` names the file ``source`` (through any link or name):
    writing it would destroy the input it is made from."""
    try:
        same = os.path.samefile(source, output)
    except OSError:  # one of them does not exist: nothing to overwrite
        return
    if same:
        raise BuildOptionError(
            f"output {os.fspath(output)!r} is {what} ({os.fspath(source)!r}); name another file"
        )


def _folder_option(value: PathArgument | None, option: str) -> Path | None:
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise BuildOptionError(f"{option} must be a folder path, not {value!r}")
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise BuildOptionError(f"{option} {str(path)!r} exists and is not a folder")
    return path


def _timing_cache_option(value: PathArgument) -> TimingCacheFile:
    if not isinstance(value, (str, os.PathLike)):
        raise BuildOptionError(f"timing_cache must be a file path, not {value!r}")
    if Path(value).is_dir():
        raise BuildOptionError(f"timing_cache {os.fspath(value)!r} is a folder; name a file")
    return TimingCacheFile(value)


def _full_library() -> Any:
    library = tensorrt_library()
    if library.kind != "full":
        raise TensorRTUnavailableError(
            f"building engines needs the full TensorRT library, but only the {library.kind} "
            f"runtime was found ({library.path}): pip install tensorrt-cu13 (or tensorrt-cu12)"
        )
    return library


def gpu_identity(device: int) -> dict[str, Any]:
    """GPU ``device`` as an engine file records the GPU it was built on (``describe_gpu``)."""
    from .engine import describe_gpu

    return describe_gpu(_gpu(device))


def library_identity(folder: str, package: str) -> dict[str, Any]:
    """What of the TensorRT library in ``folder`` changes the plans it builds beyond its
    version: the version of the ONNX parser beside it, and the CUDA major of its build (the
    cu12 and cu13 wheels of one TensorRT version), read from the name of the pip distribution
    that ships ``package`` when ``folder`` is that package's. None for what cannot be known (a
    library installed outside pip)."""
    parser = None
    pattern = os.path.join(glob.escape(folder), "lib*onnxparser*.so*")
    for path in sorted(glob.glob(pattern)) if folder else []:
        try:
            parser = int(ctypes.CDLL(path).getNvOnnxParserVersion())
            break
        except (OSError, AttributeError):
            continue
    cuda_major = None
    if folder and os.path.realpath(folder) == os.path.realpath(package_folder(package) or "/"):
        for distribution in importlib.metadata.packages_distributions().get(package, []):
            if match := re.search(r"cu(\d+)", distribution):
                cuda_major = int(match.group(1))
    return {"parser": parser, "cuda_major": cuda_major}


def _gpu(device: int) -> dict[str, Any]:
    gpus = list(_core.cuda.devices()) if _core.cuda.device_count() > 0 else []
    if device >= len(gpus):
        reason = _core.cuda.unavailable_reason() or f"this machine has {len(gpus)} GPU(s)"
        raise TensorRTUnavailableError(f"cannot build for GPU {device}: {reason}")
    return dict(gpus[device])


class _Request:
    """What a build is asked for, as far as it decides the engine: the engine cache's key, and
    what a cache entry's header must say to be returned for it."""

    def __init__(
        self,
        model_sha256: str,
        options: BuildOptions,
        strongly_typed: bool,
        shape_profiles: Sequence[Profile],
        builder: PlanBuilder,
        target: dict[str, Any],
    ) -> None:
        self.model_sha256 = model_sha256
        self.options = options
        self.shape_profiles = shape_profiles
        self.tensorrt_version = builder.tensorrt_version
        self.edition = builder.edition
        self.library = builder.library
        self.target = target
        self.build_options = {
            **options.as_dict(),
            "strongly_typed": strongly_typed,
            "profiles": as_options(shape_profiles),
        }

    def environment(self, built_on: dict[str, Any]) -> dict[str, Any]:
        return {
            "gpu": built_on,
            "library": self.library,
            "trtfast": _core.build_info()["version"],
            "cache_schema": CACHE_SCHEMA,
        }

    def cache_key(self) -> str:
        return cache_key(
            self.model_sha256,
            self.options,
            self.shape_profiles,
            self.tensorrt_version,
            self.target,
            self.edition,
            {**self.library, **_preparation_tools(self.options.prepare)},
        )

    def target_differs(self, info: EngineInfo) -> str:
        """The GPU ``info`` was built on, where the engine it holds is not for this request's
        target; "" where it is."""
        hardware = self.options.hardware_compatibility
        built_on = info.environment.get("gpu", {})
        if target_key(built_on, hardware) == target_key(self.target, hardware):
            return ""
        return _describe_gpu(built_on)

    def mismatches(self, info: EngineInfo) -> list[str]:
        """How a cache entry's header differs from this request; [] when it fits."""
        found = []
        expected = {
            "model_sha256": self.model_sha256,
            "tensorrt_version": self.tensorrt_version,
            "edition": self.edition,
            "library": self.library,
            "trtfast": _core.build_info()["version"],
        }
        have = {
            "model_sha256": info.model_sha256,
            "tensorrt_version": info.tensorrt_version,
            "edition": info.edition,
            "library": info.environment.get("library"),
            "trtfast": info.environment.get("trtfast"),
        }
        for name, value in expected.items():
            if have[name] != value:
                found.append(f"{name} {have[name]!r}, not {value!r}")
        if moved := self.target_differs(info):
            found.append(f"built for {moved}, not {_describe_gpu(self.target)}")
        recorded = {name: info.build_options.get(name) for name in self.build_options}
        recorded_prepare = info.build_options.get("prepare")
        if recorded != self.build_options or (
            not isinstance(recorded_prepare, dict)
            or recorded_prepare.get("mode") != self.options.prepare
        ):
            found.append("other build options")
        return found


def _describe_gpu(gpu: dict[str, Any]) -> str:
    if not gpu:
        return "no GPU in particular"
    major, minor = gpu.get("compute_capability", (0, 0))
    return (
        f"{gpu.get('name')} (compute capability {major}.{minor}, {gpu.get('multiprocessors')} "
        f"SMs, {gpu.get('total_memory')} bytes, {gpu.get('platform')})"
    )


def _preparation_tools(prepare: str) -> dict[str, Any]:
    """The versions of what preparation runs (its output depends on them); {} when the model is
    never prepared."""
    if prepare == "never":
        return {}
    tools: dict[str, str | None] = {}
    for name in ("onnx", "onnx-graphsurgeon", "onnxruntime"):
        try:
            tools[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            tools[name] = None
    return tools


def _cache_lookup(path: Path, request: _Request) -> tuple[EngineInfo, bytes] | None:
    from .engine_file import read

    if not path.is_file():
        return None
    try:
        info, plan = read(path)
    except (EngineFormatError, OSError) as error:
        logger.warning("ignoring unreadable engine cache entry %s: %s", path, error)
        return None
    mismatches = request.mismatches(info)
    if mismatches:
        # A file copied over an entry, or a key that missed something: rebuilt, not returned.
        _cache_warning(
            f"the engine cache entry {str(path)!r} does not match this build ("
            + "; ".join(mismatches)
            + "); building again",
            stacklevel=5,
        )
        return None
    return info, bytes(plan)


# The engine cache and the timing cache only save time: one that cannot be read or written
# (read-only or full disk, a file where a folder should be) costs a warning, never the build.


def _store_in_cache(path: Path, info: EngineInfo, plan: bytes) -> bool:
    from .engine_file import write

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(path, info, plan)
    except Exception as error:  # the cache only saves time: the build result is returned
        _cache_warning(
            f"cannot store the engine in the engine cache {str(path.parent)!r}: {error}. "
            "The build result is returned without being cached."
        )
        return False
    return True


def _load_timing_cache(timing: TimingCacheFile) -> bytes | None:
    try:
        return timing.load()
    except OSError as error:
        _cache_warning(f"cannot read the timing cache: {error}. Building without it.")
        return None


def _save_timing_cache(
    timing: TimingCacheFile,
    cache: bytes,
    loaded: bytes | None,
    merge: Callable[[bytes, bytes], bytes],
) -> None:
    try:
        timing.save(cache, loaded, merge)
    # A lock, a merge or a file system failing: the cache only saves time.
    except Exception as error:
        _cache_warning(
            f"cannot save the timing cache {str(timing.path)!r}: {error}. This build's timings "
            "are not kept."
        )


def _cache_warning(message: str, stacklevel: int = 4) -> None:
    # stacklevel 4: the caller of build(), through build() and the helper that failed.
    warnings.warn(message, CacheWarning, stacklevel=stacklevel)


def _engine_info(
    result: dict[str, Any], request: _Request, preparation: dict[str, Any]
) -> EngineInfo:
    from .engine_file import EngineInfo, TensorSpec

    def spec(tensor: dict[str, Any], is_input: bool) -> TensorSpec:
        shape = tuple(int(dim) for dim in tensor["shape"])
        ranges: tuple[tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]], ...] = ()
        if is_input:
            # A shape tensor's own shape is fixed; its value ranges live in the plan.
            ranges = tuple(
                entry if isinstance(entry, tuple) else (shape, shape, shape)
                for profile in (request.shape_profiles or [{}])
                for entry in [profile.get(tensor["name"], (shape, shape, shape))]
            )
        return TensorSpec(
            name=str(tensor["name"]),
            dtype=str(tensor["dtype"]),
            shape=shape,
            is_input=is_input,
            profiles=ranges,
        )

    # The GPU the build process saw, which the header records: not this process's view.
    built_on: dict[str, Any] = result["device"]
    return EngineInfo(
        format_version=0,
        tensorrt_version=str(result["tensorrt_version"]),
        edition=request.edition,
        gpu_name=str(built_on.get("name", "")),
        compute_capability=tuple(built_on.get("compute_capability", (0, 0))),
        inputs=tuple(spec(tensor, True) for tensor in result["inputs"]),
        outputs=tuple(spec(tensor, False) for tensor in result["outputs"]),
        build_options={**request.build_options, "prepare": preparation},
        model_sha256=request.model_sha256,
        plan_sha256="",
        plan_size=0,
        raw_plan=False,
        # Version-compatible plans carry the lean runtime and the plugins given.
        host_code=request.options.version_compatible,
        environment=request.environment(built_on),
    )
