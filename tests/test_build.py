"""trtfast.build around TensorRT: option checks, workspace sizes, cache keys, the shared timing
cache, atomic writes, progress, and a clean refusal where TensorRT cannot build."""

from __future__ import annotations

import multiprocessing
import os
import random
import re
import sys
import time
from pathlib import Path
from typing import Any

import build_models
import onnx
import pytest

import trtfast
from trtfast.build import (
    BuildOptions,
    TimingCacheFile,
    atomic_write,
    cache_key,
    check_options,
    parse_workspace,
)
from trtfast.errors import (
    BuildError,
    BuildOptionError,
    ProfileError,
    TensorRTUnavailableError,
    TrtfastError,
)

build_module = sys.modules["trtfast.build"]


def full_tensorrt_available() -> bool:
    try:
        return bool(trtfast.tensorrt_library().kind == "full")
    except TrtfastError:
        return False


needs_no_full_tensorrt = pytest.mark.skipif(
    full_tensorrt_available(), reason="a full TensorRT library is present: builds would run"
)


# --- workspace ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        (1, 1),
        (4096, 4096),
        ("4096", 4096),
        ("4GiB", 4 * 2**30),
        ("512MiB", 512 * 2**20),
        ("512 mib", 512 * 2**20),
        ("1.5GiB", 3 * 2**29),
        ("2GB", 2 * 10**9),
        ("64KB", 64_000),
        ("64KiB", 65_536),
        ("8G", 8 * 2**30),
        ("256M", 256 * 2**20),
        ("1TiB", 2**40),
        ("100B", 100),
    ],
)
def test_workspace_sizes(value, expected):
    assert parse_workspace(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("4 parsecs", "unknown unit 'parsecs'"),
        ("4XB", "unknown unit 'XB'"),
        ("GiB", "must be a number of bytes or a size like '4GiB'"),
        ("-1GiB", "must be a number of bytes"),
        ("", "must be a number of bytes"),
        (True, "must be a number of bytes"),
        (1.5, "must be a number of bytes"),
        (0, "at least 1 byte"),
        (-5, "at least 1 byte"),
        ("0.1B", "at least 1 byte"),
    ],
)
def test_invalid_workspace_sizes(value, message):
    with pytest.raises(BuildOptionError, match=re.escape(message)):
        parse_workspace(value)


# --- options ------------------------------------------------------------------------------


def test_options_are_normalized(tmp_path):
    plugin = tmp_path / "libplugin.so"
    plugin.write_bytes(b"\x7fELF")
    options = check_options(
        precision="FP16",
        workspace="1GiB",
        optimization_level=5,
        version_compatible=True,
        hardware_compatibility="Ampere-Plus",
        plugins=[plugin],
        device=1,
    )
    assert options == BuildOptions(
        precision="fp16",
        workspace=2**30,
        optimization_level=5,
        version_compatible=True,
        hardware_compatibility="ampere_plus",
        plugins=(str(plugin.resolve()),),
        device=1,
    )
    defaults = check_options()
    assert defaults.as_dict() == {
        "precision": "fp32",
        "workspace": None,
        "optimization_level": None,
        "version_compatible": False,
        "hardware_compatibility": None,
        "plugins": [],
    }
    assert check_options(hardware_compatibility="none").hardware_compatibility is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"precision": "fp64"}, "precision must be one of fp32, fp16, bf16, int8, fp8"),
        ({"optimization_level": 6}, "optimization_level must be an int from 0 to 5, not 6"),
        ({"optimization_level": -1}, "optimization_level must be an int from 0 to 5"),
        ({"optimization_level": True}, "optimization_level must be an int from 0 to 5"),
        ({"optimization_level": "3"}, "optimization_level must be an int from 0 to 5"),
        ({"version_compatible": 1}, "version_compatible must be True or False, not 1"),
        ({"hardware_compatibility": "hopper"}, "hardware_compatibility must be None, "),
        ({"hardware_compatibility": 3}, "hardware_compatibility must be None, "),
        ({"plugins": "libplugin.so"}, "plugins must be a list of library paths"),
        ({"plugins": ["/no/such/libplugin.so"]}, "plugin library '/no/such/libplugin.so' does"),
        ({"device": -1}, "device must be a GPU index (an int from 0 to 2147483647), not -1"),
        ({"device": 2**40}, "device must be a GPU index (an int from 0 to 2147483647)"),
        ({"workspace": "99999999TiB"}, "is more than TensorRT can take"),
        ({"workspace": "9" * 400}, "is more than TensorRT can take"),
        ({"device": "0"}, "device must be a GPU index"),
        ({"workspace": "lots"}, "workspace must be a number of bytes"),
    ],
)
def test_invalid_options_name_the_option(options, message):
    with pytest.raises(BuildOptionError, match=re.escape(message)):
        check_options(**options)


