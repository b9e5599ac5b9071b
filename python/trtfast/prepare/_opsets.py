"""Opset conversion: the opsets TensorRT's ONNX parser imports, and onnx's version converter with
the repairs it needs."""

from __future__ import annotations

import contextlib
import logging

from ..errors import BuildError

with contextlib.suppress(ImportError):  # the [build] extra is optional: see require_build_extra
    import onnx
    import onnx.version_converter
    from onnx import helper

from ._loading import require_build_extra
from ._precision import _Names

logger = logging.getLogger("trtfast.prepare")


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


def _installed_tensorrt() -> str | None:
    from .._library import tensorrt_library
    from ..errors import TensorRTUnavailableError

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
    where A does, which makes k the alignment the converter already handles. PRelu's 1-D slopes,
    per channel before opset 7, which the converter leaves as they are, get the same treatment."""
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
            and node.op_type == "PRelu"
            and ranks.get(node.input[0], 0) >= 3
            and ranks.get(node.input[1]) == 1
        ):
            # Before opset 7 a 1-D slope is per channel (axis 1); after, it would broadcast
            # against the last axis. (C,) becomes (C, 1, ..., 1), which means the same in both.
            axes = list(range(1, ranks[node.input[0]] - 1))
            _unsqueeze_second_input(node, axes, "per_channel", names, rebuilt)
        elif (
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
                axes = list(range(rank_b, rank_b + trailing))
                _unsqueeze_second_input(node, axes, "aligned", names, rebuilt)
                attributes["axis"].i = axis
        rebuilt.append(node)
    if len(rebuilt) != len(proto.graph.node):
        copies = [onnx.NodeProto() for _ in rebuilt]
        for copy, node in zip(copies, rebuilt, strict=True):
            copy.CopyFrom(node)
        del proto.graph.node[:]
        proto.graph.node.extend(copies)


def _unsqueeze_second_input(
    node: onnx.NodeProto, axes: list[int], suffix: str, names: _Names, rebuilt: list[onnx.NodeProto]
) -> None:
    """Feeds ``node`` its second input unsqueezed at ``axes`` (opset < 13: axes an attribute),
    by a node appended to ``rebuilt``."""
    unsqueezed = names.fresh(f"{node.input[1]}_{suffix}")
    rebuilt.append(
        helper.make_node(
            "Unsqueeze",
            [node.input[1]],
            [unsqueezed],
            axes=axes,
            name=names.fresh(f"{unsqueezed}_unsqueeze"),
        )
    )
    node.input[1] = unsqueezed
