"""Parity tooling on any machine: random inputs inside an engine's profiles, the error metrics on
known data, the result object, and compare's argument checks."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import synthetic

import trtfast
from trtfast import models, parity, reference
from trtfast.engine_file import TensorSpec
from trtfast.parity import CompareResult, compare_arrays, cosine_similarity, random_inputs


def _spec(name: str, dtype: str, shape: tuple[int, ...], *profiles: Any) -> TensorSpec:
    return TensorSpec(name=name, dtype=dtype, shape=shape, is_input=True, profiles=profiles)


MIXED = (
    _spec("images", "float16", (-1, 3, 8, 8), ((1, 3, 8, 8), (4, 3, 8, 8), (16, 3, 8, 8))),
    _spec("ids", "int64", (-1, -1), ((1, 1), (4, 7), (16, 32))),
    _spec("mask", "bool", (-1, 7), ((1, 7), (4, 7), (16, 7))),
    _spec("scale", "float32", (4,)),
    _spec("codes", "uint8", (2, 2)),
    _spec("small", "int8", (3,)),
    _spec("index", "int32", (5,)),
)


def test_inputs_from_an_engine_file_fit_its_profile(tmp_path: Path) -> None:
    specs = trtfast.inspect(synthetic.engine(tmp_path / "model.engine", MIXED)).inputs
    feeds = random_inputs(specs)
    assert {name: (value.dtype.name, value.shape) for name, value in feeds.items()} == {
        "images": ("float16", (4, 3, 8, 8)),  # the opt shape
        "ids": ("int64", (4, 7)),
        "mask": ("bool", (4, 7)),
        "scale": ("float32", (4,)),  # static shapes as they are
        "codes": ("uint8", (2, 2)),
        "small": ("int8", (3,)),
        "index": ("int32", (5,)),
    }
    for name in ("ids", "codes", "small", "index"):
        assert feeds[name].min() >= 0 and feeds[name].max() < parity.INT_RANGE[1]
    assert np.isfinite(feeds["images"]).all() and feeds["images"].std() > 0.5

    batched = random_inputs(specs, batch=16)
    assert batched["images"].shape == (16, 3, 8, 8)
    assert batched["ids"].shape == (16, 7)  # only the first dimension follows batch
    assert batched["scale"].shape == (4,)
    assert random_inputs(specs, batch=1)["mask"].shape == (1, 7)


def test_inputs_are_reproducible_by_seed() -> None:
    first, again = random_inputs(MIXED, seed=3), random_inputs(MIXED, seed=3)
    other = random_inputs(MIXED, seed=4)
    for name in first:
        assert np.array_equal(first[name], again[name])
    assert not np.array_equal(first["images"], other["images"])


def test_integer_range_is_chosen_and_checked() -> None:
    signed = [spec for spec in MIXED if spec.dtype != "uint8"]
    feeds = random_inputs(signed, int_range=(-3, 2))
    assert feeds["small"].min() >= -3 and feeds["small"].max() <= 1
    with pytest.raises(
        ValueError, match=r"input 'codes' is uint8 \(0 to 255\); int_range \(-3, 2\)"
    ):
        random_inputs(MIXED, int_range=(-3, 2))
    with pytest.raises(ValueError, match=r"input 'small' is int8 \(-128 to 127\)"):
        random_inputs(signed, int_range=(0, 129))
    with pytest.raises(ValueError, match="int_range must be two ints"):
        random_inputs(MIXED, int_range=(5, 5))


def test_inputs_of_another_profile() -> None:
    spec = _spec("x", "float32", (-1, 4), ((1, 4), (2, 4), (8, 4)), ((9, 4), (12, 4), (64, 4)))
    assert random_inputs([spec], profile=1)["x"].shape == (12, 4)
    assert random_inputs([spec], profile=1, batch=64)["x"].shape == (64, 4)
    with pytest.raises(ValueError, match="batch 8 is outside profile 1 of input 'x': its first "):
        random_inputs([spec], profile=1, batch=8)
    with pytest.raises(ValueError, match="profile 2 does not exist: input 'x' has 2 "):
        random_inputs([spec], profile=2)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"batch": 17}, "batch 17 is outside profile 0 of input 'images': .* from 1 to 16"),
        ({"batch": 0}, "batch must be an int >= 1, not 0"),
        ({"batch": True}, "batch must be an int >= 1, not True"),
        ({"seed": -1}, "seed must be an int >= 0, not -1"),
    ],
)
def test_bad_arguments_name_the_rule(arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        random_inputs(MIXED, **arguments)


def test_inputs_that_cannot_be_drawn() -> None:
    with pytest.raises(ValueError, match="batch: no input of this engine has a dynamic first"):
        random_inputs([_spec("x", "float32", (2, 4))], batch=2)
    with pytest.raises(
        ValueError, match=r"input 'x' has the dynamic shape \[-1, 4\] and the engine"
    ):
        random_inputs([_spec("x", "float32", (-1, 4))])
    for dtype in ("int4", "float4_e2m1fn"):
        with pytest.raises(trtfast.TrtfastError, match=f"'packed' has the packed dtype {dtype}"):
            random_inputs([_spec("packed", dtype, (8,))])


def test_reduced_precision_inputs() -> None:
    pytest.importorskip("ml_dtypes")
    feeds = random_inputs(
        [
            _spec("b", "bfloat16", (64,)),
            _spec("f8", "float8_e4m3fn", (64,)),
            _spec("scale", "float8_e8m0fnu", (64,)),
        ]
    )
    assert [value.dtype.name for value in feeds.values()] == [
        "bfloat16",
        "float8_e4m3fn",
        "float8_e8m0fnu",
    ]
    scales = feeds["scale"].astype(np.float32)
    assert np.array_equal(np.exp2(np.round(np.log2(scales))), scales)  # powers of two


@pytest.mark.skipif(
    reference.unavailable_reason("rtx") is not None,
    reason=f"TensorRT-RTX is not installed: {reference.unavailable_reason('rtx')}",
)
@pytest.mark.parametrize("name", models.names())
def test_inputs_for_a_real_engine_match_its_signature(name: str, tmp_path: Path) -> None:
    path = tmp_path / f"{name}.engine"
    reference.build(
        models.path(name, tmp_path),
        edition="rtx",
        output=path,
        shapes=models.shapes(name),
        progress=False,
    )
    (shape_range,) = models.shapes(name).values()
    specs = trtfast.inspect(path).inputs
    for batch in (None, shape_range[0][0], shape_range[2][0]):
        feeds = random_inputs(specs, batch=batch)
        expected = models.inputs(name, batch=batch)
        assert {k: (v.dtype, v.shape) for k, v in feeds.items()} == {
            k: (v.dtype, v.shape) for k, v in expected.items()
        }
    with pytest.raises(ValueError, match="is outside profile 0"):
        random_inputs(specs, batch=shape_range[2][0] + 1)


# --- metrics -------------------------------------------------------------------------------------


def test_error_metrics_on_known_data() -> None:
    expected = np.array([1.0, -2.0, 0.0, 4.0], dtype=np.float32)
    actual = np.array([1.0, -2.5, 0.25, 4.0], dtype=np.float32)
    result = compare_arrays(actual, expected, rtol=0.1, atol=0.3, name="y")
    assert result.max_abs_error == 0.5
    assert result.max_rel_error == 0.25  # 0.5 / 2; the element whose reference is 0 is left out
    dot = 1 + 5 + 16
    norms = math.sqrt(1 + 6.25 + 0.0625 + 16) * math.sqrt(1 + 4 + 16)
    assert result.cosine_similarity == pytest.approx(dot / norms, rel=1e-12)
    # |diff| <= 0.3 + 0.1 * |expected|: 0.5 > 0.5? no; 0.25 <= 0.3: all inside
    assert result.mismatches == 0 and result.passed
    tight = compare_arrays(actual, expected, rtol=0.0, atol=0.3)
    assert tight.mismatches == 1 and not tight.passed
    assert (result.name, result.shape, result.size, result.rtol, result.atol) == (
        "y",
        (4,),
        4,
        0.1,
        0.3,
    )


def test_identical_outputs_pass_exactly() -> None:
    values = np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32)
    result = compare_arrays(values, values.copy())
    assert (result.max_abs_error, result.max_rel_error, result.mismatches) == (0.0, 0.0, 0)
    assert result.cosine_similarity == pytest.approx(1.0)
    assert result.passed


def test_non_finite_values() -> None:
    expected = np.array([np.nan, np.inf, -np.inf, 1.0])
    assert compare_arrays(expected.copy(), expected).passed  # same NaN and infinities agree
    result = compare_arrays(np.array([np.nan, np.inf, 1.0, 1.0]), expected)
    assert result.max_abs_error == math.inf
    assert result.mismatches == 1
    assert math.isnan(result.cosine_similarity)
    assert compare_arrays(np.array([0.0, np.inf, -np.inf, 1.0]), expected).mismatches == 1


def test_shape_and_dtype_differences_fail() -> None:
    result = compare_arrays(np.zeros((2, 3)), np.zeros((3, 2)))
    assert not result.passed and result.max_abs_error == math.inf and result.mismatches == 6
    assert (result.shape, result.reference_shape) == ((2, 3), (3, 2))
    typed = compare_arrays(np.zeros(3, np.float16), np.zeros(3, np.float32))
    assert typed.mismatches == 0 and not typed.passed


def test_default_tolerances_follow_the_dtype() -> None:
    assert compare_arrays(np.ones(2, np.float32), np.ones(2, np.float32)).rtol == 1e-4
    half = compare_arrays(np.float16([1.0, 2.0]), np.float16([1.0, 2.002]))
    assert (half.rtol, half.atol) == parity.tolerances("float16") and half.passed
    exact = compare_arrays(np.int32([1, 2]), np.int32([1, 3]))
    assert (exact.rtol, exact.atol, exact.mismatches) == (0.0, 0.0, 1)
    assert parity.tolerances("bool") == (0.0, 0.0)


def test_cosine_similarity_edges() -> None:
    assert cosine_similarity(np.zeros(3), np.zeros(3)) == 1.0
    assert cosine_similarity(np.zeros(0), np.zeros(0)) == 1.0
    assert cosine_similarity(np.zeros(3), np.ones(3)) == 0.0
    assert cosine_similarity([1.0, 0.0], [0.0, 1.0]) == 0.0
    assert cosine_similarity([1.0, 2.0], [-1.0, -2.0]) == pytest.approx(-1.0)
    assert cosine_similarity([1e200, 1e200], [1e200, 1e200]) == pytest.approx(1.0)  # no overflow


@pytest.mark.parametrize("value", [-1.0, math.nan, math.inf, "0.1", True])
def test_tolerances_are_checked(value: Any) -> None:
    with pytest.raises(ValueError, match="rtol must be a"):
        compare_arrays(np.ones(1), np.ones(1), rtol=value)


# --- the result and compare --------------------------------------------------------------------


def _result() -> CompareResult:
    expected = np.array([1.0, 2.0, 3.0], np.float32)
    return CompareResult(
        engine="model.engine",
        inputs={"x": ("float32", (1, 3))},
        seed=7,
        outputs=(
            compare_arrays(expected, expected, name="good"),
            compare_arrays(expected + np.float32(1.0), expected, name="bad"),
        ),
    )


def test_result_summary_and_json() -> None:
    result = _result()
    assert not result.passed
    summary = result.summary()
    assert "inputs  x float32 [1, 3] (random, seed 7)" in summary
    assert summary.splitlines()[-1].startswith("parity: MISMATCH in bad")
    assert "3/3 (rtol 0.0001, atol 1e-05)" in summary
    data = json.loads(json.dumps(result.to_json()))
    assert data["passed"] is False
    assert [o["passed"] for o in data["outputs"]] == [True, False]
    assert data["outputs"][1]["max_abs_error"] == 1.0
    assert data["inputs"] == {"x": {"dtype": "float32", "shape": [1, 3]}}
    shapes = CompareResult("e", {}, None, (compare_arrays(np.zeros(2), np.zeros(3)),))
    data = json.loads(json.dumps(shapes.to_json(), allow_nan=False))  # strict JSON
    assert data["outputs"][0]["max_abs_error"] == "inf"
    assert data["outputs"][0]["cosine_similarity"] == "nan"
    assert "[2] vs [3]" in shapes.summary()


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"rtol": -1.0}, ValueError, "rtol must be a finite number >= 0"),
        ({"atol": math.nan}, ValueError, "atol must be a finite number >= 0"),
        ({"seed": -2}, ValueError, "seed must be an int >= 0"),
        ({"inputs": {"x": np.zeros(1)}, "batch": 2}, ValueError, "either inputs or batch"),
        ({"inputs": [np.zeros(1)]}, TypeError, "inputs must map input names to arrays"),
    ],
)
def test_compare_checks_its_arguments_first(
    tmp_path: Path, arguments: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        trtfast.compare(tmp_path / "missing.engine", **arguments)


def test_compare_of_a_missing_file_raises_os_error(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        trtfast.compare(tmp_path / "missing.engine")
