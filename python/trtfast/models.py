"""Small models that come with trtfast: made with onnx on first use (nothing is downloaded) and
kept as .onnx files in trtfast's cache folder.

``trtfast.models.path("cnn")`` gives the file, ready for ``trtfast.build``;
``trtfast.models.shapes("cnn")`` the optimization profile to build it with, and
``trtfast.models.inputs("cnn", batch=8)`` a call's inputs. Weights come from a fixed seed, so
every machine makes the same bytes (and engine caches hit).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .prepare import require_build_extra
from .profiles import ShapeRange

if TYPE_CHECKING:
    import onnx

_OPSET = 17
_IR_VERSION = 8  # read by every TensorRT 10 and 11 ONNX parser


@dataclass(frozen=True)
class BundledModel:
    name: str
    description: str
    #: the optimization profile it is built with: input -> (min, opt, max)
    shapes: dict[str, ShapeRange]
    make: Callable[[], onnx.ModelProto]


def cache_dir() -> Path:
    """trtfast's cache folder: ``$TRTFAST_CACHE_DIR``, else ``$XDG_CACHE_HOME/trtfast``, else
    ``~/.cache/trtfast``."""
    explicit = os.environ.get("TRTFAST_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "trtfast"


def names() -> tuple[str, ...]:
    """The bundled models' names."""
    return tuple(_MODELS)


def describe(name: str) -> str:
    return _model(name).description


def model(name: str) -> onnx.ModelProto:
    """A new ``onnx.ModelProto`` of the bundled model ``name``."""
    require_build_extra()
    return _model(name).make()


def path(name: str, folder: str | os.PathLike[str] | None = None) -> Path:
    """The .onnx file of the bundled model ``name`` in ``folder`` (default: ``cache_dir() /
    "models"``), written there when it is missing or differs from the model trtfast makes."""
    from ._files import atomic_write

    data = model(name).SerializeToString()
    target = Path(folder) if folder is not None else cache_dir() / "models"
    file = target / f"{name}.onnx"
    if not (file.is_file() and file.read_bytes() == data):
        target.mkdir(parents=True, exist_ok=True)
        atomic_write(file, data)
    return file


def shapes(name: str) -> dict[str, ShapeRange]:
    """The optimization profile the model ``name`` is built with: input -> (min, opt, max)."""
    return dict(_model(name).shapes)


def inputs(name: str, batch: int | None = None, seed: int = 0) -> dict[str, np.ndarray[Any, Any]]:
    """Random inputs for one call of the model ``name``; ``batch`` defaults to the profile's
    opt batch and must lie within its min and max."""
    result = {}
    generator = np.random.default_rng(seed)
    for input_name, (low, opt, high) in _model(name).shapes.items():
        size = opt[0] if batch is None else batch
        if not low[0] <= size <= high[0]:
            raise ValueError(
                f"batch {size} is outside model {name!r}'s profile ({low[0]} to {high[0]})"
            )
        shape = (size, *opt[1:])
        result[input_name] = generator.standard_normal(shape).astype(np.float32)
    return result


def _model(name: str) -> BundledModel:
    if name not in _MODELS:
        raise ValueError(f"no bundled model {name!r}; the models are {', '.join(_MODELS)}")
    return _MODELS[name]


# ---------------------------------------------------------------------------------------------
# The models


def _weights(name: str, shape: tuple[int, ...], fan_in: int, seed: int) -> onnx.TensorProto:
    from onnx import numpy_helper

    # He initialization keeps activations near unit scale, well within fp16's range.
    scale = np.sqrt(2.0 / fan_in)
    values = np.random.default_rng(seed).normal(0.0, scale, size=shape).astype(np.float32)
    return numpy_helper.from_array(values, name)


def _finish(graph: onnx.GraphProto) -> onnx.ModelProto:
    import onnx
    from onnx import helper

    made = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", _OPSET)], producer_name="trtfast"
    )
    made.ir_version = _IR_VERSION
    onnx.checker.check_model(made)
    return made


def _cnn() -> onnx.ModelProto:
    """images [batch, 3, 32, 32] -> two conv blocks -> global pool -> logits [batch, 10]."""
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Conv", ["images", "conv1_w", "conv1_b"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "conv2_w", "conv2_b"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], transB=1),
    ]
    weights = [
        _weights("conv1_w", (16, 3, 3, 3), 27, 1),
        _weights("conv1_b", (16,), 27, 2),
        _weights("conv2_w", (32, 16, 3, 3), 144, 3),
        _weights("conv2_b", (32,), 144, 4),
        _weights("fc_w", (10, 32), 32, 5),
        _weights("fc_b", (10,), 32, 6),
    ]
    graph = helper.make_graph(
        nodes,
        "trtfast_cnn",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        weights,
    )
    return _finish(graph)


def _mlp() -> onnx.ModelProto:
    """features [batch, 64] -> 128 -> 64 (ReLU) -> scores [batch, 16]."""
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Gemm", ["features", "fc1_w", "fc1_b"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["a1"]),
        helper.make_node("Gemm", ["a1", "fc2_w", "fc2_b"], ["h2"]),
        helper.make_node("Relu", ["h2"], ["a2"]),
        helper.make_node("Gemm", ["a2", "fc3_w", "fc3_b"], ["scores"]),
    ]
    weights = [
        _weights("fc1_w", (64, 128), 64, 11),
        _weights("fc1_b", (128,), 64, 12),
        _weights("fc2_w", (128, 64), 128, 13),
        _weights("fc2_b", (64,), 128, 14),
        _weights("fc3_w", (64, 16), 64, 15),
        _weights("fc3_b", (16,), 64, 16),
    ]
    graph = helper.make_graph(
        nodes,
        "trtfast_mlp",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 16])],
        weights,
    )
    return _finish(graph)


_MODELS = {
    "cnn": BundledModel(
        "cnn",
        "a small image classifier: images [batch, 3, 32, 32] -> logits [batch, 10]",
        {"images": ((1, 3, 32, 32), (8, 3, 32, 32), (32, 3, 32, 32))},
        _cnn,
    ),
    "mlp": BundledModel(
        "mlp",
        "a three-layer perceptron: features [batch, 64] -> scores [batch, 16]",
        {"features": ((1, 64), (8, 64), (64, 64))},
        _mlp,
    ),
}

__all__ = ["BundledModel", "cache_dir", "describe", "inputs", "model", "names", "path", "shapes"]
