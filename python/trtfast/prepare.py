"""Every ONNX-level transform trtfast applies before TensorRT parses a model.

Loading (a path, with or without external weights; bytes; an ``onnx.ModelProto``) and hashing;
preparation for the parser (opset conversion, constant folding, shape inference), done by onnx
and maintained libraries; and precision conversion for strongly typed networks (TensorRT 11:
reduced precision comes from the model's own types, so fp16/bf16 convert the model while its
inputs and outputs keep their types).

Preparation keeps large weights out of the graph it transforms (see ``_park``): a model with
weights in external files is prepared without reading them, and they are read once, by the
parser or when the result is written.

Why a precision pass of our own rather than a library: onnxconverter-common does fp16 only,
leaves a model's own ``Cast(to=FLOAT)`` nodes in place (so a converted model that casts a mask
to float no longer type-checks), clamps weights at 1e4 and keeps Min/Max/TopK/CumSum in fp32
for ONNX Runtime's sake; NVIDIA ModelOpt AutoCast converts to both types but needs torch and
pins onnx and onnxruntime-gpu versions, far too heavy for building an engine. Retyping is a
small pass: every float32 source (weights, constants, casts, dtype attributes, inputs through a
cast) becomes the target type, types propagate through the graph, and the few operator inputs
ONNX defines as float32 only get a cast back.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .errors import BuildError, BuildOptionError
from .profiles import ModelInput

try:
    import onnx
    import onnx.external_data_helper
    import onnx.version_converter
    from onnx import TensorProto, helper, inliner, numpy_helper

    _ONNX_IMPORT_ERROR: ImportError | None = None
except ImportError as _error:  # the [build] extra is optional; entry points say what to install
    _ONNX_IMPORT_ERROR = _error

if TYPE_CHECKING:
    ModelSource = str | os.PathLike[str] | bytes | onnx.ModelProto

Precision = Literal["fp32", "fp16", "bf16", "int8", "fp8"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "fp16", "bf16", "int8", "fp8")

# Protobuf cannot serialize a message of 2 GiB or more; larger models go to the parser as a
# file with external weights.
_PROTOBUF_LIMIT = 2**31 - 1

logger = logging.getLogger("trtfast.prepare")


def require_build_extra() -> None:
    """Raise ImportError naming the extra to install when onnx is missing."""
    if _ONNX_IMPORT_ERROR is not None:
        raise ImportError(
            f"building engines needs onnx ({_ONNX_IMPORT_ERROR}): pip install 'trtfast[build]'"
        ) from _ONNX_IMPORT_ERROR


@dataclass
class LoadedModel:
    """A model ready to convert or serialize for the parser."""

    proto: onnx.ModelProto
    # Folder holding the model's external weights (the parser resolves them there).
    folder: str | None
    # sha256 of the model as given: its bytes plus every external weight file.
    sha256: str
    # False when ``proto`` is the caller's object, which is never modified.
    owned: bool


def load(model: ModelSource) -> LoadedModel:
    """Load a model from a path, bytes or an ``onnx.ModelProto`` without reading external
    weights into memory."""
    require_build_extra()
    if isinstance(model, onnx.ModelProto):
        _require_inline_weights(model, "an onnx.ModelProto")
        return LoadedModel(model, None, _proto_sha256(model), owned=False)
    if isinstance(model, (bytes, bytearray, memoryview)):
        data = bytes(model)
        proto = _parse(data, "the model bytes")
        _require_inline_weights(proto, "bytes")
        return LoadedModel(proto, None, hashlib.sha256(data).hexdigest(), owned=True)
    if isinstance(model, (str, os.PathLike)):
        return _load_path(Path(model))
    raise BuildOptionError(
        "model must be a path, bytes or an onnx.ModelProto, not " + type(model).__name__
    )


def _load_path(path: Path) -> LoadedModel:
    if not path.is_file():
        raise BuildOptionError(f"model file {str(path)!r} does not exist")
    data = path.read_bytes()
    proto = _parse(data, repr(str(path)))
    folder = path.resolve().parent
    digest = hashlib.sha256(data)
    for location in _external_locations(proto):
        weights = folder / location
        if not weights.is_file():
            raise BuildError(
                f"model {str(path)!r} keeps weights in {location!r}, which is missing from "
                f"{str(folder)!r}; keep the weight files beside the .onnx file"
            )
        digest.update(b"\0" + location.encode() + b"\0")
        with weights.open("rb") as stream:
            for block in iter(lambda: stream.read(1 << 24), b""):
                digest.update(block)
    return LoadedModel(proto, str(folder), digest.hexdigest(), owned=True)


def _parse(data: bytes, what: str) -> onnx.ModelProto:
    try:
        proto = onnx.load_model_from_string(data)
    except Exception as error:  # protobuf's DecodeError and friends
        raise BuildError(f"{what} is not an ONNX model: {error}") from error
    if not proto.HasField("graph"):
        raise BuildError(f"{what} is not an ONNX model: it has no graph")
    return proto


def _require_inline_weights(proto: onnx.ModelProto, what: str) -> None:
    locations = _external_locations(proto)
    if locations:
        raise BuildError(
            f"the model given as {what} keeps weights in external files ({', '.join(locations)}) "
            "that cannot be found from it; pass the path of the .onnx file instead"
        )


def _proto_sha256(proto: onnx.ModelProto) -> str:
    if proto.ByteSize() <= _PROTOBUF_LIMIT:
        return hashlib.sha256(proto.SerializeToString(deterministic=True)).hexdigest()
    # Too large to serialize at once: hash the graph without weights, then each weight.
    digest = hashlib.sha256()
    detached = _detach_weights(proto)
    try:
        digest.update(proto.SerializeToString(deterministic=True))
    finally:
        _attach_weights(detached)
    for tensor, raw in detached:
        digest.update(tensor.name.encode() + b"\0" + raw)
    return digest.hexdigest()


def _graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """A graph and, recursively, every subgraph of its nodes (If, Loop, Scan bodies)."""
    yield graph
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from _graphs(attribute.g)
            for subgraph in attribute.graphs:
                yield from _graphs(subgraph)


def _tensors(proto: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    for graph in _graphs(proto.graph):
        yield from graph.initializer
        for node in graph.node:
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.TENSOR:
                    yield attribute.t
                yield from attribute.tensors


def _external_locations(proto: onnx.ModelProto) -> list[str]:
    locations = set()
    for tensor in _tensors(proto):
        if tensor.data_location == TensorProto.EXTERNAL:
            for entry in tensor.external_data:
                if entry.key == "location":
                    locations.add(entry.value)
    return sorted(locations)


def _detach_weights(proto: onnx.ModelProto) -> list[tuple[onnx.TensorProto, bytes]]:
    detached = []
    for tensor in _tensors(proto):
        if tensor.raw_data:
            detached.append((tensor, tensor.raw_data))
            tensor.ClearField("raw_data")
    return detached


def _attach_weights(detached: list[tuple[onnx.TensorProto, bytes]]) -> None:
    for tensor, raw in detached:
        tensor.raw_data = raw


def model_inputs(proto: onnx.ModelProto) -> list[ModelInput]:
    """The inputs a caller feeds (initializers listed as inputs excluded), with their dims."""
    initializers = {tensor.name for tensor in proto.graph.initializer}
    inputs = []
    for value in proto.graph.input:
        if value.name in initializers or not value.type.HasField("tensor_type"):
            continue
        tensor_type = value.type.tensor_type
        dims: tuple[int | str | None, ...] | None = None
        if tensor_type.HasField("shape"):
            dims = tuple(
                dim.dim_value if dim.HasField("dim_value") else (dim.dim_param or None)
                for dim in tensor_type.shape.dim
            )
        inputs.append(ModelInput(value.name, dims))
    return inputs


def normalize_precision(precision: str | None) -> Precision:
    if precision is None:
        return "fp32"
    if not isinstance(precision, str) or precision.lower() not in PRECISIONS:
        raise BuildOptionError(
            f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}"
        )
    return precision.lower()  # type: ignore[return-value]  # checked against PRECISIONS above


def is_quantized(proto: onnx.ModelProto) -> bool:
    return any(
        node.op_type in ("QuantizeLinear", "DequantizeLinear")
        for graph in _graphs(proto.graph)
        for node in graph.node
    )


def require_quantized(proto: onnx.ModelProto, precision: Precision) -> None:
    """int8 and fp8 engines come from quantized models: TensorRT takes the scales from the
    model's QuantizeLinear/DequantizeLinear nodes."""
    if precision in ("int8", "fp8") and not is_quantized(proto):
        raise BuildError(
            f"precision {precision!r} needs a quantized model (QuantizeLinear/DequantizeLinear "
            "nodes) and this one has none; quantize it first (for example with NVIDIA ModelOpt) "
            "or choose fp16 or bf16"
        )


