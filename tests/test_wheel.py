"""What installs from a wheel links no NVIDIA library: the CUDA runtime is linked statically and
TensorRT is opened at run time, so the shared libraries it needs are the C and C++ runtime's
alone, which every Linux has (and manylinux allows), and trtfast's own core, beside them in the
package (found through RUNPATH $ORIGIN). `.ci/run` runs this against the wheel it
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


# trtfast's own shared libraries, which its extensions and adapters may need: in the package.
OWN = ("libtrtfast_core.so",)


def foreign(names: list[str]) -> list[str]:
    return [name for name in names if not name.startswith(C_AND_CPP_RUNTIME) and name not in OWN]


def package_libraries(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir() if re.search(r"\.so(\.|$)", path.name))


def expected_libraries() -> list[str]:
    """The stems of the shared libraries a build holds: the module, the core, one adapter per
    compiled TensorRT major."""
    adapters = [f"libtrtfast_trt{major}" for major in trtfast.build_info()["tensorrt_adapters"]]
    return sorted(["_core", "libtrtfast_core", *adapters])


def test_the_extension_and_the_libraries_beside_it_need_only_the_c_and_cpp_runtime() -> None:
    folder = Path(_core.__file__).parent
    libraries = package_libraries(folder)
    stems = sorted(path.name.split(".")[0] for path in libraries)
    assert stems in (expected_libraries(), sorted([*expected_libraries(), "_testing"])), stems
    for library in libraries:
        names = needed(library)
        assert "libc.so.6" in names, names  # readelf read the dynamic section
        assert foreign(names) == [], f"{library} needs {foreign(names)}"
        # Our own libraries are found beside it, wherever the package is installed.
        if any(name in OWN for name in names):
            assert "$ORIGIN" in runpath(library), f"{library} finds {OWN} through no $ORIGIN"
    assert "libtrtfast_core.so" in needed(Path(_core.__file__))


def test_adapters_export_their_entry_point_alone_and_only_the_core_calls_cuda() -> None:
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("nm (binutils) is not installed")
    folder = Path(_core.__file__).parent
    adapters = [folder / f"libtrtfast_trt{m}.so" for m in trtfast.build_info()["tensorrt_adapters"]]
    for adapter in adapters:
        defined = dynamic_symbols(nm, adapter, "--defined-only")
        assert defined == ["trtfast_tensorrt_adapter_v1"], f"{adapter} exports {defined}"
    # One CUDA runtime's state for the process: the core's. The module and the adapters reach
    # CUDA through trtfast::cuda, and the core keeps its CUDA runtime to itself.
    for library in [Path(_core.__file__), *adapters]:
        cuda = [s for s in dynamic_symbols(nm, library, "--undefined-only") if s.startswith("cuda")]
        assert cuda == [], f"{library} calls the CUDA runtime directly: {cuda}"
    core = folder / "libtrtfast_core.so"
    exported = [s for s in dynamic_symbols(nm, core, "--defined-only") if s.startswith("cuda")]
    assert exported == [], f"{core} exports its CUDA runtime: {exported[:5]}"


def dynamic_symbols(nm: str, library: Path, which: str) -> list[str]:
    listing = subprocess.run(
        [nm, "--dynamic", which, str(library)], capture_output=True, text=True, check=True
    ).stdout
    return [line.split()[-1] for line in listing.splitlines() if line.strip()]


def runpath(library: Path) -> str:
    readelf = shutil.which("readelf")
    assert readelf is not None
    dynamic = subprocess.run(
        [readelf, "--dynamic", str(library)], capture_output=True, text=True, check=True
    ).stdout
    found = re.search(r"\((?:RUNPATH|RPATH)\)\s+Library r(?:un)?path: \[([^\]]*)\]", dynamic)
    return found.group(1) if found else ""


def test_a_wheel_holds_its_extensions_and_nothing_linked_beyond_the_c_and_cpp_runtime(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    wheel = request.config.getoption("--wheel", default=None)
    if wheel is None:
        pytest.skip("no --wheel given (.ci/run passes the wheel it built)")
    with zipfile.ZipFile(wheel) as archive:
        libraries = [name for name in archive.namelist() if re.search(r"\.so(\.|$)", name)]
        # trtfast's extension, its core and adapters (and the CUDA test executor,
        # trtfast._testing, in development builds where nvcc exists): no library grafted in by a
        # repair (auditwheel's trtfast.libs/).
        stems = sorted(name.split(".")[0] for name in libraries)
        expected = [f"trtfast/{stem}" for stem in expected_libraries()]
        assert stems in (expected, sorted([*expected, "trtfast/_testing"])), libraries
        for name in libraries:
            names = needed(Path(archive.extract(name, tmp_path)))
            assert foreign(names) == [], f"{name} in {wheel} needs {foreign(names)}"


def test_every_tensorrt_major_of_the_release_has_an_adapter() -> None:
    expected = os.environ.get("TRTFAST_EXPECT_TENSORRT_MAJORS", "").split()
    if not expected:
        pytest.skip("TRTFAST_EXPECT_TENSORRT_MAJORS is not set (.ci/release.sh sets it)")
    compiled = sorted(trtfast.build_info()["tensorrt_adapters"], key=int)
    assert compiled == sorted(expected, key=int), (
        f"the wheel has TensorRT adapters for majors {compiled}; the release asked for {expected}"
    )
