"""The shipped type stubs of trtfast._core match the built module."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import trtfast

REGENERATE = (
    "python -m pybind11_stubgen trtfast._core -o /tmp/stubs && "
    "cp /tmp/stubs/trtfast/_core/*.pyi python/trtfast/_core/"
)


def test_stubs_match_the_built_module(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pybind11_stubgen", "trtfast._core", "-o", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    generated = sorted((tmp_path / "trtfast" / "_core").glob("*.pyi"))
    shipped = Path(trtfast.__file__).parent / "_core"
    assert generated, "pybind11-stubgen produced no stubs"
    assert {p.name for p in generated} == {p.name for p in shipped.glob("*.pyi")}
    for stub in generated:
        assert stub.read_text() == (shipped / stub.name).read_text(), (
            f"{stub.name} is stale; regenerate with: {REGENERATE}"
        )