def prepare(
    model: ModelSource,
    precision: str | None = None,
    *,
    opset: int | None = None,
    fold_constants: bool | None = None,
    infer_shapes: bool = True,
    tensorrt_version: str | None = None,
) -> onnx.ModelProto:
    """The model as TensorRT's ONNX parser gets it: prepared, then converted for ``precision``.

    Preparation changes how the model is written, never what it computes:
    - opset: a model outside the opsets the parser imports is converted (onnx's version
      converter) to ``_PREFERRED_OPSET`` clamped to that range (from below) or to the newest
      opset it imports (from above); ``opset`` names the target instead. The range is the one
      of ``tensorrt_version``, by default of the TensorRT library installed, and when neither
      is known any opset from 9 up is kept.
    - constant folding (onnx-graphsurgeon, evaluated by onnxruntime: the ``prepare`` extra):
      subgraphs computed from constants alone, shape computations on static dimensions
      included, become constants. None folds when the extra is installed, True requires it.
    - shape inference (onnx's, with data propagation, then onnxruntime's symbolic inference
      where installed): every value gets the shape that can be known before running.

    Then fp16 and bf16 convert every float32 tensor while the model's inputs and outputs keep
    their types; int8 and fp8 require a quantized model. External weights are read into the
    returned model, each once. The caller's ``onnx.ModelProto`` is never modified.
    ``prepare_with_report`` also returns what was changed.
    """
    prepared, _ = prepare_with_report(
        model,
        precision,
        opset=opset,
        fold_constants=fold_constants,
        infer_shapes=infer_shapes,
        tensorrt_version=tensorrt_version,
    )
    return prepared


def prepare_with_report(
    model: ModelSource,
    precision: str | None = None,
    *,
    opset: int | None = None,
    fold_constants: bool | None = None,
    infer_shapes: bool = True,
    tensorrt_version: str | None = None,
) -> tuple[onnx.ModelProto, PrepareReport]:
    """``prepare``, and the report of what it changed."""
    require_build_extra()
    target = normalize_precision(precision)
    prepared = prepare_model(
        load(model),
        opset=opset,
        fold_constants=fold_constants,
        infer_shapes=infer_shapes,
        tensorrt_version=tensorrt_version,
    )
    proto = prepared.to_proto()
    require_quantized(proto, target)
    if target in ("fp16", "bf16"):
        convert_float_types(proto, target)
    return proto, prepared.report