# --- engine cache keys --------------------------------------------------------------------


H100_SXM = {
    "name": "NVIDIA H100 80GB HBM3",
    "compute_capability": [9, 0],
    "uuid": "GPU-00000000-0000-0000-0000-000000000001",
    "multiprocessors": 132,
    "total_memory": 85 * 2**30,
    "platform": "x86_64",
}
LIBRARY = {"parser": 110100, "cuda_major": 13}


def test_cache_keys(tmp_path):
    plugin = tmp_path / "libplugin.so"
    plugin.write_bytes(b"version 1")
    options = check_options(precision="fp16", plugins=[plugin])
    profile = [{"images": ((1, 3, 16, 16), (4, 3, 16, 16), (8, 3, 16, 16))}]
    base = ("a" * 64, options, profile, "11.4.0", H100_SXM, "standard", LIBRARY)
    key = cache_key(*base)
    assert re.fullmatch("[0-9a-f]{64}", key)
    assert cache_key(*base) == key
    # The GPU index changes neither what the engine computes nor where it runs; nor does which
    # of two GPUs of one model it is.
    assert (
        cache_key(base[0], check_options(precision="fp16", plugins=[plugin], device=3), *base[2:])
        == key
    )
    other_card = {**H100_SXM, "uuid": "GPU-00000000-0000-0000-0000-000000000002"}
    assert cache_key(*base[:4], other_card, *base[5:]) == key

    def gpu(**changed: Any) -> tuple[Any, ...]:
        return (*base[:4], {**H100_SXM, **changed}, *base[5:])

    variants = {
        "model": ("b" * 64, *base[1:]),
        "tensorrt": (*base[:3], "11.4.1", *base[4:]),
        "compute capability": gpu(compute_capability=[8, 9]),
        "GPU model": gpu(name="NVIDIA H100 PCIe", multiprocessors=114, total_memory=80 * 2**30),
        "GPU name": gpu(name="NVIDIA H100 PCIe"),
        "MIG slice": gpu(multiprocessors=16),
        "memory": gpu(total_memory=94 * 2**30),
        "edition": (*base[:5], "rtx", LIBRARY),
        "parser": (*base[:6], {**LIBRARY, "parser": 110200}),
        "CUDA major": (*base[:6], {**LIBRARY, "cuda_major": 12}),
        "profiles": (base[0], options, [{"images": ((1, 3, 16, 16),) * 3}], *base[3:]),
        "no profiles": (base[0], options, [], *base[3:]),
    }
    for changed in (
        {"precision": "bf16"},
        {"workspace": "2GiB"},
        {"optimization_level": 3},
        {"version_compatible": True},
        {"hardware_compatibility": "same_compute_capability"},
        {"plugins": []},
    ):
        other = check_options(**{"precision": "fp16", "plugins": [plugin], **changed})
        variants[str(changed)] = (base[0], other, *base[2:])
    keys = {name: cache_key(*arguments) for name, arguments in variants.items()}
    assert key not in keys.values()
    assert len(set(keys.values())) == len(keys)

    # The plugin's contents count, not only its path.
    plugin.write_bytes(b"version 2")
    assert cache_key(*base) != key


