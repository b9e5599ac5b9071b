"""Loading a model (a path, with or without external weights; bytes; an ``onnx.ModelProto``),
hashing it, and parking its large weights: a model with weights in external files is prepared
without reading them, and they are read once, by the parser or when the result is written."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import BuildError, BuildOptionError
from ..profiles import ModelInput

try:
    import onnx
    import onnx.external_data_helper
    from onnx import TensorProto, numpy_helper

    _ONNX_IMPORT_ERROR: ImportError | None = None
except ImportError as _error:  # the [build] extra is optional; entry points say what to install
    _ONNX_IMPORT_ERROR = _error

if TYPE_CHECKING:
    ModelSource = str | os.PathLike[str] | bytes | onnx.ModelProto


logger = logging.getLogger("trtfast.prepare")


# Protobuf cannot serialize a message of 2 GiB or more; larger models go to the parser as a
# file with external weights.
_PROTOBUF_LIMIT = 2**31 - 1


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
            # Exporters write an unnamed dynamic dimension as -1 too.
            dims = tuple(
                dim.dim_value
                if dim.HasField("dim_value") and dim.dim_value >= 0
                else (dim.dim_param or None)
                for dim in tensor_type.shape.dim
            )
        inputs.append(ModelInput(value.name, dims))
    return inputs


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


# Tensors this large stay out of the graph while it is transformed (see _park): the
# transforms never copy them, and they are read once, when the result is written.
_PARK_BYTES = 1 << 20
_PARKED = "trtfast-parked/"


@dataclass
class _Source:
    """Where a parked tensor's data is: the tensor itself (inline) or a span of a file."""

    tensor: onnx.TensorProto
    path: Path | None = None
    offset: int = 0
    length: int = 0


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
