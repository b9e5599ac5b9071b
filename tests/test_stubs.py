"""The shipped type stubs of trtfast._core match the built module."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import trtfast

REGENERATE = (
    "python -m pybind11_stubgen trtfast._core -o /tmp/stubs && "
    "cp /tmp/stubs/trtfast/_core/*.pyi python/trtfast/_core/"
)


# Python 3.12+ lists the buffer protocol's dunders; stubs generated on any version must compare.
_BUFFER_DUNDERS = re.compile(
    r"    def __(?:release_)?buffer__\(self[^)]*\)[^:]*:\n(?:        .*\n)*", re.MULTILINE
)


# The buffer protocol's type is collections.abc.Buffer from Python 3.12, typing_extensions' before.
_BUFFER_TYPE = re.compile(r"\b(?:collections\.abc|typing_extensions)\.Buffer\b")
_BUFFER_IMPORT = re.compile(r"^import (?:collections\.abc|typing_extensions)\n", re.MULTILINE)


def _comparable(stub: str) -> str:
    stub = _BUFFER_TYPE.sub("Buffer", _BUFFER_DUNDERS.sub("", stub))
    return _BUFFER_IMPORT.sub("", stub)


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
        assert _comparable(stub.read_text()) == _comparable((shipped / stub.name).read_text()), (
            f"{stub.name} is stale; regenerate with: {REGENERATE}"
        )
