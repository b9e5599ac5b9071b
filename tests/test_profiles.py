"""Optimization profiles: derivation from the model and every validation rule."""

from __future__ import annotations

import build_models
import pytest

from trtfast.errors import ProfileError
from trtfast.prepare import model_inputs
from trtfast.profiles import ModelInput, ValueRange, as_options, parse_shapes_option, resolve

CNN = model_inputs(build_models.cnn())  # images: batch x 3 x 16 x 16
TWO = model_inputs(build_models.two_inputs())  # tokens, mask: batch x seq; bias: 4
STATIC = model_inputs(build_models.cnn(batch=2))


def test_static_models_need_no_profile():
    assert resolve(None, STATIC) == []
    assert resolve({"images": (2, 3, 16, 16)}, STATIC) == []


def test_static_models_still_check_the_given_shapes():
    with pytest.raises(ProfileError, match=r"input 'images': dimension 0 is 2 in the model"):
        resolve({"images": ((1, 3, 16, 16), (2, 3, 16, 16), (2, 3, 16, 16))}, STATIC)


def test_min_opt_max_for_a_dynamic_input():
    shapes = {"images": ((1, 3, 16, 16), (4, 3, 16, 16), (8, 3, 16, 16))}
    assert resolve(shapes, CNN) == [{"images": ((1, 3, 16, 16), (4, 3, 16, 16), (8, 3, 16, 16))}]


def test_one_shape_is_a_fixed_range_and_minus_one_takes_the_model_dim():
    assert resolve({"images": [4, 3, 16, 16]}, CNN) == [{"images": ((4, 3, 16, 16),) * 3}]
    shapes = {"images": ((1, -1, -1, -1), (2, -1, 16, -1), (8, 3, -1, -1))}
    assert resolve(shapes, CNN) == [{"images": ((1, 3, 16, 16), (2, 3, 16, 16), (8, 3, 16, 16))}]


def test_shared_symbolic_dims_are_derived_and_static_inputs_left_out():
    shapes = {"tokens": ((1, 1), (2, 16), (4, 128))}
    assert resolve(shapes, TWO) == [
        {"tokens": ((1, 1), (2, 16), (4, 128)), "mask": ((1, 1), (2, 16), (4, 128))}
    ]
    # Giving both, consistently, is fine too.
    both = {"tokens": ((1, 1), (2, 16), (4, 128)), "mask": [(1, 1), (2, 16), (4, 128)]}
    assert resolve(both, TWO) == resolve(shapes, TWO)


def test_several_profiles():
    shapes = [
        {"images": ((1, 3, 16, 16), (1, 3, 16, 16), (1, 3, 16, 16))},
        {"images": ((2, 3, 16, 16), (16, 3, 16, 16), (32, 3, 16, 16))},
    ]
    profiles = resolve(shapes, CNN)
    assert [profile["images"][2][0] for profile in profiles] == [1, 32]
    with pytest.raises(ProfileError, match=r"input 'images' \(profile 1\) has dynamic dimension"):
        resolve([shapes[0], {}], CNN)


