"""What installs from a wheel links no NVIDIA library: the CUDA runtime is linked statically and
TensorRT is opened at run time, so the shared libraries it needs are the C and C++ runtime's
alone, which every Linux has (and manylinux allows). `.ci/run` runs this against the wheel it
built and installed; the release build (`.ci/release.sh`) against each repaired wheel."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

import trtfast
from trtfast import _core

# Sonames by prefix: libc.so.6, libm.so.6, ld-linux-x86-64.so.2, ld-linux-aarch64.so.1 ...
C_AND_CPP_RUNTIME = (
    "libc.so.",
    "libstdc++.so.",
    "libm.so.",
    "libgcc_s.so.",
    "libdl.so.",
    "libpthread.so.",
    "librt.so.",
    "ld-linux",
)


def needed(library: Path) -> list[str]:
    """The NEEDED entries of a shared library's dynamic section."""
    readelf = shutil.which("readelf")
    if readelf is None:
        pytest.skip("readelf (binutils) is not installed")
    dynamic = subprocess.run(
        [readelf, "--dynamic", str(library)], capture_output=True, text=True, check=True
    ).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dynamic)


def foreign(names: list[str]) -> list[str]:
    return [name for name in names if not name.startswith(C_AND_CPP_RUNTIME)]


def test_the_extension_needs_only_the_c_and_cpp_runtime() -> None:
    module = Path(_core.__file__)
    names = needed(module)
    assert "libc.so.6" in names, names  # readelf read the dynamic section
    assert foreign(names) == [], f"{module} needs {foreign(names)}"


def test_a_wheel_holds_its_extensions_and_nothing_linked_beyond_the_c_and_cpp_runtime(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    wheel = request.config.getoption("--wheel", default=None)
    if wheel is None:
        pytest.skip("no --wheel given (.ci/run passes the wheel it built)")
    with zipfile.ZipFile(wheel) as archive:
        libraries = [name for name in archive.namelist() if re.search(r"\.so(\.|$)", name)]
        # trtfast's extensions alone (the CUDA test executor, trtfast._testing, in development
        # builds where nvcc exists): no library grafted in by a repair (auditwheel's
        # trtfast.libs/).
        modules = sorted(name.split(".")[0] for name in libraries)
        assert modules in (["trtfast/_core"], ["trtfast/_core", "trtfast/_testing"]), libraries
        for name in libraries:
            names = needed(Path(archive.extract(name, tmp_path)))
            assert foreign(names) == [], f"{name} in {wheel} needs {foreign(names)}"


def test_every_tensorrt_major_of_the_release_has_an_adapter() -> None:
    expected = os.environ.get("TRTFAST_EXPECT_TENSORRT_MAJORS", "").split()
    if not expected:
        pytest.skip("TRTFAST_EXPECT_TENSORRT_MAJORS is not set (.ci/release.sh sets it)")
    headers = trtfast.build_info()["tensorrt_headers"]
    compiled = [headers.split(".")[0]] if headers else []
    assert compiled == sorted(expected, key=int), (
        f"the wheel has TensorRT adapters for majors {compiled}; the release asked for {expected}"
    )