def _copy(proto: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    return copy


@contextlib.contextmanager
def parser_input(
    loaded: LoadedModel, precision: Precision, convert: bool, keep: bool = False
) -> Iterator[tuple[bytes, str | None]]:
    """(ONNX bytes, folder of external weights) for the parser: the model as given, converted
    for ``precision`` when ``convert``.

    A model too large for one protobuf message goes through a temporary folder, removed on
    exit; without conversion, external weights are read by the parser from their own folder.
    Conversion happens in ``loaded``'s own model unless ``keep`` (it will be used again) or it
    is the caller's.
    """
    proto, folder = loaded.proto, loaded.folder
    if convert and precision in ("fp16", "bf16"):
        proto = proto if loaded.owned and not keep else _copy(proto)
        if folder is not None and _external_locations(proto):
            onnx.load_external_data_for_model(proto, folder)
            folder = None
        convert_float_types(proto, precision)
    with _serialized(proto, folder) as serialized:
        yield serialized


@contextlib.contextmanager
def _serialized(proto: onnx.ModelProto, folder: str | None) -> Iterator[tuple[bytes, str | None]]:
    if proto.ByteSize() <= _PROTOBUF_LIMIT:
        yield proto.SerializeToString(), folder
        return
    with tempfile.TemporaryDirectory(prefix="trtfast-model-") as temporary:
        yield _serialize_with_external_weights(proto, Path(temporary) / _WEIGHTS_FILE), temporary


_WEIGHTS_FILE = "weights.bin"


def _serialize_with_external_weights(
    proto: onnx.ModelProto, path: Path, location: str = _WEIGHTS_FILE
) -> bytes:
    """The model's bytes with every weight moved to file ``path``, which the model names
    ``location``. ``proto`` is left as it was (it may be the caller's)."""
    detached = _detach_weights(proto)
    located = [tensor.HasField("data_location") for tensor, _ in detached]
    try:
        with open(path, "wb") as stream:
            for tensor, raw in detached:
                offset = stream.tell()
                stream.write(raw)
                _set_external(tensor, location, offset, len(raw))
        serialized: bytes = proto.SerializeToString()
        return serialized
    finally:
        for (tensor, _), had_location in zip(detached, located, strict=True):
            tensor.data_location = TensorProto.DEFAULT
            if not had_location:
                tensor.ClearField("data_location")
            del tensor.external_data[:]
        _attach_weights(detached)


def _set_external(tensor: onnx.TensorProto, location: str, offset: int, length: int) -> None:
    tensor.data_location = TensorProto.EXTERNAL
    del tensor.external_data[:]
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value


# ---------------------------------------------------------------------------------------------
# Preparation: opset, constant folding, shape inference

PrepareMode = Literal["auto", "always", "never"]
PREPARE_MODES: tuple[PrepareMode, ...] = ("auto", "always", "never")

# The opsets TensorRT's ONNX parser imports, by the first TensorRT release of each range, as
# its documentation states them (operators.md of each release, the support matrix and release
# notes): 8.0-8.2 opset 7-13, 8.4-8.6 up to 17, 9.x up to 19, 10.0 9-20, 10.15 9-24, 11.x
# 9-24 and 11.5 9-25. Releases between two documented ones get the older range.
_PARSER_OPSETS: tuple[tuple[tuple[int, int], tuple[int, int]], ...] = (
    ((8, 0), (7, 13)),
    ((8, 4), (7, 17)),
    ((9, 0), (7, 19)),
    ((10, 0), (9, 20)),
    ((10, 15), (9, 24)),
    ((11, 5), (9, 25)),
)
# Where the parser is unknown (no TensorRT found, or TensorRT-RTX, versioned 1.x, whose range
# is not documented per release): every parser since TensorRT 10 imports opset 9 and up.
_LOWEST_OPSET = 9
# The upgrade target for older models: the opset most exporters wrote for years
# (torch.onnx's default), inside the range of every parser since TensorRT 8.4, so the
# parser's best-trodden import path.
_PREFERRED_OPSET = 17

# Tensors this large stay out of the graph while it is transformed (see _park): the
# transforms never copy them, and they are read once, when the result is written.
_PARK_BYTES = 1 << 20
_PARKED = "trtfast-parked/"


def parser_opsets(tensorrt_version: str | None) -> tuple[int, int]:
    """(lowest, highest) opset of the default domain that the ONNX parser of
    ``tensorrt_version`` imports, capped at the newest opset the installed onnx knows."""
    require_build_extra()
    newest = int(onnx.defs.onnx_opset_version())
    version = _version_tuple(tensorrt_version)
    if version is None or version < _PARSER_OPSETS[0][0]:
        return _LOWEST_OPSET, newest
    low, high = next(opsets for first, opsets in reversed(_PARSER_OPSETS) if version >= first)
    return low, min(high, newest)


def _version_tuple(version: str | None) -> tuple[int, int] | None:
    if not version:
        return None
    parts = version.split(".")
    try:
        return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        return None


@dataclass(frozen=True)
class PrepareReport:
    """What preparation changed. ``notes`` says which steps were skipped and why."""

    opset_from: int
    opset_to: int
    nodes_before: int
    nodes_after: int
    folded_nodes: int
    shapes_inferred: int
    symbolic_shapes: bool
    notes: tuple[str, ...]
    seconds: float

    @property
    def changed(self) -> bool:
        return (
            self.opset_from != self.opset_to
            or self.nodes_before != self.nodes_after
            or self.folded_nodes > 0
            or self.shapes_inferred > 0
        )

    def to_json(self) -> dict[str, Any]:
        """JSON-serialisable; what an engine file records under build_options["prepare"]."""
        return {
            "opset": [self.opset_from, self.opset_to],
            "nodes": [self.nodes_before, self.nodes_after],
            "folded_nodes": self.folded_nodes,
            "shapes_inferred": self.shapes_inferred,
            "symbolic_shapes": self.symbolic_shapes,
            "notes": list(self.notes),
            "seconds": round(self.seconds, 3),
        }

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> PrepareReport:
        """The report ``to_json`` wrote (an engine file's build_options["prepare"])."""
        return cls(
            opset_from=int(record["opset"][0]),
            opset_to=int(record["opset"][1]),
            nodes_before=int(record["nodes"][0]),
            nodes_after=int(record["nodes"][1]),
            folded_nodes=int(record["folded_nodes"]),
            shapes_inferred=int(record["shapes_inferred"]),
            symbolic_shapes=bool(record["symbolic_shapes"]),
            notes=tuple(str(note) for note in record["notes"]),
            seconds=float(record["seconds"]),
        )

    def summary(self) -> str:
        opset = (
            f"opset {self.opset_from} -> {self.opset_to}"
            if self.opset_from != self.opset_to
            else f"opset {self.opset_from} kept"
        )
        shapes = f"{self.shapes_inferred} shapes inferred"
        if self.symbolic_shapes:
            shapes += " (symbolic)"
        parts = [
            opset,
            f"{self.folded_nodes} nodes folded ({self.nodes_before} -> {self.nodes_after} nodes)",
            shapes,
            *self.notes,
        ]
        return "; ".join(parts)


@dataclass
class _Source:
    """Where a parked tensor's data is: the tensor itself (inline) or a span of a file."""

    tensor: onnx.TensorProto
    path: Path | None = None
    offset: int = 0
    length: int = 0


@dataclass
class PreparedModel:
    """A prepared graph whose large weights are still where the model keeps them.

    ``proto`` names each of them through an external-data location ``trtfast-parked/N``;
    ``to_proto``, ``save`` and ``parser_input`` read them, each once.
    """

    proto: onnx.ModelProto
    sources: dict[str, _Source]
    report: PrepareReport

    def _parked(self) -> Iterator[tuple[onnx.TensorProto, _Source]]:
        for tensor in self.proto.graph.initializer:
            location = _location(tensor)
            if location in self.sources:
                yield tensor, self.sources[location]

    def to_proto(self) -> onnx.ModelProto:
        """The prepared model with every weight in it (this object is left without weights)."""
        for tensor, source in self._parked():
            _restore(tensor, source)
            if source.path is not None:
                tensor.raw_data = _read_span(source)
                tensor.data_location = TensorProto.DEFAULT
                del tensor.external_data[:]
        self.sources = {}
        return self.proto

    def weights_size(self) -> int:
        return sum(source.length for _, source in self._parked())

    def save(self, path: str | os.PathLike[str]) -> str | None:
        """Write the prepared model to ``path``; returns the name of the weights file written
        beside it, if any.

        Weights go to ``<name>.data`` when the model given kept its weights in files or the
        result does not fit one protobuf message; they are copied file to file, never all in
        memory at once. Either file is replaced whole or not at all.
        """
        target = Path(path)
        external = any(source.path is not None for _, source in self._parked())
        if not external and self.proto.ByteSize() + self.weights_size() <= _PROTOBUF_LIMIT:
            return save_model(self.to_proto(), target)
        weights = target.name + ".data"
        # The weights may be read from the file they replace: written aside, then renamed.
        with _replacing(target.parent / weights) as temporary:
            self._write_weights(temporary, weights)
        with _replacing(target) as temporary:
            temporary.write_bytes(self.proto.SerializeToString())
        return weights

    def _write_weights(self, path: Path, location: str) -> None:
        """Every parked tensor into ``path``, its location then ``location``."""
        with open(path, "wb") as stream:
            for tensor, source in list(self._parked()):
                offset = stream.tell()
                if source.path is None:
                    stream.write(_inline_bytes(source.tensor))
                else:
                    _copy_span(source, stream)
                _set_external(tensor, location, offset, stream.tell() - offset)
        self.sources = {}

    @contextlib.contextmanager
    def parser_input(
        self, precision: Precision, convert: bool
    ) -> Iterator[tuple[bytes, str | None]]:
        """(ONNX bytes, folder of external weights) for the parser, converted for
        ``precision`` when ``convert``. Weights kept in the model's own files are read by the
        parser from there; this object is spent afterwards."""
        if convert and precision in ("fp16", "bf16"):
            proto = self.to_proto()
            convert_float_types(proto, precision)
            with _serialized(proto, None) as serialized:
                yield serialized
            return
        parked = list(self._parked())
        files = [source.path for _, source in parked if source.path is not None]
        if not files and self.proto.ByteSize() + self.weights_size() <= _PROTOBUF_LIMIT:
            with _serialized(self.to_proto(), None) as serialized:
                yield serialized
            return
        folders = {str(path.parent) for path in files}
        if len(files) == len(parked) and len(folders) == 1:
            # Weights in the model's own files: the parser reads them where they are.
            for tensor, source in parked:
                _restore(tensor, source)
            self.sources = {}
            with _serialized(self.proto, folders.pop()) as serialized:
                yield serialized
            return
        with tempfile.TemporaryDirectory(prefix="trtfast-model-") as temporary:
            self._write_weights(Path(temporary) / _WEIGHTS_FILE, _WEIGHTS_FILE)
            yield self.proto.SerializeToString(), temporary


def save_model(proto: onnx.ModelProto, path: str | os.PathLike[str]) -> str | None:
    """Write ``proto`` to ``path``, its weights to ``<name>.data`` when it does not fit one
    protobuf message; returns the name of that weights file, if written."""
    target = Path(path)
    if proto.ByteSize() <= _PROTOBUF_LIMIT:
        with _replacing(target) as temporary:
            temporary.write_bytes(proto.SerializeToString())
        return None
    weights = target.name + ".data"
    with _replacing(target.parent / weights) as temporary:
        serialized = _serialize_with_external_weights(proto, temporary, weights)
    with _replacing(target) as temporary:
        temporary.write_bytes(serialized)
    return weights


@contextlib.contextmanager
def _replacing(target: Path) -> Iterator[Path]:
    """A temporary path beside ``target`` that replaces it when the block ends without error."""
    descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    os.close(descriptor)
    try:
        yield Path(temporary)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def _location(tensor: onnx.TensorProto) -> str | None:
    if tensor.data_location != TensorProto.EXTERNAL:
        return None
    return next((entry.value for entry in tensor.external_data if entry.key == "location"), None)


def _external_span(tensor: onnx.TensorProto, folder: str) -> _Source:
    entries = {entry.key: entry.value for entry in tensor.external_data}
    path = Path(folder) / entries["location"]
    offset = int(entries.get("offset", 0))
    length = int(entries["length"]) if "length" in entries else path.stat().st_size - offset
    return _Source(tensor, path, offset, length)


def _restore(tensor: onnx.TensorProto, source: _Source) -> None:
    """``tensor`` as the model gave it (its data, or its external reference), under the name
    it has now."""
    name = tensor.name
    tensor.CopyFrom(source.tensor)
    tensor.name = name


def _read_span(source: _Source) -> bytes:
    assert source.path is not None
    with open(source.path, "rb") as stream:
        stream.seek(source.offset)
        data = stream.read(source.length)
    if len(data) != source.length:
        raise _truncated(source)
    return data


def _truncated(source: _Source) -> BuildError:
    return BuildError(
        f"{str(source.path)!r} ends before the {source.length} bytes of weight "
        f"{source.tensor.name!r} at offset {source.offset}"
    )


def _copy_span(source: _Source, stream: Any) -> None:
    assert source.path is not None
    with open(source.path, "rb") as weights:
        weights.seek(source.offset)
        left = source.length
        while left > 0:
            block = weights.read(min(left, 1 << 24))
            if not block:
                raise _truncated(source)
            stream.write(block)
            left -= len(block)


def _inline_bytes(tensor: onnx.TensorProto) -> bytes:
    if tensor.HasField("raw_data"):
        return bytes(tensor.raw_data)
    # Values in typed fields (float_data, ...): numpy_helper writes them as raw bytes.
    raw: bytes = numpy_helper.from_array(numpy_helper.to_array(tensor)).raw_data
    return raw


def _is_repeated(field: Any) -> bool:
    repeated = getattr(field, "is_repeated", None)
    if repeated is not None:
        return bool(repeated)
    return bool(field.label == field.LABEL_REPEATED)


def _copy_fields(source: Any, target: Any, skip: frozenset[str]) -> None:
    """Copy every set field of protobuf message ``source`` but those in ``skip``."""
    for field, value in source.ListFields():
        if field.name in skip:
            continue
        if _is_repeated(field):
            getattr(target, field.name).extend(value)
        elif field.type == field.TYPE_MESSAGE:
            getattr(target, field.name).CopyFrom(value)
        else:
            setattr(target, field.name, value)


def _park(loaded: LoadedModel) -> tuple[onnx.ModelProto, dict[str, _Source]]:
    """A copy of the model without its large weights: each initializer of ``_PARK_BYTES`` or
    more becomes an external reference named ``trtfast-parked/N``, mapped to where its data is
    (the given tensor, or a span of the model's weight file). Small external weights (shape
    constants among them) are read in: shape inference and folding need their values."""
    source = loaded.proto
    skeleton = onnx.ModelProto()
    _copy_fields(source, skeleton, frozenset({"graph"}))
    _copy_fields(source.graph, skeleton.graph, frozenset({"initializer"}))
    sources: dict[str, _Source] = {}
    for tensor in source.graph.initializer:
        copy = skeleton.graph.initializer.add()
        if tensor.data_location == TensorProto.EXTERNAL:
            assert loaded.folder is not None  # load() refuses external weights without a path
            span = _external_span(tensor, loaded.folder)
            size = span.length
        else:
            span = _Source(tensor, length=tensor.ByteSize())
            size = span.length
        if size < _PARK_BYTES or tensor.data_type == TensorProto.STRING:
            copy.CopyFrom(tensor)
            if span.path is not None:
                copy.raw_data = _read_span(span)
                copy.data_location = TensorProto.DEFAULT
                del copy.external_data[:]
            continue
        marker = f"{_PARKED}{len(sources)}"
        copy.name = tensor.name
        copy.dims.extend(tensor.dims)
        copy.data_type = tensor.data_type
        copy.data_location = TensorProto.EXTERNAL
        entry = copy.external_data.add()
        entry.key, entry.value = "location", marker
        sources[marker] = span
    # External weights elsewhere (subgraphs, Constant attributes) are rare: read them in.
    if loaded.folder is not None:
        for tensor in _tensors(skeleton):
            location = _location(tensor)
            if location is not None and location not in sources:
                onnx.external_data_helper.load_external_data_for_tensor(tensor, loaded.folder)
    return skeleton, sources


def prepare_model(
    loaded: LoadedModel,
    *,
    opset: int | None = None,
    fold_constants: bool | None = None,
    infer_shapes: bool = True,
    tensorrt_version: str | None = None,
) -> PreparedModel:
    """Prepare ``loaded`` for the parser (see ``prepare``) without reading its large weights."""
    started = time.perf_counter()
    notes: list[str] = []
    proto, sources = _park(loaded)
    opset_from = _default_opset(proto)
    nodes_before = len(proto.graph.node)
    known_before = _values_with_shapes(proto)

    if opset is None:
        version = tensorrt_version if tensorrt_version is not None else _installed_tensorrt()
        proto = _convert_opset(proto, _target_opset(opset_from, parser_opsets(version)), notes)
    else:
        newest = int(onnx.defs.onnx_opset_version())
        if not isinstance(opset, int) or isinstance(opset, bool) or not 1 <= opset <= newest:
            raise BuildOptionError(
                f"opset must be an int from 1 to {newest} (the newest this onnx knows), "
                f"not {opset!r}"
            )
        proto = _convert_opset(proto, opset, notes, required=True)
    opset_to = _default_opset(proto)

    nodes_converted = len(proto.graph.node)
    symbolic = False
    fold = _folding_step(fold_constants, notes)
    if fold is not None:
        # Folding finds more where shapes are known, and shapes are known further where
        # shape computations were folded: a few rounds, until nothing changes.
        for _ in range(_FOLD_PASSES):
            if infer_shapes:
                proto, _ = _infer_shapes(proto, symbolic=False)
            folded = fold(proto, set(sources))
            settled = len(folded.graph.node) == len(proto.graph.node)
            proto = folded
            if settled:
                break
    if infer_shapes:
        proto, symbolic = _infer_shapes(proto, symbolic=True, notes=notes)
    else:
        notes.append("shape inference off")
    known_after = _values_with_shapes(proto)
    report = PrepareReport(
        opset_from=opset_from,
        opset_to=opset_to,
        nodes_before=nodes_before,
        nodes_after=len(proto.graph.node),
        folded_nodes=max(nodes_converted - len(proto.graph.node), 0),
        shapes_inferred=len(known_after - known_before),
        symbolic_shapes=symbolic,
        notes=tuple(notes),
        seconds=time.perf_counter() - started,
    )
    logger.info("prepared the model: %s", report.summary())
    return PreparedModel(proto, sources, report)


def _installed_tensorrt() -> str | None:
    from ._library import tensorrt_library
    from .errors import TensorRTUnavailableError

    try:
        return str(tensorrt_library().version)
    except TensorRTUnavailableError:
        return None


def _default_opset(proto: onnx.ModelProto) -> int:
    for entry in proto.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    # No import of the default domain: the model uses none of its operators.
    return int(onnx.defs.onnx_opset_version())


def _target_opset(current: int, supported: tuple[int, int]) -> int:
    low, high = supported
    if current < low:
        return min(max(_PREFERRED_OPSET, low), high)
    return min(current, high)


def _convert_opset(
    proto: onnx.ModelProto, target: int, notes: list[str], required: bool = False
) -> onnx.ModelProto:
    """``proto`` converted to opset ``target`` by onnx's version converter. A failure raises
    when the target was asked for, and otherwise keeps the model's opset, with a note."""
    current = _default_opset(proto)
    if target == current:
        return proto
    try:
        if current < 7:
            _align_legacy_broadcast(proto)
        converted = onnx.version_converter.convert_version(proto, target)
    except Exception as error:  # the converter raises RuntimeError and ValidationError alike
        message = f"onnx's version converter cannot convert opset {current} to {target}: {error}"
        if required:
            raise BuildError(message) from error
        logger.warning("%s; the model keeps opset %d", message, current)
        notes.append(f"opset {current} kept: {str(error).splitlines()[0]}")
        return proto
    # The converter stamps its newest IR version; the parser needs only what the opsets do.
    converted.ir_version = max(
        proto.ir_version, int(helper.find_min_ir_version_for(list(converted.opset_import)))
    )
    return converted


# Operators that broadcast only with attributes before opset 7 (numpy-style after).
_LEGACY_BROADCAST = frozenset(
    {"Add", "Sub", "Mul", "Div", "Pow", "And", "Or", "Xor", "Equal", "Greater", "Less", "PRelu"}
)


def _align_legacy_broadcast(proto: onnx.ModelProto) -> None:
    """Before opset 7, ``broadcast=1, axis=k`` aligns B with A's dimension k; numpy-style
    broadcasting aligns trailing dimensions. onnx's converter (1.23) unsqueezes B by the wrong
    number of axes when k leaves trailing dimensions after B, so B is unsqueezed here to end
    where A does, which makes k the alignment the converter already handles."""
    ranks: dict[str, int] = {}
    inferred = onnx.shape_inference.infer_shapes(proto, check_type=False, strict_mode=False)
    for value in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output):
        if value.type.tensor_type.HasField("shape"):
            ranks[value.name] = len(value.type.tensor_type.shape.dim)
    for tensor in proto.graph.initializer:
        ranks[tensor.name] = len(tensor.dims)
    names = _Names(proto)
    rebuilt: list[onnx.NodeProto] = []
    for node in proto.graph.node:
        attributes = {attribute.name: attribute for attribute in node.attribute}
        broadcast = attributes.get("broadcast")
        if (
            node.domain in ("", "ai.onnx")
            and node.op_type in _LEGACY_BROADCAST
            and "axis" in attributes
            and broadcast is not None
            and broadcast.i == 1
            and node.input[0] in ranks
            and node.input[1] in ranks
        ):
            axis = attributes["axis"].i
            rank_a, rank_b = ranks[node.input[0]], ranks[node.input[1]]
            if axis < 0:
                axis += rank_a
            trailing = rank_a - axis - rank_b
            if trailing > 0:
                unsqueezed = names.fresh(f"{node.input[1]}_aligned")
                rebuilt.append(
                    helper.make_node(
                        "Unsqueeze",
                        [node.input[1]],
                        [unsqueezed],
                        axes=list(range(rank_b, rank_b + trailing)),
                        name=names.fresh(f"{unsqueezed}_unsqueeze"),
                    )
                )
                node.input[1] = unsqueezed
                attributes["axis"].i = axis
        rebuilt.append(node)
    if len(rebuilt) != len(proto.graph.node):
        copies = [onnx.NodeProto() for _ in rebuilt]
        for copy, node in zip(copies, rebuilt, strict=True):
            copy.CopyFrom(node)
        del proto.graph.node[:]
        proto.graph.node.extend(copies)


