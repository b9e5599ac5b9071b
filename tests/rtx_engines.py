"""Engines built with TensorRT-RTX, which builds without a GPU, for tests on any machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from trtfast import models, reference


def rtx_engine(folder: Path) -> Path:
    """The bundled mlp model built with TensorRT-RTX into `folder`; skips without TensorRT-RTX."""
    if reference.unavailable_reason("rtx") is not None:
        pytest.skip(f"TensorRT-RTX is not installed: {reference.unavailable_reason('rtx')}")
    output = folder / "mlp.engine"
    reference.build(
        models.path("mlp", folder),
        edition="rtx",
        output=output,
        shapes=models.shapes("mlp"),
        progress=False,
    )
    return output
