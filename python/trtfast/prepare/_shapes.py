"""Shape inference (onnx's, then onnxruntime's symbolic inference) and constant folding
(onnx-graphsurgeon, evaluated by onnxruntime)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

import numpy as np

with contextlib.suppress(ImportError):  # the [build] extra is optional: see require_build_extra
    import onnx
    from onnx import helper, numpy_helper

from . import _loading
from ._loading import _copy_fields, _graphs, _location

logger = logging.getLogger("trtfast.prepare")


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
            size_threshold=_loading._PARK_BYTES,  # one setting, read where it is set
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


def _strict_inference_error(proto: onnx.ModelProto) -> str | None:
    """Why onnx's strict shape inference (types checked, data propagated) refuses ``proto``, or
    None. Its messages name the node (op type and name)."""
    try:
        onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True, data_prop=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError) as error:
        return str(error).strip()
    return None


def _runtime_error(proto: onnx.ModelProto) -> str | None:
    """Why onnxruntime cannot load ``proto`` (every weight in it), or None; None too where
    onnxruntime is not installed."""
    try:
        import onnxruntime
    except ImportError:
        return None
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3  # errors only: the exception carries them
    try:
        onnxruntime.InferenceSession(
            proto.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
    except Exception as error:  # onnxruntime's own exception types differ between releases
        return str(error).strip()
    return None