def _values_with_shapes(proto: onnx.ModelProto) -> set[str]:
    """Names of the main graph's node outputs whose every dimension is known: a number or a
    symbol."""

    def known(value: onnx.ValueInfoProto) -> bool:
        tensor_type = value.type.tensor_type
        return tensor_type.HasField("shape") and all(
            dim.HasField("dim_value") or dim.HasField("dim_param") for dim in tensor_type.shape.dim
        )

    produced = {name for node in proto.graph.node for name in node.output if name}
    return {
        value.name
        for value in (*proto.graph.value_info, *proto.graph.output)
        if value.name in produced and known(value)
    }


def _known_dim(dim: onnx.TensorShapeProto.Dimension) -> bool:
    """A number, or a symbol other than the placeholders shape inference names ``unk__N``
    for dimensions it cannot tell."""
    return dim.HasField("dim_value") or (
        dim.HasField("dim_param") and not dim.dim_param.startswith("unk__")
    )


def _infer_shapes(
    proto: onnx.ModelProto, symbolic: bool, notes: list[str] | None = None
) -> tuple[onnx.ModelProto, bool]:
    """``proto`` with the shapes onnx infers (data propagation through shape computations),
    then, when ``symbolic`` and the ``prepare`` extra is installed, the symbolic dimensions
    (such as ``batch*seq``) onnxruntime's symbolic shape inference adds; without the extra,
    a note in ``notes``. Returns whether symbolic inference ran."""
    # Not strict: inference stops where it cannot go on, and raises nothing.
    inferred = onnx.shape_inference.infer_shapes(
        proto, check_type=False, strict_mode=False, data_prop=True
    )
    if not symbolic:
        return inferred, False
    try:
        from onnxruntime.tools.symbolic_shape_infer import (  # type: ignore[import-untyped]
            SymbolicShapeInference,
        )
    except ImportError as error:  # onnxruntime, or the sympy it uses for this, is missing
        if notes is not None:
            notes.append(
                f"symbolic shape inference skipped: {error} (pip install 'trtfast[prepare]')"
            )
        return inferred, False
    try:
        # Its infer_shapes() writes the half-inferred model into the working folder when a
        # shape stays unknown; running its steps here keeps what it inferred, writing nothing.
        engine = SymbolicShapeInference(2**31 - 1, True, False, 0)
        engine._preprocess(inferred)
        while engine.run_:
            engine._infer_impl()
        engine._update_output_from_vi()
        symbolic_model = engine.out_mp_
    except Exception as error:  # an operator it does not know, or a weight it cannot read
        logger.debug("symbolic shape inference stopped: %s", error)
        return inferred, False
    _merge_shapes(inferred, symbolic_model)
    return inferred, True


