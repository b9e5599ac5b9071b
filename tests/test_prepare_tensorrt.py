"""Models TensorRT's real ONNX parser refuses as given build after preparation (GPU).

The zoo's legacy models (opset 6, below the opset 9 every parser since TensorRT 10 imports)
are refused as given; every zoo model builds with ``prepare="auto"``, and the engine file says
whether preparation ran.
"""

from __future__ import annotations

import importlib.util

import prepare_zoo
import pytest

import trtfast

REFUSED_AS_GIVEN = {"legacy_broadcast", "legacy_cnn"}
SHAPES = {
    "cnn": {"images": ((1, 3, 16, 16), (2, 3, 16, 16), (4, 3, 16, 16))},
    "mlp": {"features": ((1, 32), (5, 32), (8, 32)), "mask": ((1, 8), (5, 8), (8, 8))},
    "upsample_opset9": {"x": ((1, 3, 4, 4), (2, 3, 4, 4), (4, 3, 4, 4))},
    "constant_subgraph": {"x": ((1, 8), (3, 8), (4, 8))},
    "integer_arithmetic": {"tokens": ((1, 6), (4, 6), (8, 6))},
    "shape_chain_dynamic": {"x": ((1, 1, 8), (3, 5, 8), (4, 8, 8))},
}

_RTX_MISSING = importlib.util.find_spec("tensorrt_rtx") is None
EDITIONS = [
    pytest.param("standard", marks=pytest.mark.tensorrt),
    pytest.param(
        "rtx",
        marks=[
            pytest.mark.tensorrt,
            pytest.mark.skipif(
                _RTX_MISSING,
                reason="TensorRT-RTX is not installed (tensorrt_rtx is not importable); its "
                "builder comes with trtfast's TensorRT-RTX support",
            ),
        ],
    ),
]


def build(zoo_model: prepare_zoo.ZooModel, tmp_path, prepare: str) -> trtfast.EngineInfo:
    return trtfast.build(
        zoo_model.make(),
        output=tmp_path / f"{zoo_model.name}-{prepare}.engine",
        shapes=SHAPES.get(zoo_model.name),
        progress=False,
        prepare=prepare,
    )


@pytest.mark.gpu
@pytest.mark.parametrize("edition", EDITIONS)
@pytest.mark.parametrize("zoo_model", prepare_zoo.ZOO, ids=lambda model: model.name)
def test_zoo_models_build_as_given_or_after_preparation(edition, zoo_model, tmp_path):
    if edition == "rtx":
        library = trtfast.tensorrt_library()
        if "rtx" not in f"{getattr(library, 'edition', '')} {library.path}".lower():
            pytest.skip(f"trtfast builds with {library.path} here, not with TensorRT-RTX")
    try:
        given = build(zoo_model, tmp_path, "never")
    except trtfast.BuildError as error:
        assert error.parser_errors, f"{zoo_model.name}: the build failed after parsing: {error}"
        refused = True
    else:
        assert given.build_options["prepare"] == {"mode": "never", "applied": False}
        refused = False
    if zoo_model.name in REFUSED_AS_GIVEN:
        assert refused, f"{zoo_model.name} (opset 6) was expected to be refused as given"
    info = build(zoo_model, tmp_path, "auto")
    record = info.build_options["prepare"]
    assert record["applied"] is refused
    if refused:
        assert record["reason"].startswith("the parser refused the model as given")
        assert record["opset"][1] >= 9
