"""Optimization profiles: the range of input shapes an engine accepts.

Shapes are given per input as (min, opt, max); a single shape means a fixed one. Whatever the
caller leaves out comes from the model: static dimensions, and symbolic dimensions shared with
an input whose shapes were given (``batch`` in one input is ``batch`` in every input). Every
rule is checked before a build starts, and an error names the input and the rule.

A shape-tensor input (an int32/int64 input whose values decide shapes: a Reshape target,
TopK's k) takes the range of its values instead: ``{"k": {"values": ([1], [5], [10])}}``, or
``--shapes k:values=1,5,10`` (a vector of values written ``1x16``). Its values may be negative
(-1 is Reshape's wildcard).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import ProfileError

Shape = tuple[int, ...]
ShapeRange = tuple[Shape, Shape, Shape]


@dataclass(frozen=True)
class ValueRange:
    """The (min, opt, max) values of a shape-tensor input, each row-major."""

    min: Shape
    opt: Shape
    max: Shape


Profile = dict[str, "ShapeRange | ValueRange"]
# What a caller passes for one input: (min, opt, max) shapes, or one shape for a fixed size; for a
# shape-tensor input, {"values": (min, opt, max)} or {"values": one vector}.
ShapeSpec = Sequence[Sequence[int]] | Sequence[int] | Mapping[str, Any]
ShapesArgument = Mapping[str, ShapeSpec] | Sequence[Mapping[str, ShapeSpec]]

# A dimension the caller leaves to the model (must be static there).
FROM_MODEL = -1
# TensorRT's limits: Dims holds at most 8 dimensions (Dims::MAX_DIMS), each an int64.
MAX_DIMS = 8
_INT64 = (-(2**63), 2**63 - 1)


@dataclass(frozen=True)
class ModelInput:
    """One input of a model: int for a static dimension, str for a symbolic one, None for an
    unnamed dynamic one; ``dims`` is None when even the rank is unknown."""

    name: str
    dims: tuple[int | str | None, ...] | None

    @property
    def dynamic(self) -> bool:
        return self.dims is None or any(not isinstance(dim, int) for dim in self.dims)

    def describe(self) -> str:
        if self.dims is None:
            return "unknown shape"
        return " x ".join("?" if dim is None else str(dim) for dim in self.dims) or "scalar"


def resolve(shapes: ShapesArgument | None, inputs: Sequence[ModelInput]) -> list[Profile]:
    """Complete and validate the caller's shapes: one dict per optimization profile, mapping
    every dynamic input to (min, opt, max); empty when the model has no dynamic input."""
    given = _profiles_given(shapes)
    profiles = [
        _Resolver(inputs, index, len(given)).resolve(profile) for index, profile in enumerate(given)
    ]
    # Shape-tensor values need a profile even when every shape is static.
    needed = any(model_input.dynamic for model_input in inputs) or any(
        isinstance(entry, ValueRange) for profile in profiles for entry in profile.values()
    )
    return profiles if needed else []


def _profiles_given(shapes: ShapesArgument | None) -> list[Mapping[str, Any]]:
    if shapes is None:
        return [{}]
    if isinstance(shapes, Mapping):
        return [shapes]
    if isinstance(shapes, Sequence) and not isinstance(shapes, (str, bytes)):
        profiles = list(shapes)
        if profiles and all(isinstance(profile, Mapping) for profile in profiles):
            return profiles
    raise ProfileError(
        "shapes must map input names to (min, opt, max) shapes, or be a list of such dicts "
        f"(one per optimization profile), not {shapes!r}"
    )


class _Resolver:
    def __init__(self, inputs: Sequence[ModelInput], index: int, count: int) -> None:
        self.inputs = {model_input.name: model_input for model_input in inputs}
        self.order = [model_input.name for model_input in inputs]
        self.where = f" (profile {index})" if count > 1 else ""
        # symbolic dimension -> (its range, the input and dimension that set it)
        self.symbols: dict[str, tuple[tuple[int, int, int], str, int]] = {}

    def resolve(self, given: Mapping[str, Any]) -> Profile:
        for name in given:
            if name not in self.inputs:
                available = ", ".join(repr(model_input) for model_input in self.order)
                raise ProfileError(
                    f"shapes{self.where} name input {name!r}, which the model does not have; "
                    f"its inputs are {available or 'none'}"
                )
        profile: Profile = {}
        for name in self.order:
            if name in given:
                spec = given[name]
                profile[name] = (
                    self._values(self.inputs[name], spec)
                    if isinstance(spec, (Mapping, ValueRange))
                    else self._given(self.inputs[name], spec)
                )
        for name in self.order:
            model_input = self.inputs[name]
            if name not in given and model_input.dynamic:
                profile[name] = self._derived(model_input)
        # Static inputs need no profile; their given shapes were checked above.
        return {
            name: profile[name]
            for name in self.order
            if name in profile
            and (self.inputs[name].dynamic or isinstance(profile[name], ValueRange))
        }

    def _values(self, model_input: ModelInput, spec: Mapping[str, Any] | ValueRange) -> ValueRange:
        name = model_input.name
        if isinstance(spec, ValueRange):
            values = (spec.min, spec.opt, spec.max)
        else:
            if set(spec) != {"values"}:
                raise ProfileError(
                    f"input {name!r}{self.where}: a dict gives a shape tensor's values as "
                    f"{{'values': (min, opt, max)}}, not {dict(spec)!r}"
                )
            values = _as_range(spec["values"], name, "values")
        dims = model_input.dims
        if dims is not None and (len(dims) > 1 or not all(isinstance(d, int) for d in dims)):
            raise ProfileError(
                f"input {name!r}{self.where} has the shape {model_input.describe()}; values "
                "are given only for shape tensors of a fixed shape with at most one dimension"
            )
        count = dims[0] if dims else 1
        if any(len(vector) != count for vector in values):
            raise ProfileError(
                f"input {name!r}{self.where} holds {count} value{'s' if count != 1 else ''} "
                f"({model_input.describe()}); the range gives {_format_range(values)}"
            )
        for index, (low, opt, high) in enumerate(zip(*values, strict=True)):
            if not low <= opt <= high:
                raise ProfileError(
                    f"input {name!r}{self.where}: value {index} needs min <= opt <= max, got "
                    f"min {low}, opt {opt}, max {high}"
                )
        return ValueRange(*values)

    def _given(self, model_input: ModelInput, spec: Any) -> ShapeRange:
        name = model_input.name
        shapes = _as_range(spec, name)
        rank = len(shapes[0])
        if any(len(shape) != rank for shape in shapes):
            raise ProfileError(
                f"input {name!r}{self.where}: min, opt and max shapes must have the same "
                f"number of dimensions, got {_format_range(shapes)}"
            )
        dims = model_input.dims
        if dims is not None and len(dims) != rank:
            raise ProfileError(
                f"input {name!r}{self.where} has {len(dims)} dimensions "
                f"({model_input.describe()}); shapes give {rank} ({_format_range(shapes)})"
            )
        resolved: list[list[int]] = [[], [], []]
        for axis in range(rank):
            low, opt, high = (shape[axis] for shape in shapes)
            model_dim = dims[axis] if dims is not None else None
            if FROM_MODEL in (low, opt, high):
                if not isinstance(model_dim, int):
                    raise ProfileError(
                        f"input {name!r}{self.where}: dimension {axis} is dynamic in the model "
                        f"({_dim_name(model_dim)}), so its size must be given, not -1"
                    )
                low, opt, high = (
                    model_dim if value == FROM_MODEL else value for value in (low, opt, high)
                )
            for value in (low, opt, high):
                if value < 0:
                    raise ProfileError(
                        f"input {name!r}{self.where}: dimension {axis} must be >= 0, got {value}"
                    )
            if not low <= opt <= high:
                raise ProfileError(
                    f"input {name!r}{self.where}: dimension {axis} needs min <= opt <= max, "
                    f"got min {low}, opt {opt}, max {high}"
                )
            if isinstance(model_dim, int) and (low, opt, high) != (model_dim,) * 3:
                raise ProfileError(
                    f"input {name!r}{self.where}: dimension {axis} is {model_dim} in the model; "
                    f"shapes give {low}, {opt}, {high}"
                )
            if isinstance(model_dim, str):
                self._bind(model_dim, (low, opt, high), name, axis)
            for column, value in zip(resolved, (low, opt, high), strict=True):
                column.append(value)
        return (tuple(resolved[0]), tuple(resolved[1]), tuple(resolved[2]))

    def _bind(self, symbol: str, span: tuple[int, int, int], name: str, axis: int) -> None:
        bound = self.symbols.get(symbol)
        if bound is None:
            self.symbols[symbol] = (span, name, axis)
        elif bound[0] != span:
            raise ProfileError(
                f"input {name!r}{self.where}: dimension {axis} is {symbol!r}, which input "
                f"{bound[1]!r} dimension {bound[2]} also has, but their shapes differ "
                f"({_format_span(span)} vs {_format_span(bound[0])})"
            )

    def _derived(self, model_input: ModelInput) -> ShapeRange:
        name, dims = model_input.name, model_input.dims
        resolved: list[list[int]] = [[], [], []]
        missing = []
        for axis, dim in enumerate(dims or ()):
            if isinstance(dim, int):
                span = (dim, dim, dim)
            elif isinstance(dim, str) and dim in self.symbols:
                span = self.symbols[dim][0]
            else:
                missing.append(f"{axis} ({_dim_name(dim)})")
                continue
            for column, value in zip(resolved, span, strict=True):
                column.append(value)
        if dims is None or missing:
            what = (
                "an unknown rank"
                if dims is None
                else f"dynamic dimension{'s' if len(missing) > 1 else ''} {', '.join(missing)}"
            )
            raise ProfileError(
                f"input {name!r}{self.where} has {what} and no shapes to size it: pass "
                f"shapes={{{name!r}: (min, opt, max)}} or --shapes {name}:MIN,OPT,MAX with "
                f"shapes like {_example(model_input)}"
            )
        return (tuple(resolved[0]), tuple(resolved[1]), tuple(resolved[2]))


def _as_range(spec: Any, name: str, what: str = "shapes") -> ShapeRange:
    def shape(value: Any) -> Shape:
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise TypeError
        dims = tuple(value)
        if not all(isinstance(dim, int) and not isinstance(dim, bool) for dim in dims):
            raise TypeError
        return dims

    try:
        items = list(spec)
        if items and not isinstance(items[0], int):
            if len(items) != 3:
                raise TypeError
            low, opt, high = (shape(item) for item in items)
            return _check_limits((low, opt, high), name, what)
        fixed = shape(spec)
        return _check_limits((fixed, fixed, fixed), name, what)
    except TypeError:
        kind = "shape" if what == "shapes" else "vector of values"
        raise ProfileError(
            f"{what} for input {name!r} must be (min, opt, max) {what} or one fixed {kind}, "
            f"each a sequence of ints, not {spec!r}"
        ) from None


def _check_limits(shapes: ShapeRange, name: str, what: str) -> ShapeRange:
    """What TensorRT can hold: at most MAX_DIMS entries (a shape's), each an int64."""
    for entry in shapes:
        if what == "shapes" and len(entry) > MAX_DIMS:
            raise ProfileError(
                f"shapes for input {name!r}: {format_shape(entry)} has {len(entry)} dimensions; "
                f"TensorRT takes at most {MAX_DIMS}"
            )
        for value in entry:
            if not _INT64[0] <= value <= _INT64[1]:
                raise ProfileError(
                    f"{what} for input {name!r}: {value} does not fit in an int64, which "
                    "TensorRT takes"
                )
    return shapes


def _dim_name(dim: int | str | None) -> str:
    return repr(dim) if isinstance(dim, str) else "unnamed"


def _example(model_input: ModelInput) -> str:
    dims = model_input.dims or (None,)
    shape = "x".join(str(dim) if isinstance(dim, int) else "N" for dim in dims)
    return shape


def _format_span(span: tuple[int, int, int]) -> str:
    return f"{span[0]}..{span[2]} opt {span[1]}"


def _format_range(shapes: ShapeRange) -> str:
    return ",".join(format_shape(shape) for shape in shapes)


def format_shape(shape: Shape) -> str:
    return "x".join(str(dim) for dim in shape)


def parse_shapes_option(values: Sequence[str]) -> list[Profile]:
    """Profiles from command-line values ``NAME:MIN,OPT,MAX`` (or ``NAME:SHAPE`` for a fixed
    shape), each shape written ``1x3x224x224``; ``NAME:values=MIN,OPT,MAX`` gives a shape
    tensor's values the same way. Naming an input again starts the next profile."""
    profiles: list[Profile] = [{}]
    for value in values:
        _refuse_other_tools_forms(value)
        name, separator, text = value.rpartition(":")
        if not separator or not name:
            raise ProfileError(
                f"--shapes {value!r} must be NAME:MIN,OPT,MAX (or NAME:SHAPE), shapes written "
                "like 1x3x224x224"
            )
        is_values = text.startswith("values=")
        text = text.removeprefix("values=")
        parts = text.split(",")
        if len(parts) not in (1, 3):
            raise ProfileError(
                f"--shapes {value!r}: give one shape or three (min,opt,max), not {len(parts)}"
            )
        try:
            shapes = [tuple(int(dim) for dim in part.split("x")) if part else () for part in parts]
        except ValueError:
            raise ProfileError(
                f"--shapes {value!r}: shapes are integers joined by 'x', like 1x3x224x224"
            ) from None
        low, opt, high = shapes if len(shapes) == 3 else shapes * 3
        if name in profiles[-1]:
            profiles.append({})
        profiles[-1][name] = ValueRange(low, opt, high) if is_values else (low, opt, high)
    return profiles


def as_options(profiles: Sequence[Profile]) -> list[dict[str, Any]]:
    """Profiles in the JSON form the builder and the engine file take: [min, opt, max] shapes,
    or {"values": [min, opt, max]} for a shape tensor."""
    return [
        {
            name: (
                {"values": [list(entry.min), list(entry.opt), list(entry.max)]}
                if isinstance(entry, ValueRange)
                else [list(shape) for shape in entry]
            )
            for name, entry in profile.items()
        }
        for profile in profiles
    ]


# --- the shape grammars of trtexec and Polygraphy -----------------------------------------------


def _refuse_other_tools_forms(value: str) -> None:
    """ProfileError showing how to write ``--shapes NAME:MIN,OPT,MAX`` when ``value`` is written
    as trtexec (several inputs joined by commas) or Polygraphy (``x:[1,3,224,224]``) write it."""
    name = value.partition(":")[0] or "x"
    if "[" in value or "(" in value:
        raise ProfileError(
            f"--shapes {value!r} looks like Polygraphy's [1,3,224,224] form; trtfast writes "
            f"shapes like trtexec: --shapes {name}:1x3x224x224 (one fixed shape) or --shapes "
            f"{name}:1x3x224x224,4x3x224x224,8x3x224x224 (min,opt,max)"
        )
    # Names may hold colons ("input:0"); a colon after a comma starts another input.
    if any(":" in entry for entry in value.split(",")[1:]):
        entries = " ".join(f"--shapes {entry}" for entry in value.split(","))
        raise ProfileError(
            f"--shapes {value!r} names several inputs, as trtexec's --shapes does; here --shapes "
            f"takes one input and its MIN,OPT,MAX: write {entries}, or give the ranges as "
            "trtexec does with --min-shapes, --opt-shapes and --max-shapes"
        )


def _shape_list(option: str, value: str) -> dict[str, Shape]:
    """``a:1x3x224x224,b:1x10`` (trtexec's form) as {input: shape}."""
    _refuse_polygraphy_form(option, value)
    shapes: dict[str, Shape] = {}
    for entry in value.split(","):
        name, separator, text = entry.strip().rpartition(":")
        if not separator or not name or not text:
            raise ProfileError(
                f"{option} {value!r}: write NAME:SHAPE entries joined by commas, shapes written "
                "like 1x3x224x224: a:1x3x224x224,b:1x10"
            )
        try:
            shapes[name.strip("'\"")] = tuple(int(dim) for dim in text.split("x"))
        except ValueError:
            raise ProfileError(
                f"{option} {value!r}: shapes are integers joined by 'x', like 1x3x224x224"
            ) from None
    return shapes


def _refuse_polygraphy_form(option: str, value: str) -> None:
    if "[" in value or "(" in value:
        name = value.partition(":")[0] or "x"
        raise ProfileError(
            f"{option} {value!r} looks like Polygraphy's [1,3,224,224] form; write shapes as "
            f"trtexec does: {option} {name}:1x3x224x224 (inputs joined by commas)"
        )


def parse_trtexec_shapes(
    min_shapes: Sequence[str], opt_shapes: Sequence[str], max_shapes: Sequence[str]
) -> list[dict[str, ShapeRange]]:
    """One optimization profile from trtexec's ``--minShapes/--optShapes/--maxShapes`` values
    (``a:1x3x224x224,b:1x10``; each option may be repeated). Every input named needs an opt
    shape; its min and max default to it, as in trtexec."""

    def merged(option: str, values: Sequence[str]) -> dict[str, Shape]:
        result: dict[str, Shape] = {}
        for value in values:
            result.update(_shape_list(option, value))
        return result

    lows = merged("--min-shapes", min_shapes)
    opts = merged("--opt-shapes", opt_shapes)
    highs = merged("--max-shapes", max_shapes)
    named = list(dict.fromkeys([*lows, *opts, *highs]))
    without_opt = [name for name in named if name not in opts]
    if without_opt:
        raise ProfileError(
            f"input {without_opt[0]!r} has no --opt-shapes entry; give every input named in "
            "--min-shapes or --max-shapes its opt shape too"
        )
    profile = {
        name: (lows.get(name, opts[name]), opts[name], highs.get(name, opts[name]))
        for name in named
    }
    return [profile]


def parse_runtime_shapes(values: Sequence[str]) -> dict[str, Shape]:
    """The shapes of one call from ``--shapes`` values as trtexec writes them at run time:
    ``x:8x128`` (repeatable) or ``x:8x128,mask:8x128``."""
    shapes: dict[str, Shape] = {}
    for value in values:
        if value.count(":") == 1 and "," in value and "[" not in value:
            raise ProfileError(
                f"--shapes {value!r}: a call has one shape per input, not a range; write "
                f"--shapes {value.split(',')[0]}"
            )
        shapes.update(_shape_list("--shapes", value))
    return shapes
