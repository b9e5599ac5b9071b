"""Precision conversion for strongly typed networks: fp16/bf16 retype the model while its inputs
and outputs keep their types; int8/fp8 need a quantized model."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import numpy as np

from ..errors import BuildError, BuildOptionError

with contextlib.suppress(ImportError):  # the [build] extra is optional: see require_build_extra
    import onnx
    from onnx import TensorProto, helper, inliner, numpy_helper

from .._choices import PRECISIONS, Precision
from ._loading import _attach_weights, _detach_weights, _graphs

logger = logging.getLogger("trtfast.prepare")


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