def test_cache_keys_change_with_trtfast_and_its_schema(monkeypatch):
    options = check_options()
    arguments = ("a" * 64, options, [], "11.4.0", H100_SXM, "standard", LIBRARY)
    key = cache_key(*arguments)
    monkeypatch.setattr(build_module, "CACHE_SCHEMA", build_module.CACHE_SCHEMA + 1)
    assert cache_key(*arguments) != key
    monkeypatch.undo()
    info = dict(build_module._core.build_info())
    monkeypatch.setattr(
        build_module._core, "build_info", lambda: {**info, "version": info["version"] + ".post1"}
    )
    assert cache_key(*arguments) != key


@pytest.mark.parametrize(
    ("hardware", "same", "differs"),
    [
        # Hardware-compatible engines are keyed by what their level promises, no more.
        (
            "same_compute_capability",
            {"name": "NVIDIA H100 PCIe", "multiprocessors": 114},
            {"compute_capability": [8, 9]},
        ),
        ("ampere_plus", {"name": "NVIDIA A100", "compute_capability": [8, 0]}, None),
        (None, {"uuid": "GPU-other"}, {"name": "NVIDIA H100 PCIe"}),
    ],
)
def test_hardware_compatible_keys_hold_what_the_level_promises(hardware, same, differs):
    options = check_options(hardware_compatibility=hardware)
    key = cache_key("a" * 64, options, [], "11.4.0", H100_SXM)
    assert cache_key("a" * 64, options, [], "11.4.0", {**H100_SXM, **same}) == key
    if differs is not None:
        assert cache_key("a" * 64, options, [], "11.4.0", {**H100_SXM, **differs}) != key


# --- files written whole ------------------------------------------------------------------


def test_atomic_write_replaces_whole_files(tmp_path):
    target = tmp_path / "engine"
    atomic_write(target, b"first")
    atomic_write(target, b"second")
    assert target.read_bytes() == b"second"
    assert os.listdir(tmp_path) == ["engine"]


def test_an_interrupted_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "engine"
    target.write_bytes(b"old")

    def interrupted(source, destination):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, b"new" * 1000)
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["engine"]


# --- timing cache shared between processes ------------------------------------------------

ENTRY = re.compile(rb"worker \d+ entry \d+")


def merge_entries(theirs: bytes, ours: bytes) -> bytes:
    """Stands in for TensorRT's timing-cache combine: the union of both caches' entries."""
    return b"".join(sorted(set(theirs.splitlines(keepends=True)) | set(ours.splitlines(True))))


def timing_cache_worker(path: str, worker: int, entries: int) -> None:
    cache = TimingCacheFile(path)
    rng = random.Random(worker)
    for entry in range(entries):
        loaded = cache.load()
        # A build happens between load and save; other processes save meanwhile.
        time.sleep(rng.uniform(0, 0.01))
        ours = (loaded or b"") + b"worker %d entry %d\n" % (worker, entry)
        cache.save(ours, loaded, merge_entries)


def test_concurrent_builds_merge_the_timing_cache_without_losing_or_corrupting(tmp_path):
    path = tmp_path / "caches" / "model.timing"
    workers, entries = 4, 15
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=timing_cache_worker, args=(str(path), worker, entries))
        for worker in range(workers)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
        assert process.exitcode == 0
    lines = path.read_bytes().splitlines()
    assert all(ENTRY.fullmatch(line) for line in lines)
    assert len(lines) == len(set(lines)) == workers * entries
    # Only the cache and its lock file: no temporaries left behind.
    assert sorted(os.listdir(path.parent)) == ["model.timing", "model.timing.lock"]