@pytest.mark.parametrize(
    ("shapes", "message"),
    [
        ({"image": (1, 3, 16, 16)}, r"name input 'image', which the model does not have; "
         r"its inputs are 'images'"),
        ({"images": (1, 3, 16)}, r"input 'images' has 4 dimensions \(batch x 3 x 16 x 16\); "
         r"shapes give 3 \(1x3x16,1x3x16,1x3x16\)"),
        ({"images": ((8, 3, 16, 16), (4, 3, 16, 16), (16, 3, 16, 16))},
         r"input 'images': dimension 0 needs min <= opt <= max, got min 8, opt 4, max 16"),
        ({"images": ((1, 3, 16, 16), (4, 3, 16, 16), (2, 3, 16, 16))},
         r"dimension 0 needs min <= opt <= max, got min 1, opt 4, max 2"),
        ({"images": ((1, 1, 16, 16), (1, 3, 16, 16), (1, 3, 16, 16))},
         r"input 'images': dimension 1 is 3 in the model; shapes give 1, 3, 3"),
        ({"images": (-1, 3, 16, 16)},
         r"input 'images': dimension 0 is dynamic in the model \('batch'\), so its size must be "
         r"given, not -1"),
        ({"images": (-2, 3, 16, 16)}, r"input 'images': dimension 0 must be >= 0, got -2"),
        ({"images": ((1, 3, 16, 16), (1, 3, 16))},
         r"shapes for input 'images' must be \(min, opt, max\) shapes or one fixed shape"),
        ({"images": ((1, 3, 16, 16), (1, 3, 16, 16), (1, 3, 16))},
         r"input 'images': min, opt and max shapes must have the same number of dimensions"),
        ({"images": "1x3x16x16"}, r"shapes for input 'images' must be"),
        ({"images": (1.0, 3, 16, 16)}, r"shapes for input 'images' must be"),
        ({"images": (True, 3, 16, 16)}, r"shapes for input 'images' must be"),
        ({"images": 4}, r"shapes for input 'images' must be"),
        ({"images": ((1, 3, 16, 16), (4, 3, 16, 16), (2**63, 3, 16, 16))},
         r"shapes for input 'images': 9223372036854775808 does not fit in an int64"),
        ({"images": (1, 3, 16, 16, 1, 1, 1, 1, 1)},
         r"shapes for input 'images': 1x3x16x16x1x1x1x1x1 has 9 dimensions; TensorRT takes at "
         r"most 8"),
    ],
)  # fmt: skip
def test_invalid_shapes_name_the_input_and_the_rule(shapes, message):
    with pytest.raises(ProfileError, match=message):
        resolve(shapes, CNN)


def test_a_dynamic_input_without_shapes_says_how_to_fix_it():
    with pytest.raises(ProfileError) as raised:
        resolve(None, CNN)
    assert str(raised.value) == (
        "input 'images' has dynamic dimension 0 ('batch') and no shapes to size it: pass "
        "shapes={'images': (min, opt, max)} or --shapes images:MIN,OPT,MAX with shapes like "
        "Nx3x16x16"
    )


def test_conflicting_shapes_for_a_shared_dimension():
    shapes = {"tokens": ((1, 1), (2, 16), (4, 128)), "mask": ((1, 1), (2, 16), (8, 128))}
    with pytest.raises(ProfileError) as raised:
        resolve(shapes, TWO)
    assert str(raised.value) == (
        "input 'mask': dimension 0 is 'batch', which input 'tokens' dimension 0 also has, but "
        "their shapes differ (1..8 opt 2 vs 1..4 opt 2)"
    )


def test_unnamed_dynamic_dims_and_unknown_ranks():
    inputs = [ModelInput("anon", (None, 3)), ModelInput("free", None)]
    with pytest.raises(ProfileError, match=r"input 'anon' has dynamic dimension 0 \(unnamed\)"):
        resolve({"free": (2, 2)}, inputs)
    with pytest.raises(ProfileError, match=r"input 'free' has an unknown rank and no shapes"):
        resolve({"anon": (2, 3)}, inputs)
    assert resolve({"anon": (2, 3), "free": ((1,), (2,), (5,))}, inputs) == [
        {"anon": ((2, 3),) * 3, "free": ((1,), (2,), (5,))}
    ]


@pytest.mark.parametrize("shapes", ["images:1x3x16x16", [], [{"images": (1, 3, 16, 16)}, 5], 7])
def test_shapes_must_be_a_dict_or_a_list_of_dicts(shapes):
    with pytest.raises(ProfileError, match="shapes must map input names to"):
        resolve(shapes, CNN)


