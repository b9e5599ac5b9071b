"""Every ONNX-level transform trtfast applies before TensorRT parses a model.

Loading (a path, with or without external weights; bytes; an ``onnx.ModelProto``), hashing,
and precision conversion for strongly typed networks (TensorRT 11: reduced precision comes from
the model's own types, so fp16/bf16 convert the model while its inputs and outputs keep their
types).

Why a pass of our own rather than a library: onnxconverter-common does fp16 only, leaves a
model's own ``Cast(to=FLOAT)`` nodes in place (so a converted model that casts a mask to float
no longer type-checks), clamps weights at 1e4 and keeps Min/Max/TopK/CumSum in fp32 for ONNX
Runtime's sake; NVIDIA ModelOpt AutoCast converts to both types but needs torch and pins onnx
and onnxruntime-gpu versions, far too heavy for building an engine. Retyping is a small pass:
every float32 source (weights, constants, casts, dtype attributes, inputs through a cast)
becomes the target type, types propagate through the graph, and the few operator inputs ONNX
defines as float32 only get a cast back.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from .errors import BuildError, BuildOptionError
from .profiles import ModelInput

try:
    import onnx
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


def prepare(model: ModelSource, precision: str | None = None) -> onnx.ModelProto:
    """The model as a strongly typed TensorRT network gets it for ``precision``.

    fp16 and bf16 convert every float32 tensor of the model while its inputs and outputs keep
    their types; fp32 returns the model unchanged; int8 and fp8 require a quantized model and
    return it unchanged. External weights are read into the returned model. The caller's
    ``onnx.ModelProto`` is never modified.
    """
    require_build_extra()
    target = normalize_precision(precision)
    loaded = load(model)
    proto = loaded.proto if loaded.owned else _copy(loaded.proto)
    if loaded.folder is not None and _external_locations(proto):
        onnx.load_external_data_for_model(proto, loaded.folder)
    require_quantized(proto, target)
    if target in ("fp16", "bf16"):
        convert_float_types(proto, target)
    return proto


def _copy(proto: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    return copy


@contextlib.contextmanager
def parser_input(
    loaded: LoadedModel, precision: Precision, convert: bool
) -> Iterator[tuple[bytes, str | None]]:
    """(ONNX bytes, folder of external weights) for the parser, converted when ``convert``.

    A model too large for one protobuf message goes through a temporary folder, removed on
    exit; without conversion, external weights are read by the parser from their own folder.
    """
    proto, folder = loaded.proto, loaded.folder
    if convert and precision in ("fp16", "bf16"):
        proto = proto if loaded.owned else _copy(proto)
        if folder is not None and _external_locations(proto):
            onnx.load_external_data_for_model(proto, folder)
            folder = None
        convert_float_types(proto, precision)
    if proto.ByteSize() <= _PROTOBUF_LIMIT:
        yield proto.SerializeToString(), folder
        return
    with tempfile.TemporaryDirectory(prefix="trtfast-model-") as temporary:
        yield _serialize_with_external_weights(proto, Path(temporary)), temporary


_WEIGHTS_FILE = "weights.bin"


def _serialize_with_external_weights(proto: onnx.ModelProto, folder: Path) -> bytes:
    """The model's bytes with every weight moved to ``folder/weights.bin``. ``proto`` is left
    as it was (it may be the caller's)."""
    detached = _detach_weights(proto)
    located = [tensor.HasField("data_location") for tensor, _ in detached]
    try:
        with open(folder / _WEIGHTS_FILE, "wb") as stream:
            for tensor, raw in detached:
                offset = stream.tell()
                stream.write(raw)
                tensor.data_location = TensorProto.EXTERNAL
                entries = (("location", _WEIGHTS_FILE), ("offset", offset), ("length", len(raw)))
                for key, value in entries:
                    entry = tensor.external_data.add()
                    entry.key, entry.value = key, str(value)
        serialized: bytes = proto.SerializeToString()
        return serialized
    finally:
        for (tensor, _), had_location in zip(detached, located, strict=True):
            tensor.data_location = TensorProto.DEFAULT
            if not had_location:
                tensor.ClearField("data_location")
            del tensor.external_data[:]
        _attach_weights(detached)


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
