"""Every ONNX-level transform trtfast applies before TensorRT parses a model.

Loading (a path, with or without external weights; bytes; an ``onnx.ModelProto``) and hashing;
preparation for the parser (opset conversion, constant folding, shape inference), done by onnx
and maintained libraries; and precision conversion for strongly typed networks (TensorRT 11:
reduced precision comes from the model's own types, so fp16/bf16 convert the model while its
inputs and outputs keep their types).

Preparation keeps large weights out of the graph it transforms (see ``_loading._park``): a model
with weights in external files is prepared without reading them, and they are read once, by the
parser or when the result is written.

One module per part, each readable alone: ``_loading`` (loading, hashing, weight parking),
``_opsets`` (opset conversion), ``_shapes`` (shape inference and constant folding),
``_precision`` (precision conversion). This module runs them in order and is the public API.

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
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._choices import PRECISIONS, PREPARE_MODES, Precision, PrepareMode
from ..errors import BuildError, BuildOptionError
from . import _loading
from ._loading import (
    LoadedModel,
    _copy_span,
    _external_locations,
    _inline_bytes,
    _location,
    _park,
    _read_span,
    _replacing,
    _restore,
    _serialized,
    _set_external,
    _Source,
    load,
    model_inputs,
    require_build_extra,
    save_model,
)
from ._opsets import (
    _convert_opset,
    _default_opset,
    _installed_tensorrt,
    _target_opset,
    parser_opsets,
)
from ._precision import (
    convert_float_types,
    is_quantized,
    normalize_precision,
    require_quantized,
)
from ._shapes import (
    _FOLD_PASSES,
    _folding_step,
    _infer_shapes,
    _runtime_error,
    _strict_inference_error,
    _values_with_shapes,
)

with contextlib.suppress(ImportError):  # the [build] extra is optional: see require_build_extra
    import onnx
    from onnx import TensorProto

if TYPE_CHECKING:
    from ._loading import ModelSource

__all__ = [
    "PRECISIONS",
    "PREPARE_MODES",
    "LoadedModel",
    "ModelSource",
    "Precision",
    "PrepareMode",
    "PrepareReport",
    "PreparedModel",
    "convert_float_types",
    "is_quantized",
    "load",
    "model_inputs",
    "normalize_precision",
    "parser_input",
    "parser_opsets",
    "prepare",
    "prepare_model",
    "prepare_with_report",
    "require_build_extra",
    "require_quantized",
    "save_model",
]

logger = logging.getLogger("trtfast.prepare")


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
        if not external and self.proto.ByteSize() + self.weights_size() <= _loading._PROTOBUF_LIMIT:
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
        if not files and self.proto.ByteSize() + self.weights_size() <= _loading._PROTOBUF_LIMIT:
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
            self._write_weights(Path(temporary) / _loading._WEIGHTS_FILE, _loading._WEIGHTS_FILE)
            yield self.proto.SerializeToString(), temporary


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
    prepared = PreparedModel(proto, sources, report)
    _check_not_worse(prepared, loaded)
    return prepared


# onnxruntime checks prepared models of up to this much weight: it reads every weight, which
# preparation itself never does.
_RUNTIME_CHECK_BYTES = 64 << 20


def _check_not_worse(prepared: PreparedModel, loaded: LoadedModel) -> None:
    """Preparation never returns a model worse than the one it got: the prepared model passes
    onnx's strict shape inference, and loads in onnxruntime (where installed, and for models of
    up to ``_RUNTIME_CHECK_BYTES`` of weights), wherever the model as given does."""
    failure = _failed_check(prepared)
    if failure is None:
        return
    checker, error = failure
    skeleton, sources = _park(loaded)  # the model as given, its large weights still unread
    if _failed_check(PreparedModel(skeleton, sources, prepared.report), checker) is not None:
        return  # it fails as given too: preparation made nothing worse
    raise BuildError(
        f"preparation broke the model: {checker} refuses the prepared model and accepts the "
        f"model as given. {error} (preparation did: {prepared.report.summary()}); pass "
        "prepare='never' to build the model as given"
    )


_STRICT_INFERENCE = "onnx's strict shape inference"
_RUNTIME = "onnxruntime"


def _failed_check(model: PreparedModel, only: str | None = None) -> tuple[str, str] | None:
    """(checker, its error) for the first check ``model`` fails; ``only`` runs just that one."""
    if only in (None, _STRICT_INFERENCE):
        error = _strict_inference_error(model.proto)
        if error is not None:
            return _STRICT_INFERENCE, error
    if only in (None, _RUNTIME) and model.weights_size() <= _RUNTIME_CHECK_BYTES:
        # A copy gets the weights: ``model`` keeps its parked ones.
        complete = PreparedModel(_copy(model.proto), dict(model.sources), model.report)
        error = _runtime_error(complete.to_proto())
        if error is not None:
            return _RUNTIME, error
    return None
