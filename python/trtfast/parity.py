"""Parity of the two paths: trtfast's C++ core (:class:`trtfast.Engine`) and TensorRT's Python
API (:class:`trtfast.reference.Engine`) run one engine file on the same inputs, and each output
is compared: max absolute error, max relative error, cosine similarity, and how many elements
fall outside ``atol + rtol * |reference|``.

``trtfast.compare(path)`` draws random inputs inside the engine's optimization profile (seeded,
typed as the engine wants them); ``trtfast compare ENGINE`` is the command.

``trtfast.compare(path, onnx=model)`` (``trtfast compare ENGINE --onnx model.onnx``) compares the
engine with onnxruntime running the ONNX model instead, as ``polygraphy run --trt --onnxrt``
does: does the engine, after an fp16 or int8 build, still compute what the model computes?
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import TrtfastError

if TYPE_CHECKING:
    from .engine import Engine
    from .engine_file import TensorSpec
    from .prepare import ModelSource

#: Integers drawn for integer inputs: [low, high). Small and non-negative, so inputs that index
#: (token ids, gather indices) stay valid for any table of 16 entries or more.
INT_RANGE = (0, 16)

#: Default (rtol, atol) per output dtype. Both paths run the same plan on the same GPU, so they
#: normally agree bit for bit; the slack covers kernels whose reductions are not deterministic.
TOLERANCES: dict[str, tuple[float, float]] = {
    "float32": (1e-4, 1e-5),
    "float16": (1e-2, 1e-3),
    "bfloat16": (2e-2, 1e-2),
    "float8_e4m3fn": (1.25e-1, 1e-2),
    "float8_e8m0fnu": (0.0, 0.0),
}
_EXACT = (0.0, 0.0)  # integers and booleans

#: Default (rtol, atol) of an engine against onnxruntime, by the precision the engine computes
#: in: the lower of its output's dtype and its build precision. TensorRT picks other kernels
#: (TF32 included for fp32), so even fp32 engines differ in the last bits; int8 and fp8 are
#: quantized and differ by a quantization step.
ONNX_TOLERANCES: dict[str, tuple[float, float]] = {
    "float32": (1e-3, 1e-4),
    "float16": (1e-2, 1e-2),
    "bfloat16": (5e-2, 5e-2),
    "int8": (1e-1, 1e-1),
    "float8_e4m3fn": (1.25e-1, 1e-1),
}
_PRECISION_DTYPES = {
    "fp16": "float16",
    "bf16": "bfloat16",
    "int8": "int8",
    "fp8": "float8_e4m3fn",
}
_COARSENESS = ("float32", "float16", "bfloat16", "int8", "float8_e4m3fn")

_FLOAT_DTYPES = ("float32", "float16", "bfloat16", "float8_e4m3fn")
_PACKED_DTYPES = ("int4", "float4_e2m1fn")


def tolerances(dtype: str) -> tuple[float, float]:
    """The default (rtol, atol) for outputs of ``dtype``: exact for integers and booleans."""
    return TOLERANCES.get(dtype, _EXACT)


def onnx_tolerances(dtype: str, precision: str | None = None) -> tuple[float, float]:
    """The default (rtol, atol) of an engine's output of ``dtype`` against onnxruntime, for an
    engine built with ``precision`` ("fp32", "fp16", "bf16", "int8", "fp8" or None): exact for
    integers and booleans, else :data:`ONNX_TOLERANCES` of the coarser of the two."""
    if dtype not in _COARSENESS:
        return TOLERANCES.get(dtype, _EXACT)  # float8_e8m0fnu, integers, booleans
    computed = _PRECISION_DTYPES.get(precision or "fp32", "float32")
    coarser = max(dtype, computed, key=_COARSENESS.index)
    return ONNX_TOLERANCES[coarser]


# --- inputs ------------------------------------------------------------------------------------


def input_shape(spec: TensorSpec, *, batch: int | None = None, profile: int = 0) -> tuple[int, ...]:
    """The shape a call gives input ``spec``: its static shape, else the optimization profile's
    opt shape, with the first dimension set to ``batch`` where that dimension is dynamic.
    ValueError names the input and the allowed range when ``batch`` is outside the profile."""
    if -1 not in spec.shape:
        return tuple(spec.shape)
    if not spec.profiles:
        raise ValueError(
            f"input '{spec.name}' has the dynamic shape {list(spec.shape)} and the engine records "
            "no optimization profile for it; pass the inputs yourself"
        )
    if not 0 <= profile < len(spec.profiles):
        raise ValueError(
            f"profile {profile} does not exist: input '{spec.name}' has {len(spec.profiles)} "
            f"optimization profile(s), numbered from 0"
        )
    low, opt, high = spec.profiles[profile]
    shape = list(opt)
    if batch is not None and spec.shape[0] == -1:
        if not low[0] <= batch <= high[0]:
            raise ValueError(
                f"batch {batch} is outside profile {profile} of input '{spec.name}': its first "
                f"dimension ranges from {low[0]} to {high[0]}"
            )
        shape[0] = batch
    return tuple(shape)


def random_inputs(
    specs: Sequence[TensorSpec],
    *,
    batch: int | None = None,
    shapes: Mapping[str, Sequence[int]] | None = None,
    profile: int = 0,
    seed: int = 0,
    int_range: tuple[int, int] = INT_RANGE,
) -> dict[str, np.ndarray[Any, Any]]:
    """Random inputs for one call of an engine whose inputs are ``specs`` (``engine.inputs`` or
    ``trtfast.inspect(path).inputs``), shaped as ``shapes`` says (input name -> shape, as
    trtexec's and ``trtfast run``'s ``--shapes``), else by :func:`input_shape`.

    Floating-point inputs are standard normal, integers uniform in ``int_range`` ([low, high)),
    booleans fair coin flips; the same seed gives the same arrays.
    """
    _check_int("seed", seed, minimum=0)
    if batch is not None:
        _check_int("batch", batch, minimum=1)
        if not any(spec.shape[:1] == (-1,) for spec in specs):
            raise ValueError("batch: no input of this engine has a dynamic first dimension")
    low, high = int_range
    if not (isinstance(low, int) and isinstance(high, int) and low < high):
        raise ValueError(f"int_range must be two ints (low, high) with low < high, not {int_range}")
    given = _check_shapes(specs, shapes, batch)
    generator = np.random.default_rng(seed)
    return {
        spec.name: _random_array(
            spec,
            given.get(spec.name) or input_shape(spec, batch=batch, profile=profile),
            generator,
            low,
            high,
        )
        for spec in specs
    }


def _check_shapes(
    specs: Sequence[TensorSpec], shapes: Mapping[str, Sequence[int]] | None, batch: int | None
) -> dict[str, tuple[int, ...]]:
    if not shapes:
        return {}
    if batch is not None:
        raise ValueError("pass either shapes or batch, not both")
    names = [spec.name for spec in specs]
    result = {}
    for name, shape in shapes.items():
        if name not in names:
            raise ValueError(
                f"shapes names {name!r}, which is not an input; the inputs are {names}"
            )
        dims = tuple(int(dim) for dim in shape)
        if any(dim < 0 for dim in dims):
            raise ValueError(f"shapes: input {name!r} needs a full shape, not {list(dims)}")
        result[name] = dims
    return result


def check_call_inputs(
    inputs: object, batch: int | None, shapes: Mapping[str, Sequence[int]] | None = None
) -> None:
    """Checks ``inputs``, ``batch`` and ``shapes`` as :func:`call_inputs` takes them, before
    anything loads."""
    if inputs is not None:
        if batch is not None or shapes:
            raise ValueError("pass either inputs or batch/shapes (of random inputs), not both")
        if not isinstance(inputs, Mapping):
            raise TypeError(f"inputs must map input names to arrays, not {type(inputs).__name__}")


def call_inputs(
    specs: Sequence[TensorSpec],
    inputs: Mapping[str, Any] | None,
    *,
    batch: int | None = None,
    shapes: Mapping[str, Sequence[int]] | None = None,
    seed: int = 0,
) -> dict[str, np.ndarray[Any, Any]]:
    """The inputs of a compared or measured call: the caller's ``inputs`` as contiguous numpy
    arrays, or else :func:`random_inputs` for ``specs`` with ``batch``, ``shapes`` and
    ``seed``."""
    check_call_inputs(inputs, batch, shapes)
    if inputs is None:
        return random_inputs(specs, batch=batch, shapes=shapes, seed=seed)
    return {name: np.ascontiguousarray(value) for name, value in inputs.items()}


def numpy_dtype(name: str, dtype: str) -> np.dtype[Any]:
    """numpy's dtype for tensor ``name`` of ``dtype`` (bfloat16 and float8 through ml_dtypes)."""
    from .reference.runtime import _numpy_dtype

    return _numpy_dtype(name, dtype)


