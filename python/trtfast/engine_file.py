"""trtfast's engine files: a checked header (TensorRT version and edition, GPU, IO signature,
build options, hashes) in front of a TensorRT plan.

The C++ core frames and checksums the file (``trtfast/engine_file.hpp`` documents the layout);
this module turns the header into :class:`EngineInfo` and validates the IO signature and build
options it carries as JSON. Bare TensorRT plans (trtexec, TensorRT's Python API) are read too,
with ``raw_plan=True`` and the fields a plan does not record left empty. Every problem with a
file's contents raises :class:`trtfast.EngineFormatError`; a file that cannot be opened raises
the usual ``OSError``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from . import _core
from ._files import atomic_write
from .errors import EngineFormatError

_native = _core.engine_file

#: The engine format version this trtfast writes and reads.
FORMAT_VERSION: int = int(_native.FORMAT_VERSION)

#: Tensor dtypes, as numpy (and ml_dtypes) name them; one per TensorRT DataType.
DTYPES = frozenset(
    {
        "float32",
        "float16",
        "bfloat16",
        "int8",
        "uint8",
        "int32",
        "int64",
        "bool",
        "float8_e4m3fn",
        "float8_e8m0fnu",
        "float4_e2m1fn",
        "int4",
    }
)

#: TensorRT editions an engine can be built with.
EDITIONS = ("standard", "rtx")

Shape = tuple[int, ...]
Profile = tuple[Shape, Shape, Shape]
Source = str | os.PathLike[str] | bytes

_MEMORY_NAME = "engine data"


def _shape(value: Any, what: str) -> Shape:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(f"{what} must be a sequence of ints, not {type(value).__name__}")
    shape = tuple(value)
    for dim in shape:
        if isinstance(dim, bool) or not isinstance(dim, int):
            raise TypeError(f"{what} must hold ints, not {type(dim).__name__} ({dim!r})")
    return shape


#: How deeply build options may nest: far beyond any real option, and shallow enough that
#: copying, comparing and writing them never exhausts Python's recursion limit.
MAX_JSON_DEPTH = 32


def _check_json(value: Any, where: str, depth: int = 0) -> None:
    """Only values that survive a JSON round trip unchanged (tuples read back as lists)."""
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"{where} nests deeper than {MAX_JSON_DEPTH} levels")
    if value is None or isinstance(value, (bool, int)):
        return
    if isinstance(value, str):
        _check_text(value, where)
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where} is {value}, which JSON cannot hold")
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_json(item, f"{where}[{index}]", depth + 1)
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where} has the key {key!r}; JSON keys must be str")
            _check_text(key, f"{where} key")
            _check_json(item, f"{where}[{key!r}]", depth + 1)
        return
    raise ValueError(f"{where} is a {type(value).__name__}, which JSON cannot hold")


def _check_text(value: str, where: str) -> None:
    # A lone surrogate (JSON's "\ud800") is a str that no UTF-8 file can hold.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{where} {value!r} is not valid Unicode text") from None


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of an engine. Sequences given for shapes are stored as tuples."""

    name: str
    #: numpy dtype name: "float32", "float16", "bfloat16", "int8", ... (see DTYPES)
    dtype: str
    #: -1 for a dynamic dimension
    shape: Shape
    is_input: bool
    #: per optimization profile: (min, opt, max) shapes; empty for outputs
    profiles: tuple[Profile, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a tensor name must be a non-empty str, not {self.name!r}")
        _check_text(self.name, "the tensor name")
        if self.dtype not in DTYPES:
            raise ValueError(
                f"tensor {self.name!r}: dtype {self.dtype!r} is not one of {sorted(DTYPES)}"
            )
        if not isinstance(self.is_input, bool):
            raise TypeError(f"tensor {self.name!r}: is_input must be a bool")
        shape = _shape(self.shape, f"tensor {self.name!r}: shape")
        if any(dim < -1 for dim in shape):
            raise ValueError(
                f"tensor {self.name!r}: shape {shape} has a dimension below -1 "
                "(-1 marks a dynamic one)"
            )
        profiles = tuple(self._profile(index, p) for index, p in enumerate(self.profiles))
        if profiles and not self.is_input:
            raise ValueError(f"output {self.name!r} has profiles; only inputs have them")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "profiles", profiles)

    def _profile(self, index: int, profile: Any) -> Profile:
        what = f"tensor {self.name!r}: profile {index}"
        if isinstance(profile, (str, bytes)) or not isinstance(profile, Iterable):
            raise TypeError(f"{what} must be (min, opt, max) shapes")
        shapes = tuple(_shape(s, f"{what} shape") for s in profile)
        if len(shapes) != 3:
            raise ValueError(f"{what} must be (min, opt, max) shapes, not {len(shapes)} shapes")
        low, opt, high = shapes
        if not len(low) == len(opt) == len(high):
            raise ValueError(f"{what}: min {low}, opt {opt} and max {high} differ in length")
        if not all(0 <= a <= b <= c for a, b, c in zip(low, opt, high, strict=True)):
            raise ValueError(f"{what}: needs 0 <= min <= opt <= max, got {low}, {opt}, {high}")
        return low, opt, high