def _merge_shapes(target: onnx.ModelProto, source: onnx.ModelProto) -> None:
    """Shapes of ``source`` for the values ``target`` has none, or fewer known dims, for."""

    def known(value: onnx.ValueInfoProto) -> int:
        if not value.type.tensor_type.HasField("shape"):
            return -1
        return sum(map(_known_dim, value.type.tensor_type.shape.dim))

    current = {value.name: value for value in (*target.graph.value_info, *target.graph.output)}
    for value in (*source.graph.value_info, *source.graph.output):
        if not value.type.HasField("tensor_type"):
            continue
        mine = current.get(value.name)
        if mine is None:
            target.graph.value_info.add().CopyFrom(value)
        elif known(value) > known(mine) and mine.type.tensor_type.elem_type in (
            0,
            value.type.tensor_type.elem_type,
        ):
            mine.type.CopyFrom(value.type)


_FOLD_PASSES = 3
_FOLD_EXTRA = "constant folding needs onnx-graphsurgeon and onnxruntime"


def _folding_step(
    fold_constants: bool | None, notes: list[str]
) -> Callable[[onnx.ModelProto, set[str]], onnx.ModelProto] | None:
    """The folding step, or None (with a note) when off or, for None, not installed.

    Folding is onnx-graphsurgeon's ``fold_constants`` (NVIDIA's; what Polygraphy, which
    TensorRT's documentation recommends before parsing, runs), which evaluates constant
    subgraphs with onnxruntime: both stay in the ``prepare`` extra, onnxruntime being large.
    """
    if fold_constants is False:
        notes.append("constant folding off")
        return None
    try:
        import onnx_graphsurgeon  # type: ignore[import-untyped]  # noqa: F401
        import onnxruntime  # type: ignore[import-untyped]  # noqa: F401
    except ImportError as error:
        if fold_constants:
            raise ImportError(
                f"{_FOLD_EXTRA} ({error}): pip install 'trtfast[prepare]', or pass "
                "fold_constants=False"
            ) from error
        notes.append(f"constant folding skipped: {_FOLD_EXTRA} (pip install 'trtfast[prepare]')")
        return None
    return _fold