def test_command_line_shapes():
    assert parse_shapes_option(["images:1x3x16x16,4x3x16x16,8x3x16x16"]) == [
        {"images": ((1, 3, 16, 16), (4, 3, 16, 16), (8, 3, 16, 16))}
    ]
    # Names may hold colons (TensorFlow exports: "input:0"); one shape means a fixed one.
    assert parse_shapes_option(["input:0:2x3", "mask:-1x4"]) == [
        {"input:0": ((2, 3),) * 3, "mask": ((-1, 4),) * 3}
    ]
    # Naming an input again starts the next profile.
    assert parse_shapes_option(["a:1x2", "b:1x3", "a:4x2", "b:4x3"]) == [
        {"a": ((1, 2),) * 3, "b": ((1, 3),) * 3},
        {"a": ((4, 2),) * 3, "b": ((4, 3),) * 3},
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1x3x16x16", r"must be NAME:MIN,OPT,MAX"),
        (":1x3", r"must be NAME:MIN,OPT,MAX"),
        ("x:1x3,2x3", r"give one shape or three \(min,opt,max\), not 2"),
        ("x:1x3,2x3,3x3,4x3", r"not 4"),
        ("x:1x3x,2x3x4,3x3x4", r"shapes are integers joined by 'x'"),
        ("x:1*3", r"shapes are integers joined by 'x'"),
    ],
)
def test_command_line_shape_errors(value, message):
    with pytest.raises(ProfileError, match=message):
        parse_shapes_option([value])


def test_profiles_as_builder_options():
    profiles = resolve({"tokens": ((1, 1), (2, 16), (4, 128))}, TWO)
    assert as_options(profiles) == [
        {"tokens": [[1, 1], [2, 16], [4, 128]], "mask": [[1, 1], [2, 16], [4, 128]]}
    ]


# A Reshape target (2 values) and TopK's k (1 value) beside a static image input.
SHAPE_TENSORS = [
    ModelInput("images", (2, 3, 16, 16)),
    ModelInput("target", (2,)),
    ModelInput("k", (1,)),
]


def test_shape_tensor_values_make_a_profile_even_when_every_shape_is_static():
    shapes = {"target": {"values": ((1, -1), (4, -1), (8, -1))}, "k": {"values": [5]}}
    assert resolve(shapes, SHAPE_TENSORS) == [
        {"target": ValueRange((1, -1), (4, -1), (8, -1)), "k": ValueRange((5,), (5,), (5,))}
    ]
    assert as_options(resolve(shapes, SHAPE_TENSORS)) == [
        {
            "target": {"values": [[1, -1], [4, -1], [8, -1]]},
            "k": {"values": [[5], [5], [5]]},
        }
    ]


def test_command_line_shape_tensor_values():
    profiles = parse_shapes_option(["k:values=1,5,10", "target:values=1x16,4x16,8x16"])
    assert profiles == [
        {"k": ValueRange((1,), (5,), (10,)), "target": ValueRange((1, 16), (4, 16), (8, 16))}
    ]
    assert resolve(profiles[0], SHAPE_TENSORS)[0]["k"] == ValueRange((1,), (5,), (10,))


@pytest.mark.parametrize(
    ("shapes", "message"),
    [
        ({"k": {"values": ([1, 2], [5, 5], [9, 9])}}, r"input 'k' holds 1 value \(1\)"),
        ({"k": {"values": ([5], [1], [9])}}, r"input 'k': value 0 needs min <= opt <= max"),
        ({"k": {"value": [5]}}, r"a dict gives a shape tensor's values as"),
        ({"images": {"values": [1]}}, r"input 'images' has the shape 2 x 3 x 16 x 16"),
        ({"k": {"values": "5"}}, r"values for input 'k' must be \(min, opt, max\) values"),
    ],
)
def test_invalid_shape_tensor_values_name_the_input_and_the_rule(shapes, message):
    with pytest.raises(ProfileError, match=message):
        resolve(shapes, SHAPE_TENSORS)


def test_a_dimension_written_as_minus_one_is_dynamic():
    """Exporters often write an unnamed dynamic dimension as -1."""
    model = build_models.cnn()
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = -1
    inputs = model_inputs(model)
    assert inputs[0].dims == (None, 3, 16, 16)
    with pytest.raises(ProfileError, match=r"has dynamic dimension 0 \(unnamed\) and no shapes"):
        resolve(None, inputs)
    shapes = ((1, 3, 16, 16), (4, 3, 16, 16), (8, 3, 16, 16))
    assert resolve({"images": shapes}, inputs) == [{"images": shapes}]