@dataclass(frozen=True)
class EngineInfo:
    """What an engine file says about its plan. Fields a raw plan does not record are empty:
    "" for strings, (0, 0) for the compute capability, () for the IO signature, {} for the
    build options."""

    format_version: int
    #: "11.4.0"; for a raw plan read from the plan's own header, "" when it has none
    tensorrt_version: str
    #: "standard" or "rtx"; "" when unknown (a bare plan tagged 'ftrt'; TensorRT-RTX plans say so)
    edition: str
    gpu_name: str
    compute_capability: tuple[int, int]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    #: JSON values only; stored as read back from JSON (tuples become lists)
    build_options: dict[str, Any]
    model_sha256: str
    plan_sha256: str
    plan_size: int
    #: a bare TensorRT plan (no trtfast header)
    raw_plan: bool
    #: the plan embeds host code (version-compatible engine, plugins)
    host_code: bool
    #: the file this was read from; None for an engine read from bytes. Not part of the engine.
    path: str | None = field(default=None, compare=False)
    #: where the engine was built, as the build process saw it: "gpu" (name, compute_capability,
    #: uuid, multiprocessors, total_memory, platform; {} for an engine tied to no GPU),
    #: "library" (the ONNX parser's version, the CUDA major of the TensorRT build), "trtfast"
    #: (its version) and "cache_schema"; {} when not recorded (a raw plan, an older file)
    environment: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("tensorrt_version", "edition", "gpu_name", "model_sha256", "plan_sha256"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"{name} must be a str, not {type(getattr(self, name)).__name__}")
        if self.edition not in (*EDITIONS, ""):
            raise ValueError(
                f"edition must be one of {EDITIONS} (or '' if unknown), not {self.edition!r}"
            )
        capability = _shape(self.compute_capability, "compute_capability")
        if len(capability) != 2 or min(capability) < 0:
            raise ValueError(
                f"compute_capability must be (major, minor) >= 0, not {self.compute_capability!r}"
            )
        inputs, outputs = tuple(self.inputs), tuple(self.outputs)
        for spec in inputs + outputs:
            if not isinstance(spec, TensorSpec):
                raise TypeError(f"inputs and outputs must be TensorSpec, not {spec!r}")
        if not all(spec.is_input for spec in inputs):
            raise ValueError("inputs holds a TensorSpec with is_input=False")
        if any(spec.is_input for spec in outputs):
            raise ValueError("outputs holds a TensorSpec with is_input=True")
        names = [spec.name for spec in inputs + outputs]
        if len(set(names)) != len(names):
            raise ValueError(f"tensor names must be unique, got {names}")
        if not isinstance(self.build_options, Mapping):
            raise TypeError("build_options must be a dict")
        _check_json(self.build_options, "build_options")
        if not isinstance(self.environment, Mapping):
            raise TypeError("environment must be a dict")
        _check_json(self.environment, "environment")
        for name in ("raw_plan", "host_code"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, not {getattr(self, name)!r}")
        for name in ("format_version", "plan_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, not {value!r}")
        object.__setattr__(self, "compute_capability", capability)
        object.__setattr__(self, "inputs", inputs)
        object.__setattr__(self, "outputs", outputs)
        # A copy in the form it reads back as, detached from the caller's dict.
        object.__setattr__(self, "build_options", json.loads(json.dumps(self.build_options)))
        object.__setattr__(self, "environment", json.loads(json.dumps(self.environment)))

    def to_json(self) -> dict[str, Any]:
        """The engine's fields as JSON values (tuples as lists); where it was read from is not one
        of them."""
        result: dict[str, Any] = json.loads(json.dumps(asdict(self)))
        del result["path"]
        return result


# --- metadata JSON -----------------------------------------------------------------------------


def _metadata_json(info: EngineInfo) -> str:
    def spec(s: TensorSpec) -> dict[str, Any]:
        entry: dict[str, Any] = {"name": s.name, "dtype": s.dtype, "shape": list(s.shape)}
        if s.is_input:
            entry["profiles"] = [[list(shape) for shape in p] for p in s.profiles]
        return entry

    metadata: dict[str, Any] = {
        "inputs": [spec(s) for s in info.inputs],
        "outputs": [spec(s) for s in info.outputs],
        "build_options": info.build_options,
    }
    if info.environment:
        metadata["environment"] = info.environment
    return json.dumps(metadata, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _field(entry: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in entry:
        raise EngineFormatError(f"{where} lacks {key!r}")
    value = entry[key]
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise EngineFormatError(f"{where}: {key!r} is {type(value).__name__}, not {kind.__name__}")
    return value


def _parse_metadata(
    text: str, name: str
) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...], dict[str, Any], dict[str, Any]]:
    where = f"{name} metadata"
    try:
        metadata = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise EngineFormatError(f"{where} is not valid JSON: {error}") from None
    if not isinstance(metadata, dict):
        raise EngineFormatError(f"{where} is {type(metadata).__name__}, not a JSON object")

    def specs(key: str, is_input: bool) -> tuple[TensorSpec, ...]:
        entries = _field(metadata, key, list, where)
        result = []
        for index, entry in enumerate(entries):
            at = f"{where}: {key}[{index}]"
            if not isinstance(entry, dict):
                raise EngineFormatError(f"{at} is {type(entry).__name__}, not a JSON object")
            profiles = _field(entry, "profiles", list, at) if is_input else []
            try:
                result.append(
                    TensorSpec(
                        name=_field(entry, "name", str, at),
                        dtype=_field(entry, "dtype", str, at),
                        shape=_field(entry, "shape", list, at),
                        is_input=is_input,
                        profiles=tuple(profiles),
                    )
                )
            except (TypeError, ValueError) as error:
                raise EngineFormatError(f"{at}: {error}") from None
        return tuple(result)

    inputs, outputs = specs("inputs", True), specs("outputs", False)
    # Files written before the environment was recorded have none.
    environment = _field(metadata, "environment", dict, where) if "environment" in metadata else {}
    return inputs, outputs, _field(metadata, "build_options", dict, where), environment


def _info(raw: Mapping[str, Any], name: str, path: str | None = None) -> EngineInfo:
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()
    build_options: dict[str, Any] = {}
    environment: dict[str, Any] = {}
    if not raw["raw_plan"]:
        inputs, outputs, build_options, environment = _parse_metadata(raw["metadata_json"], name)
    try:
        return EngineInfo(
            format_version=raw["format_version"],
            tensorrt_version=raw["tensorrt_version"],
            edition=raw["edition"],
            gpu_name=raw["gpu_name"],
            compute_capability=raw["compute_capability"],
            inputs=inputs,
            outputs=outputs,
            build_options=build_options,
            model_sha256=raw["model_sha256"],
            plan_sha256=raw["plan_sha256"],
            plan_size=raw["plan_size"],
            raw_plan=raw["raw_plan"],
            host_code=raw["host_code"],
            path=path,
            environment=environment,
        )
    except (TypeError, ValueError) as error:
        raise EngineFormatError(f"{name} metadata: {error}") from None


# --- reading -----------------------------------------------------------------------------------


def read(source: Source) -> tuple[EngineInfo, bytes]:
    """The header and the plan of an engine file (a path) or of its bytes, both checked.

    From a path the plan is read straight into the returned bytes object; from bytes it is one
    slice (none for a raw plan).
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        raw = _native.parse(source, _MEMORY_NAME, True)
        info = _info(raw, _MEMORY_NAME)
        start, size = raw["plan_offset"], raw["plan_size"]
        if isinstance(source, bytes) and start == 0 and size == len(source):
            return info, source
        return info, bytes(memoryview(source).cast("B")[start : start + size])
    path = os.fspath(source)
    with open(path, "rb") as file:
        raw, plan = _native.read(file.fileno(), path)
    return _info(raw, path, path), plan


def read_info(source: Source, *, check_plan: bool = False) -> EngineInfo:
    """The header of an engine file (a path) or of its bytes.

    Checks the header fully and the file's length; the plan's checksum only with
    ``check_plan=True`` (streamed, never held in memory), so that a look at a large engine
    stays cheap. :func:`read` always checks the plan.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _info(_native.parse(source, _MEMORY_NAME, check_plan), _MEMORY_NAME)
    path = os.fspath(source)
    with open(path, "rb") as file:
        raw = _native.read_info(file.fileno(), path, check_plan)
    return _info(raw, path, path)


# --- writing -----------------------------------------------------------------------------------


def _header(info: EngineInfo, plan: bytes) -> bytes:
    if not isinstance(info, EngineInfo):
        raise TypeError(f"info must be an EngineInfo, not {type(info).__name__}")
    major, minor = info.compute_capability
    header: bytes = _native.encode_header(
        plan,
        tensorrt_version=info.tensorrt_version,
        edition=info.edition,
        gpu_name=info.gpu_name,
        compute_capability_major=major,
        compute_capability_minor=minor,
        host_code=info.host_code,
        model_sha256=info.model_sha256,
        metadata_json=_metadata_json(info),
    )
    return header


def encode(info: EngineInfo, plan: bytes) -> bytes:
    """The engine file for `plan` as bytes. format_version, plan_sha256 and plan_size are
    computed (the values in `info` are ignored); raw_plan is ignored: the result always has a
    trtfast header. Raises ValueError naming an invalid field."""
    return b"".join((_header(info, plan), plan))


def write(path: str | os.PathLike[str], info: EngineInfo, plan: bytes) -> None:
    """Write an engine file atomically (a temporary file flushed to the disk, then a rename over
    `path`). A failure raises the OSError naming `path` and leaves no partial file."""
    header = _header(info, plan)
    atomic_write(path, header, plan)


def export_plan(source: Source, output_path: str | os.PathLike[str]) -> None:
    """Write the bare, checked TensorRT plan of an engine, as trtexec and Triton expect it.
    Raises ValueError when ``output_path`` is the engine being read."""
    if not isinstance(source, (bytes, bytearray, memoryview)):
        _refuse_same_file(source, output_path)
    _, plan = read(source)
    atomic_write(output_path, plan)


def _refuse_same_file(source: str | os.PathLike[str], output: str | os.PathLike[str]) -> None:
    try:
        same = os.path.samefile(source, output)
    except OSError:  # the output does not exist yet, or the source is unreadable (read says so)
        return
    if same:
        raise ValueError(
            f"output {os.fspath(output)!r} is the engine being read ({os.fspath(source)!r}); "
            "name another file"
        )


# --- describing --------------------------------------------------------------------------------


def _dims(shape: Shape) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


def summary(info: EngineInfo, name: str = "") -> str:
    """A human-readable description of an engine, as ``trtfast inspect`` prints it."""
    lines: list[str] = []
    prefix = f"{name}: " if name else ""

    def row(label: str, value: str) -> None:
        lines.append(f"{label:<15}{value}")

    rtx_gpu = "any GPU TensorRT-RTX supports (compiled for it when loaded)"
    if info.raw_plan:
        product = "TensorRT-RTX" if info.edition == "rtx" else "TensorRT"
        lines.append(f"{prefix}bare {product} plan (no trtfast header)")
        version = info.tensorrt_version or "unknown"
        row(product, f"{version} (from the plan's own header)")
        if info.edition == "rtx":
            row("GPU", rtx_gpu)
        row("plan", f"{info.plan_size:,} bytes")
        lines.append(
            "A bare plan does not say which GPU, IO signature or build options it was made "
            "with; TensorRT reads them when it loads the plan."
        )
        return "\n".join(lines)

    lines.append(f"{prefix}trtfast engine, format version {info.format_version}")
    row("TensorRT", f"{info.tensorrt_version or 'unknown'} ({info.edition} edition)")
    major, minor = info.compute_capability
    if info.edition == "rtx" and not info.gpu_name:
        # TensorRT-RTX builds without a GPU, and compiles for the GPU it runs on when loaded.
        row("GPU", rtx_gpu)
    else:
        row("GPU", f"{info.gpu_name or 'unknown'}, compute capability {major}.{minor}")
    gpu = info.environment.get("gpu") or {}
    if gpu:
        memory = gpu.get("total_memory", 0) / 2**30
        row(
            "built on",
            f"{gpu.get('uuid')}, {gpu.get('multiprocessors')} SMs, {memory:.1f} GiB, "
            f"{gpu.get('platform')}",
        )
    library = info.environment.get("library") or {}
    if library:
        row("built with", f"ONNX parser {library.get('parser')}, CUDA {library.get('cuda_major')}")
    row("host code", "yes (the plan embeds code that runs on the CPU)" if info.host_code else "no")
    row("plan", f"{info.plan_size:,} bytes")
    row("plan sha256", info.plan_sha256)
    row("model sha256", info.model_sha256 or "unknown")

    def table(title: str, specs: tuple[TensorSpec, ...]) -> None:
        lines.append(f"{title} ({len(specs)})")
        if not specs:
            return
        width = max(len(s.name) for s in specs)
        dtype_width = max(len(s.dtype) for s in specs)
        for s in specs:
            lines.append(f"  {s.name:<{width}}  {s.dtype:<{dtype_width}}  {_dims(s.shape)}")
            for index, (low, opt, high) in enumerate(s.profiles):
                lines.append(
                    f"  {'':<{width}}    profile {index}: min {_dims(low)}  opt {_dims(opt)}  "
                    f"max {_dims(high)}"
                )

    table("inputs", info.inputs)
    table("outputs", info.outputs)
    lines.append(f"build options ({len(info.build_options)})")
    if info.build_options:
        width = max(len(key) for key in info.build_options)
        for key, value in info.build_options.items():
            lines.append(f"  {key:<{width}}  {json.dumps(value, ensure_ascii=False)}")
    return "\n".join(lines)


__all__ = [
    "DTYPES",
    "EDITIONS",
    "FORMAT_VERSION",
    "EngineInfo",
    "TensorSpec",
    "encode",
    "export_plan",
    "read",
    "read_info",
    "summary",
    "write",
]