def _float32_constants(proto: onnx.ModelProto) -> None:
    """Constant nodes' ``value_float(s)`` as the float32 ``value`` tensor ONNX defines them
    to be: graphsurgeon (0.6) would fold them into float64 constants."""
    bodies = [*_graphs(proto.graph), *proto.functions]
    for body in bodies:
        for node in body.node:
            if node.op_type != "Constant" or node.domain not in ("", "ai.onnx"):
                continue
            for attribute in list(node.attribute):
                if attribute.name == "value_float":
                    array = np.array(attribute.f, dtype=np.float32)
                elif attribute.name == "value_floats":
                    array = np.array(list(attribute.floats), dtype=np.float32)
                else:
                    continue
                node.attribute.remove(attribute)
                node.attribute.append(
                    helper.make_attribute("value", numpy_helper.from_array(array))
                )


# Operators never folded (graphsurgeon 0.6 folds all of them): random ones are not constants
# (folding would freeze one draw, and onnxruntime aborts the process on RandomNormal with
# scale 0); quantize/dequantize on weights is how TensorRT learns a model is quantized.
_UNFOLDED_OPS = frozenset(
    {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
     "Bernoulli", "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}
)  # fmt: skip


def _fold(proto: onnx.ModelProto, parked: set[str]) -> onnx.ModelProto:
    """``proto`` with its constant subgraphs folded but for ``_UNFOLDED_OPS`` and nodes
    reading a parked weight: folding them would copy the weight, and TensorRT folds such
    weight arithmetic itself when it builds. Outputs over ``_PARK_BYTES`` are not folded, for
    the same reason."""
    import onnx_graphsurgeon as gs

    def keep(node: Any) -> bool:
        return node.op in _UNFOLDED_OPS or any(
            isinstance(tensor, gs.Constant)
            and isinstance(tensor._values, gs.ir.tensor.LazyValues)
            and _location(tensor._values.tensor) in parked
            for tensor in node.inputs
        )

    _float32_constants(proto)
    severity = gs.logger.G_LOGGER.severity
    gs.logger.G_LOGGER.severity = gs.logger.G_LOGGER.ERROR  # its per-node chatter goes to stdout
    try:
        graph = gs.import_onnx(proto)
        graph.toposort()
        graph.fold_constants(
            partitioning="recursive",
            size_threshold=_PARK_BYTES,
            should_exclude_node=keep,
        )
        graph.cleanup(remove_unused_graph_inputs=False).toposort()
        exported = gs.export_onnx(graph, do_type_check=False)
    finally:
        gs.logger.G_LOGGER.severity = severity
    # Only the graph and functions come from graphsurgeon: the model's own fields (IR version,
    # opsets, metadata) stay as they were.
    result = onnx.ModelProto()
    _copy_fields(proto, result, frozenset({"graph", "functions"}))
    result.graph.CopyFrom(exported.graph)
    result.functions.extend(exported.functions)
    return result


# ---------------------------------------------------------------------------------------------
# Precision conversion

# Operator inputs that ONNX defines as float32 whatever the rest of the operator computes in.
_FLOAT32_INPUTS: dict[str, tuple[int, ...]] = {
    "Resize": (1, 2),  # roi, scales
    "Upsample": (1,),  # scales
    "NonMaxSuppression": (0, 1, 3, 4),  # boxes, scores, iou and score thresholds
}
# Operators with no float16/bfloat16 form at all: computed in float32 between casts.
_FLOAT32_OPS = frozenset({"Range"})
# Attributes naming an output type, and the type an absent attribute means (None: the type of
# an input, which the conversion already changes).
_DTYPE_ATTRIBUTES: dict[str, tuple[str, int | None]] = {
    "Cast": ("to", None),
    "RandomNormal": ("dtype", 1),
    "RandomUniform": ("dtype", 1),
    "RandomNormalLike": ("dtype", None),
    "RandomUniformLike": ("dtype", None),
    "EyeLike": ("dtype", None),
    "Bernoulli": ("dtype", None),
    "HannWindow": ("output_datatype", 1),
    "HammingWindow": ("output_datatype", 1),
    "BlackmanWindow": ("output_datatype", 1),
    "MelWeightMatrix": ("output_datatype", 1),
}
_FLOAT16_MAX = 65504.0


def _target_type(precision: Precision) -> int:
    if precision == "fp16":
        return int(TensorProto.FLOAT16)
    if precision == "bf16":
        return int(TensorProto.BFLOAT16)
    raise ValueError(f"no float conversion for precision {precision!r}")


def convert_float_types(proto: onnx.ModelProto, precision: Precision) -> None:
    """Retype every float32 tensor of ``proto`` (in place) to fp16 or bf16, keeping the types
    of the graph's inputs and outputs through casts at the boundary."""
    target = _target_type(precision)
    if proto.functions:
        # Function bodies are typed by their callers; inlined, they convert like the rest.
        proto.CopyFrom(inliner.inline_local_functions(proto))
    types = _infer_types(proto)
    names = _Names(proto)
    keep_float = _float32_only_sources(proto.graph)
    aliases: dict[str, str] = {}
    input_casts = _cast_graph_inputs(proto.graph, target, names, types, aliases)
    output_casts = _cast_graph_outputs(proto.graph, keep_float, names, types)
    for position, graph in enumerate(_graphs(proto.graph)):
        main = position == 0
        _convert_graph(
            graph,
            _Conversion(target, types, keep_float, aliases, names),
            subgraph=not main,
            prefix=input_casts if main else [],
            suffix=output_casts if main else [],
        )
    if names.saturated:
        logger.warning(
            "%d weight values beyond float16's range (+-%g) were saturated",
            names.saturated,
            _FLOAT16_MAX,
        )


@dataclass
class _Conversion:
    target: int
    # Element types before conversion, by value name.
    types: dict[str, int]
    # Values that stay float32 (used only where ONNX requires float32).
    keep_float: set[str]
    # Converted graph input -> the float32 original, read directly where float32 is required.
    aliases: dict[str, str]
    names: _Names


class _Names:
    """Fresh value and node names that collide with none in the model."""

    def __init__(self, proto: onnx.ModelProto) -> None:
        self.used: set[str] = set()
        for graph in _graphs(proto.graph):
            self.used.update(value.name for value in graph.input)
            self.used.update(value.name for value in graph.output)
            self.used.update(tensor.name for tensor in graph.initializer)
            for node in graph.node:
                self.used.update(node.output)
                self.used.add(node.name)
        self.saturated = 0

    def fresh(self, base: str) -> str:
        name, index = base, 0
        while name in self.used:
            index += 1
            name = f"{base}_{index}"
        self.used.add(name)
        return name


def _infer_types(proto: onnx.ModelProto) -> dict[str, int]:
    """Element type of every value ONNX shape inference can type, subgraphs included.

    Inference needs only types and dims, so weights are detached for it: models of any size
    fit in one protobuf message then.
    """
    detached = _detach_weights(proto)
    try:
        inferred = onnx.shape_inference.infer_shapes(proto, check_type=False, strict_mode=False)
    finally:
        _attach_weights(detached)
    types: dict[str, int] = {}
    for graph in _graphs(inferred.graph):
        for value in (*graph.input, *graph.value_info, *graph.output):
            if value.type.HasField("tensor_type") and value.type.tensor_type.elem_type:
                types[value.name] = value.type.tensor_type.elem_type
        for tensor in graph.initializer:
            types[tensor.name] = tensor.data_type
    return types


def _float32_only_sources(graph: onnx.GraphProto) -> set[str]:
    """Initializers and Constant outputs used only where ONNX requires float32: they keep
    their type (a Resize scale rounded to fp16 would change the output size)."""
    float32_uses: dict[str, bool] = {}
    for subgraph in _graphs(graph):
        for node in subgraph.node:
            slots = _FLOAT32_INPUTS.get(node.op_type, ())
            for index, name in enumerate(node.input):
                if name:
                    float32_only = index in slots or node.op_type in _FLOAT32_OPS
                    float32_uses[name] = float32_uses.get(name, True) and float32_only
    constants = {tensor.name for subgraph in _graphs(graph) for tensor in subgraph.initializer}
    for subgraph in _graphs(graph):
        constants.update(node.output[0] for node in subgraph.node if node.op_type == "Constant")
    return {name for name in constants if float32_uses.get(name, False)}


def _convert_graph(
    graph: onnx.GraphProto,
    conversion: _Conversion,
    subgraph: bool,
    prefix: list[onnx.NodeProto],
    suffix: list[onnx.NodeProto],
) -> None:
    keep_float = conversion.keep_float
    for tensor in graph.initializer:
        if tensor.name not in keep_float:
            _convert_tensor(tensor, conversion.target, conversion.names)
    # A subgraph's inputs and outputs carry values of the converted graph around it; the main
    # graph's keep their types (casts at the boundary).
    values = [*graph.value_info, *graph.input, *graph.output] if subgraph else graph.value_info
    for value in values:
        tensor_type = value.type.tensor_type
        if value.name not in keep_float and tensor_type.elem_type == TensorProto.FLOAT:
            tensor_type.elem_type = conversion.target

    rebuilt = list(prefix)
    for original in graph.node:
        node = onnx.NodeProto()
        node.CopyFrom(original)
        if not (node.op_type == "Constant" and node.output[0] in keep_float):
            _convert_attributes(node, conversion.target, conversion.names)
        before, after = _float32_casts(node, conversion)
        rebuilt.extend([*before, node, *after])
    rebuilt.extend(suffix)
    del graph.node[:]
    graph.node.extend(rebuilt)


def _convert_attributes(node: onnx.NodeProto, target: int, names: _Names) -> None:
    for attribute in node.attribute:
        if attribute.type == onnx.AttributeProto.TENSOR:
            _convert_tensor(attribute.t, target, names)
        for tensor in attribute.tensors:
            _convert_tensor(tensor, target, names)
    if node.op_type == "Constant":
        for attribute in list(node.attribute):
            if attribute.name in ("value_float", "value_floats"):
                values = (
                    [attribute.f] if attribute.name == "value_float" else list(attribute.floats)
                )
                array = np.array(values, dtype=np.float32)
                if attribute.name == "value_float":
                    array = array.reshape(())
                tensor = numpy_helper.from_array(array)
                _convert_tensor(tensor, target, names)
                node.attribute.remove(attribute)
                node.attribute.append(helper.make_attribute("value", tensor))
    elif node.op_type == "ConstantOfShape" and not any(
        attribute.name == "value" for attribute in node.attribute
    ):
        # An absent value means a float32 zero.
        zero = numpy_helper.from_array(np.zeros(1, dtype=np.float32))
        _convert_tensor(zero, target, names)
        node.attribute.append(helper.make_attribute("value", zero))
    elif node.op_type in _DTYPE_ATTRIBUTES:
        attribute_name, default = _DTYPE_ATTRIBUTES[node.op_type]
        present = [attribute for attribute in node.attribute if attribute.name == attribute_name]
        if present:
            if present[0].i == TensorProto.FLOAT:
                present[0].i = target
        elif default == TensorProto.FLOAT:
            node.attribute.append(helper.make_attribute(attribute_name, target))


def _convert_tensor(tensor: onnx.TensorProto, target: int, names: _Names) -> None:
    if tensor.data_type != TensorProto.FLOAT:
        return
    array = numpy_helper.to_array(tensor)
    if target == TensorProto.FLOAT16:
        finite = np.isfinite(array)
        outside = finite & (np.abs(array) > _FLOAT16_MAX)
        names.saturated += int(np.count_nonzero(outside))
        array = np.where(outside, np.sign(array) * _FLOAT16_MAX, array).astype(np.float16)
    else:
        import ml_dtypes  # a dependency of onnx

        array = array.astype(ml_dtypes.bfloat16)
    converted = numpy_helper.from_array(array, tensor.name)
    converted.doc_string = tensor.doc_string
    tensor.CopyFrom(converted)


def _float32_casts(
    node: onnx.NodeProto, conversion: _Conversion
) -> tuple[list[onnx.NodeProto], list[onnx.NodeProto]]:
    """Casts around ``node`` for inputs ONNX defines as float32 and for operators that have no
    reduced-precision form."""
    names, types = conversion.names, conversion.types
    whole_op = node.op_type in _FLOAT32_OPS
    slots = range(len(node.input)) if whole_op else _FLOAT32_INPUTS.get(node.op_type, ())
    before: list[onnx.NodeProto] = []
    for index in slots:
        if index >= len(node.input):
            continue
        name = node.input[index]
        if name in conversion.aliases:
            node.input[index] = conversion.aliases[name]
            continue
        if not name or name in conversion.keep_float or types.get(name) != TensorProto.FLOAT:
            continue
        cast_output = names.fresh(f"{name}_float32")
        before.append(_cast(name, cast_output, int(TensorProto.FLOAT), names))
        node.input[index] = cast_output
    after: list[onnx.NodeProto] = []
    if whole_op:
        for index, name in enumerate(node.output):
            if name and types.get(name) == TensorProto.FLOAT:
                float32_output = names.fresh(f"{name}_float32")
                node.output[index] = float32_output
                after.append(_cast(float32_output, name, conversion.target, names))
    return before, after


def _cast(source: str, output: str, to: int, names: _Names) -> onnx.NodeProto:
    return helper.make_node("Cast", [source], [output], to=to, name=names.fresh(f"{output}_cast"))


def _rename_uses(graph: onnx.GraphProto, old: str, new: str) -> None:
    for subgraph in _graphs(graph):
        for node in subgraph.node:
            for index, name in enumerate(node.input):
                if name == old:
                    node.input[index] = new


def _cast_graph_inputs(
    graph: onnx.GraphProto,
    target: int,
    names: _Names,
    types: dict[str, int],
    aliases: dict[str, str],
) -> list[onnx.NodeProto]:
    """float32 inputs stay float32 for the caller and are cast once where the graph starts."""
    initializers = {tensor.name for tensor in graph.initializer}
    casts = []
    for value in graph.input:
        if value.type.tensor_type.elem_type != TensorProto.FLOAT or value.name in initializers:
            continue
        converted = names.fresh(f"{value.name}_{_TYPE_SUFFIX[target]}")
        _rename_uses(graph, value.name, converted)
        types[converted] = int(TensorProto.FLOAT)
        aliases[converted] = value.name
        casts.append(_cast(value.name, converted, target, names))
    return casts


def _cast_graph_outputs(
    graph: onnx.GraphProto, keep_float: set[str], names: _Names, types: dict[str, int]
) -> list[onnx.NodeProto]:
    """float32 outputs stay float32: the value computed in reduced precision is renamed and
    cast back where the graph ends."""
    inputs = {value.name for value in graph.input}
    casts = []
    for value in graph.output:
        name = value.name
        if value.type.tensor_type.elem_type != TensorProto.FLOAT:
            continue
        if name in inputs or name in keep_float:
            continue
        converted = names.fresh(f"{name}_reduced")
        for subgraph in _graphs(graph):
            for node in subgraph.node:
                for index, output in enumerate(node.output):
                    if output == name:
                        node.output[index] = converted
        for tensor in graph.initializer:
            if tensor.name == name:
                tensor.name = converted
        for info in graph.value_info:
            if info.name == name:
                info.name = converted
        _rename_uses(graph, name, converted)
        types[converted] = int(TensorProto.FLOAT)
        casts.append(_cast(converted, name, int(TensorProto.FLOAT), names))
    return casts


_TYPE_SUFFIX = {10: "fp16", 16: "bf16"}