def _random_array(
    spec: TensorSpec,
    shape: tuple[int, ...],
    generator: np.random.Generator,
    low: int,
    high: int,
) -> np.ndarray[Any, Any]:
    if spec.dtype in _PACKED_DTYPES:
        raise TrtfastError(
            f"input '{spec.name}' has the packed dtype {spec.dtype}, which trtfast sessions do "
            "not support"
        )
    dtype = numpy_dtype(spec.name, spec.dtype)
    if spec.dtype in _FLOAT_DTYPES:
        return generator.standard_normal(shape, dtype=np.float32).astype(dtype)
    if spec.dtype == "float8_e8m0fnu":  # a scale: powers of two only
        return np.exp2(generator.integers(-4, 5, size=shape)).astype(np.float32).astype(dtype)
    if spec.dtype == "bool":
        return generator.random(shape) < 0.5
    info = np.iinfo(dtype)
    if low < info.min or high - 1 > info.max:
        raise ValueError(
            f"input '{spec.name}' is {spec.dtype} ({info.min} to {info.max}); int_range "
            f"({low}, {high}) does not fit it"
        )
    return generator.integers(low, high, size=shape, dtype=dtype)


def _check_int(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, not {value!r}")


def _check_tolerance(name: str, value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number >= 0, not {value!r}")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, not {value!r}")


# --- comparing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputComparison:
    """One output of the C++ path (``actual``) against the reference path (``expected``)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    reference_dtype: str
    reference_shape: tuple[int, ...]
    #: max |actual - expected|; inf where the shapes differ or only one side is NaN or infinite
    max_abs_error: float
    #: max |actual - expected| / |expected| over the elements where expected is not 0
    max_rel_error: float
    #: of the two outputs as flat vectors; 1.0 for two zero vectors, NaN with non-finite values
    cosine_similarity: float
    #: elements outside atol + rtol * |expected| (NaN matches NaN, inf matches the same inf)
    mismatches: int
    size: int
    rtol: float
    atol: float

    @property
    def passed(self) -> bool:
        return (
            self.mismatches == 0
            and self.shape == self.reference_shape
            and self.dtype == self.reference_dtype
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dtype": self.dtype,
            "shape": list(self.shape),
            "reference_dtype": self.reference_dtype,
            "reference_shape": list(self.reference_shape),
            "max_abs_error": json_float(self.max_abs_error),
            "max_rel_error": json_float(self.max_rel_error),
            "cosine_similarity": json_float(self.cosine_similarity),
            "mismatches": self.mismatches,
            "size": self.size,
            "rtol": self.rtol,
            "atol": self.atol,
            "passed": self.passed,
        }


def compare_arrays(
    actual: Any,
    expected: Any,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    name: str = "output",
) -> OutputComparison:
    """Compares ``actual`` with ``expected`` element by element (in float64): the errors, the
    cosine similarity and the count of elements outside ``atol + rtol * |expected|``.
    ``rtol``/``atol`` default to :func:`tolerances` of ``expected``'s dtype."""
    _check_tolerance("rtol", rtol)
    _check_tolerance("atol", atol)
    a, b = np.asarray(actual), np.asarray(expected)
    default_rtol, default_atol = tolerances(b.dtype.name)
    rtol = default_rtol if rtol is None else float(rtol)
    atol = default_atol if atol is None else float(atol)
    common = {
        "name": name,
        "dtype": a.dtype.name,
        "shape": tuple(a.shape),
        "reference_dtype": b.dtype.name,
        "reference_shape": tuple(b.shape),
        "size": int(b.size),
        "rtol": rtol,
        "atol": atol,
    }
    if a.shape != b.shape:
        return OutputComparison(
            **common,
            max_abs_error=math.inf,
            max_rel_error=math.inf,
            cosine_similarity=math.nan,
            mismatches=max(int(a.size), int(b.size)),
        )
    x, y = a.astype(np.float64), b.astype(np.float64)
    same = (x == y) | (np.isnan(x) & np.isnan(y))
    finite = np.isfinite(x) & np.isfinite(y)
    with np.errstate(invalid="ignore"):  # inf - inf, 0 * inf: settled by `same` and `finite`
        diff = np.abs(x - y)
        diff[same] = 0.0
        diff[np.isnan(diff)] = math.inf  # NaN against a number
        bad = ~same & (~finite | (diff > atol + rtol * np.abs(y)))
    nonzero = finite & (y != 0)
    relative = diff[nonzero] / np.abs(y[nonzero])
    return OutputComparison(
        **common,
        max_abs_error=float(diff.max()) if diff.size else 0.0,
        max_rel_error=float(relative.max()) if relative.size else 0.0,
        cosine_similarity=cosine_similarity(x, y),
        mismatches=int(np.count_nonzero(bad)),
    )


def cosine_similarity(actual: Any, expected: Any) -> float:
    """Cosine of the angle between two arrays as flat vectors: 1.0 for two zero (or empty)
    vectors, 0.0 when only one is zero, NaN when either holds NaN or infinity."""
    x = np.asarray(actual, dtype=np.float64).ravel()
    y = np.asarray(expected, dtype=np.float64).ravel()
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        return math.nan
    # Scaled first, so squares of large values do not overflow.
    scale = max(float(np.abs(x).max(initial=0.0)), float(np.abs(y).max(initial=0.0)))
    if scale == 0.0:
        return 1.0
    x, y = x / scale, y / scale
    norms = float(np.linalg.norm(x)) * float(np.linalg.norm(y))
    if norms == 0.0:
        return 0.0
    return max(-1.0, min(1.0, float(np.dot(x, y)) / norms))


def json_float(value: float) -> float | str:
    """``value`` for JSON: infinities and NaN as the strings "inf", "-inf" and "nan"."""
    return value if math.isfinite(value) else str(value)


@dataclass(frozen=True)
class CompareResult:
    """What :func:`compare` found: ``passed`` when every output agrees within its tolerances."""

    engine: str
    #: input name -> (dtype, shape) of the inputs both paths ran
    inputs: dict[str, tuple[str, tuple[int, ...]]]
    #: the seed the inputs were drawn with; None for inputs given by the caller
    seed: int | None
    outputs: tuple[OutputComparison, ...]
    #: what the engine was compared with: "tensorrt" (TensorRT's Python API running the same
    #: engine) or "onnxruntime" (onnxruntime running the ONNX model)
    reference: str = "tensorrt"

    @property
    def passed(self) -> bool:
        return all(output.passed for output in self.outputs)

    def to_json(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "inputs": {
                name: {"dtype": dtype, "shape": list(shape)}
                for name, (dtype, shape) in self.inputs.items()
            },
            "seed": self.seed,
            "reference": self.reference,
            "outputs": [output.to_json() for output in self.outputs],
            "passed": self.passed,
        }

    def summary(self) -> str:
        """A table of the outputs and a verdict line."""
        inputs = ", ".join(
            f"{name} {dtype} {list(shape)}" for name, (dtype, shape) in self.inputs.items()
        )
        seed = f"random, seed {self.seed}" if self.seed is not None else "given"
        header = ("output", "dtype", "shape", "max abs err", "max rel err", "cosine", "outside")
        rows = [header]
        for output in self.outputs:
            shape = str(list(output.shape))
            if output.shape != output.reference_shape:
                shape += f" vs {list(output.reference_shape)}"
            rows.append(
                (
                    output.name,
                    output.dtype
                    if output.dtype == output.reference_dtype
                    else f"{output.dtype} vs {output.reference_dtype}",
                    shape,
                    f"{output.max_abs_error:.3g}",
                    f"{output.max_rel_error:.3g}",
                    f"{output.cosine_similarity:.6f}",
                    f"{output.mismatches}/{output.size} (rtol {output.rtol:g}, "
                    f"atol {output.atol:g})",
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines = [f"engine  {self.engine}", f"inputs  {inputs} ({seed})"]
        for row in rows:
            cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            lines.append("  ".join(cells).rstrip())
        failed = [output.name for output in self.outputs if not output.passed]
        against = (
            "the engine against onnxruntime running the ONNX model"
            if self.reference == "onnxruntime"
            else "trtfast's C++ core against TensorRT's Python API"
        )
        if failed:
            lines.append(f"parity: MISMATCH in {', '.join(failed)} ({against})")
        else:
            lines.append(f"parity: ok, {len(self.outputs)} output(s) agree ({against})")
        return "\n".join(lines)


def compare(
    engine: str | os.PathLike[str] | bytes | Engine,
    inputs: Mapping[str, Any] | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    *,
    onnx: ModelSource | None = None,
    batch: int | None = None,
    shapes: Mapping[str, Sequence[int]] | None = None,
    seed: int = 0,
    device: int = 0,
    allow_host_code: bool = False,
) -> CompareResult:
    """Runs the engine file ``engine`` through trtfast's C++ core and through TensorRT's Python
    API (the reference path) on the same inputs and compares every output. With ``onnx`` (a
    path, bytes or ``onnx.ModelProto``), compares the engine with onnxruntime running that
    model instead; ``engine`` may then also be a loaded :class:`trtfast.Engine`.

    inputs: a mapping of input name to numpy array; by default random inputs inside the first
        optimization profile (:func:`random_inputs` with ``batch``, ``shapes`` and ``seed``).
    rtol, atol: the tolerance ``|cpp - reference| <= atol + rtol * |reference|``; by default
        :func:`tolerances` of each output's dtype, or against onnxruntime
        :func:`onnx_tolerances` of the output's dtype and the engine's build precision.

    Raises TensorRTUnavailableError when either path cannot run here, ImportError naming what
    to install when onnxruntime is missing, and the errors of ``trtfast.Engine.load`` and of a
    call (EngineFormatError, EngineCompatibilityError, InputError) as they are.
    """
    _check_tolerance("rtol", rtol)
    _check_tolerance("atol", atol)
    _check_int("seed", seed, minimum=0)
    check_call_inputs(inputs, batch, shapes)
    from .engine import Engine

    if onnx is not None:
        return _compare_with_onnx(
            engine,
            onnx,
            inputs,
            rtol,
            atol,
            batch=batch,
            shapes=shapes,
            seed=seed,
            device=device,
            allow_host_code=allow_host_code,
        )
    if isinstance(engine, Engine):
        raise TypeError(
            "TensorRT's Python API loads engine files: pass the engine's path or bytes, or "
            "onnx= to compare a loaded Engine with onnxruntime"
        )
    from . import reference

    cpp = Engine.load(engine, device=device, allow_host_code=allow_host_code)
    try:
        python = reference.Engine.load(engine, device=device, allow_host_code=allow_host_code)
        try:
            feeds = call_inputs(cpp.inputs, inputs, batch=batch, shapes=shapes, seed=seed)
            ours = cpp(feeds)
            theirs = python(feeds)
        finally:
            python.close()
    finally:
        cpp.close()
    if list(ours) != list(theirs):
        raise TrtfastError(
            f"the two paths return different outputs: {list(ours)} (C++ core) and "
            f"{list(theirs)} (TensorRT's Python API)"
        )
    return CompareResult(
        engine=os.fspath(engine) if not isinstance(engine, bytes) else "engine data",
        inputs={name: (value.dtype.name, tuple(value.shape)) for name, value in feeds.items()},
        seed=seed if inputs is None else None,
        outputs=tuple(
            compare_arrays(np.asarray(ours[name]), theirs[name], rtol=rtol, atol=atol, name=name)
            for name in theirs
        ),
    )


def _compare_with_onnx(
    engine: str | os.PathLike[str] | bytes | Engine,
    model: ModelSource,
    inputs: Mapping[str, Any] | None,
    rtol: float | None,
    atol: float | None,
    *,
    batch: int | None,
    shapes: Mapping[str, Sequence[int]] | None,
    seed: int,
    device: int,
    allow_host_code: bool,
) -> CompareResult:
    from .engine import Engine

    ort = onnxruntime_session(model)  # before the engine: a missing onnxruntime fails first
    if isinstance(engine, Engine):
        cpp, label, owned = engine, "engine", False
    else:
        cpp = Engine.load(engine, device=device, allow_host_code=allow_host_code)
        label = os.fspath(engine) if not isinstance(engine, bytes) else "engine data"
        owned = True
    try:
        feeds = call_inputs(cpp.inputs, inputs, batch=batch, shapes=shapes, seed=seed)
        ours = cpp(feeds)
    finally:
        if owned:
            cpp.close()
    theirs = onnxruntime_outputs(ort, feeds)
    missing = [name for name in ours if name not in theirs]
    if missing:
        raise TrtfastError(
            f"the ONNX model has no output {missing[0]!r}; its outputs are {list(theirs)} and "
            f"the engine's {list(ours)}"
        )
    precision = cpp.info.build_options.get("precision") if cpp.info is not None else None
    outputs = []
    for name, value in ours.items():
        actual = np.asarray(value)
        default_rtol, default_atol = onnx_tolerances(actual.dtype.name, precision)
        outputs.append(
            compare_arrays(
                actual,
                theirs[name],
                rtol=default_rtol if rtol is None else rtol,
                atol=default_atol if atol is None else atol,
                name=name,
            )
        )
    return CompareResult(
        engine=label,
        inputs={name: (value.dtype.name, tuple(value.shape)) for name, value in feeds.items()},
        seed=seed if inputs is None else None,
        outputs=tuple(outputs),
        reference="onnxruntime",
    )


def onnxruntime_session(model: ModelSource) -> Any:
    """An onnxruntime InferenceSession of ``model`` (a path, bytes or ``onnx.ModelProto``) on
    the CPU, where it computes in the model's own types."""
    try:
        import onnxruntime  # type: ignore[import-untyped]
    except ImportError as error:
        raise ImportError(
            f"comparing with the ONNX model needs onnxruntime ({error}): pip install onnxruntime"
        ) from error
    if isinstance(model, (str, os.PathLike)):
        source: Any = os.fspath(model)
    elif isinstance(model, (bytes, bytearray)):
        source = bytes(model)
    else:
        source = model.SerializeToString()
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: its warnings are about its own graph passes
    return onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def onnxruntime_outputs(
    session: Any, feeds: Mapping[str, np.ndarray[Any, Any]]
) -> dict[str, np.ndarray[Any, Any]]:
    """Every output of ``session`` for ``feeds``, by name. Raises TrtfastError naming the
    inputs the model and the feeds disagree on."""
    names = [entry.name for entry in session.get_inputs()]
    if sorted(names) != sorted(feeds):
        raise TrtfastError(
            f"the ONNX model's inputs are {names}, and the engine's are {list(feeds)}: "
            "compare the engine with the model it was built from"
        )
    outputs = [entry.name for entry in session.get_outputs()]
    values = session.run(outputs, dict(feeds))
    return {name: np.asarray(value) for name, value in zip(outputs, values, strict=True)}


__all__ = [
    "INT_RANGE",
    "ONNX_TOLERANCES",
    "TOLERANCES",
    "CompareResult",
    "OutputComparison",
    "call_inputs",
    "check_call_inputs",
    "compare",
    "compare_arrays",
    "cosine_similarity",
    "input_shape",
    "onnx_tolerances",
    "onnxruntime_outputs",
    "onnxruntime_session",
    "random_inputs",
    "tolerances",
]