def test_timing_cache_without_a_merge_keeps_the_newest_build(tmp_path):
    cache = TimingCacheFile(tmp_path / "model.timing")
    assert cache.load() is None
    cache.save(b"first", None, None)
    loaded = cache.load()
    cache.save(b"second", b"stale", None)
    assert loaded == b"first"
    assert cache.load() == b"second"


# --- build() -------------------------------------------------------------------------------


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    path = tmp_path / "cnn.onnx"
    onnx.save_model(build_models.cnn(), str(path))
    return path


def test_build_is_public():
    assert callable(trtfast.build)
    assert trtfast.build.__module__ == "trtfast.build"


@needs_no_full_tensorrt
def test_build_without_tensorrt_fails_cleanly_and_writes_nothing(tmp_path, model_path):
    with pytest.raises(TensorRTUnavailableError):
        trtfast.build(
            model_path,
            output=tmp_path / "cnn.engine",
            precision="fp16",
            shapes={"images": ((1, 3, 16, 16), (4, 3, 16, 16), (8, 3, 16, 16))},
            timing_cache=tmp_path / "timing" / "cnn.timing",
            cache_dir=tmp_path / "engines",
            progress=False,
        )
    assert os.listdir(tmp_path) == ["cnn.onnx"]


@needs_no_full_tensorrt
def test_a_lean_runtime_is_not_enough_to_build(model_path):
    try:
        library = trtfast.tensorrt_library()
    except TrtfastError:
        pytest.skip("no TensorRT library at all here")
    assert library.kind == "lean"
    with pytest.raises(TensorRTUnavailableError, match="needs the full TensorRT library"):
        trtfast.build(
            model_path,
            output=model_path.with_suffix(".engine"),
            shapes={"images": (1, 3, 16, 16)},
            progress=False,
        )


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"precision": "fp64"}, BuildOptionError, "precision must be one of"),
        ({"workspace": "4 parsecs"}, BuildOptionError, "unknown unit"),
        ({"output": "/no/such/folder/cnn.engine"}, BuildOptionError, "does not exist"),
        (
            {"progress": "yes"},
            BuildOptionError,
            "progress must be 'auto', True, False or a callable",
        ),
        ({"shapes": None}, ProfileError, "input 'images' has dynamic dimension 0 ('batch')"),
        ({"shapes": {"images": (1, 3, 8, 8)}}, ProfileError, "dimension 2 is 16 in the model"),
        ({"precision": "int8"}, BuildError, "needs a quantized model"),
    ],
)
def test_build_checks_everything_before_looking_for_tensorrt(
    tmp_path, model_path, arguments, error, message
):
    # These fail the same way with or without TensorRT: no build starts.
    options = {
        "output": tmp_path / "cnn.engine",
        "shapes": {"images": ((1, 3, 16, 16), (4, 3, 16, 16), (8, 3, 16, 16))},
        "progress": False,
        **arguments,
    }
    with pytest.raises(error, match=re.escape(message)):
        trtfast.build(model_path, **options)
    assert os.listdir(tmp_path) == ["cnn.onnx"]


def test_build_options_that_name_folders_and_files(tmp_path, model_path):
    with pytest.raises(BuildOptionError, match="is a folder; name the engine file"):
        trtfast.build(model_path, output=tmp_path, progress=False)
    with pytest.raises(BuildOptionError, match=r"cache_dir .* exists and is not a folder"):
        trtfast.build(model_path, cache_dir=model_path, progress=False)
    with pytest.raises(BuildOptionError, match=r"timing_cache .* is a folder"):
        trtfast.build(
            model_path, output=tmp_path / "x.engine", timing_cache=tmp_path, progress=False
        )


def test_progress_without_tqdm_says_what_to_install(tmp_path, model_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    with pytest.raises(ImportError, match=r"pip install 'trtfast\[build\]', or pass progress"):
        trtfast.build(model_path, output=tmp_path / "cnn.engine", progress=True)
