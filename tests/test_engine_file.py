"""The engine container: round trips, every truncation and corrupted byte, raw plans, foreign
files, atomic writes and the inspect/export command line."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import struct
import subprocess
import sys
import tempfile
import tracemalloc
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trtfast
from trtfast import EngineFormatError, EngineInfo, TensorSpec, _core, engine_file

# The fuzzer's harness knows the layout of plans and headers; the tests share it.
sys.path.insert(0, str(Path(__file__).parent / "fuzz"))
from engine_file_fuzz import HEADER_CRC_AT, fake_plan


def sample_info(**changes: Any) -> EngineInfo:
    info = EngineInfo(
        format_version=0,
        tensorrt_version="11.4.0",
        edition="standard",
        gpu_name="NVIDIA H100 80GB HBM3",
        compute_capability=(9, 0),
        inputs=(
            TensorSpec(
                "images",
                "float16",
                (-1, 3, 64, 64),
                True,
                (((1, 3, 64, 64), (4, 3, 64, 64), (8, 3, 64, 64)),),
            ),
        ),
        outputs=(TensorSpec("scores", "float32", (-1, 10), False),),
        build_options={"precision": "fp16", "workspace": None},
        model_sha256="ab" * 32,
        plan_sha256="",
        plan_size=0,
        raw_plan=False,
        host_code=False,
    )
    return dataclasses.replace(info, **changes)


def as_written(info: EngineInfo, plan: bytes) -> EngineInfo:
    """What reading back `encode(info, plan)` must give."""
    return dataclasses.replace(
        info,
        format_version=engine_file.FORMAT_VERSION,
        plan_sha256=hashlib.sha256(plan).hexdigest(),
        plan_size=len(plan),
        raw_plan=False,
    )


def rechecksum(data: bytearray) -> bytes:
    """Store a valid header CRC after deliberately changing header bytes."""
    header_size = struct.unpack_from("<I", data, 12)[0]
    data[HEADER_CRC_AT : HEADER_CRC_AT + 4] = bytes(4)
    struct.pack_into("<I", data, HEADER_CRC_AT, zlib.crc32(data[:header_size]))
    return bytes(data)


# --- round trips ---------------------------------------------------------------------------------

dims = st.integers(min_value=-1, max_value=4096)
shapes = st.lists(dims, max_size=5).map(tuple)


@st.composite
def profile_for(draw: st.DrawFn, rank: int) -> tuple[tuple[int, ...], ...]:
    corners = [
        sorted(draw(st.lists(st.integers(0, 1 << 20), min_size=3, max_size=3))) for _ in range(rank)
    ]
    return tuple(tuple(corner[i] for corner in corners) for i in range(3))


@st.composite
def tensor_specs(draw: st.DrawFn, name: str, is_input: bool) -> TensorSpec:
    shape = draw(shapes)
    profiles = ()
    if is_input:
        profiles = tuple(draw(st.lists(profile_for(len(shape)), max_size=3)))
    dtype = draw(st.sampled_from(sorted(engine_file.DTYPES)))
    return TensorSpec(name, dtype, shape, is_input, profiles)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def engine_infos(draw: st.DrawFn) -> EngineInfo:
    names = draw(st.lists(st.text(min_size=1, max_size=12), unique=True, max_size=6))
    split = draw(st.integers(0, len(names)))
    return EngineInfo(
        format_version=draw(st.integers(0, 5)),
        tensorrt_version=draw(st.sampled_from(["", "10.16.0", "11.4.0"]) | st.text(max_size=10)),
        edition=draw(st.sampled_from(engine_file.EDITIONS)),
        gpu_name=draw(st.text(max_size=40)),
        compute_capability=(draw(st.integers(0, 0xFFFF)), draw(st.integers(0, 0xFFFF))),
        inputs=tuple(draw(tensor_specs(n, True)) for n in names[:split]),
        outputs=tuple(draw(tensor_specs(n, False)) for n in names[split:]),
        build_options=draw(st.dictionaries(st.text(max_size=10), json_values, max_size=6)),
        model_sha256=draw(st.just("") | st.binary(min_size=32, max_size=32).map(bytes.hex)),
        plan_sha256=draw(st.text(max_size=3)),
        plan_size=draw(st.integers(0, 100)),
        raw_plan=draw(st.booleans()),
        host_code=draw(st.booleans()),
    )


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(info=engine_infos(), plan=st.binary(min_size=1, max_size=3000))
def test_round_trip_through_bytes_and_files(info: EngineInfo, plan: bytes) -> None:
    expected = as_written(info, plan)
    data = engine_file.encode(info, plan)
    assert data.endswith(plan)
    assert engine_file.read(data) == (expected, plan)
    assert engine_file.read_info(data, check_plan=True) == expected
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.engine"
        engine_file.write(path, info, plan)
        assert path.read_bytes() == data
        assert engine_file.read(path) == (expected, plan)
        assert engine_file.read_info(str(path)) == expected


def test_plan_starts_aligned_and_hashes_match_sha256sum(tmp_path: Path) -> None:
    plan = fake_plan(os.urandom(5000))
    data = engine_file.encode(sample_info(), plan)
    offset = len(data) - len(plan)
    assert offset % 64 == 0
    info = engine_file.read_info(data)
    assert info.plan_sha256 == hashlib.sha256(plan).hexdigest()
    assert info.plan_size == len(plan)


@given(st.binary(max_size=5000), st.integers(0, 0xFFFFFFFF))
def test_checksums_agree_with_zlib_and_hashlib(data: bytes, start: int) -> None:
    assert _core.engine_file.crc32(data) == zlib.crc32(data)
    assert _core.engine_file.crc32(data, start) == zlib.crc32(data, start)
    assert _core.engine_file.sha256(data) == hashlib.sha256(data).hexdigest()


def test_sha256_across_block_boundaries() -> None:
    data = os.urandom(300)
    for size in range(len(data)):
        assert _core.engine_file.sha256(data[:size]) == hashlib.sha256(data[:size]).hexdigest()


# --- damage --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_file() -> bytes:
    return engine_file.encode(sample_info(), fake_plan(b"plan bytes"))


def test_every_truncation_is_a_format_error(small_file: bytes, tmp_path: Path) -> None:
    path = tmp_path / "cut.engine"
    for size in range(len(small_file)):
        cut = small_file[:size]
        with pytest.raises(EngineFormatError):
            engine_file.read(cut)
        with pytest.raises(EngineFormatError):
            engine_file.read_info(cut)
        path.write_bytes(cut)
        with pytest.raises(EngineFormatError):
            engine_file.read(path)


@pytest.mark.parametrize("mask", [0x01, 0x80, 0xFF])
def test_every_corrupted_byte_is_a_format_error(small_file: bytes, mask: int) -> None:
    for offset in range(len(small_file)):
        damaged = bytearray(small_file)
        damaged[offset] ^= mask
        with pytest.raises(EngineFormatError):
            engine_file.read(bytes(damaged))
        with pytest.raises(EngineFormatError):
            engine_file.read_info(bytes(damaged), check_plan=True)


def test_every_corrupted_byte_of_a_file_is_a_format_error(
    small_file: bytes, tmp_path: Path
) -> None:
    path = tmp_path / "damaged.engine"
    for offset in range(len(small_file)):
        damaged = bytearray(small_file)
        damaged[offset] ^= 0x20
        path.write_bytes(damaged)
        with pytest.raises(EngineFormatError):
            engine_file.read(path)
        with pytest.raises(EngineFormatError):
            trtfast.inspect(path)


@given(data=st.data())
def test_random_damage_is_a_format_error(small_file: bytes, data: st.DataObject) -> None:
    damaged = bytearray(small_file)
    offsets = data.draw(st.lists(st.integers(0, len(damaged) - 1), min_size=1, max_size=8))
    for offset in offsets:
        damaged[offset] ^= data.draw(st.integers(1, 255))
    if bytes(damaged) == small_file:  # two flips of one byte can cancel
        return
    with pytest.raises(EngineFormatError):
        engine_file.read(bytes(damaged))


def test_header_only_check_leaves_the_plan_to_read(small_file: bytes) -> None:
    damaged = bytearray(small_file)
    damaged[-1] ^= 0xFF
    engine_file.read_info(bytes(damaged))  # the header is intact
    with pytest.raises(EngineFormatError, match="plan's CRC-32"):
        engine_file.read_info(bytes(damaged), check_plan=True)
    with pytest.raises(EngineFormatError, match="plan's CRC-32"):
        engine_file.read(bytes(damaged))


def test_messages_name_the_problem(small_file: bytes) -> None:
    with pytest.raises(EngineFormatError, match=r"truncated: its plan should have \d+ bytes"):
        engine_file.read(small_file[:-3])
    with pytest.raises(EngineFormatError, match="3 unexpected bytes follow the plan"):
        engine_file.read(small_file + b"xyz")
    damaged = bytearray(small_file)
    damaged[50] ^= 1
    with pytest.raises(EngineFormatError, match="header's CRC-32"):
        engine_file.read(bytes(damaged))


def test_a_newer_format_asks_for_a_newer_trtfast(small_file: bytes) -> None:
    newer = bytearray(small_file)
    struct.pack_into("<I", newer, 8, engine_file.FORMAT_VERSION + 1)
    with pytest.raises(EngineFormatError, match=r"newer trtfast.*upgrade trtfast"):
        engine_file.read(rechecksum(newer))


def encoded_with_metadata(metadata: str) -> bytes:
    plan = fake_plan()
    header = _core.engine_file.encode_header(
        plan,
        tensorrt_version="11.4.0",
        edition="standard",
        gpu_name="gpu",
        compute_capability_major=9,
        compute_capability_minor=0,
        host_code=False,
        model_sha256="",
        metadata_json=metadata,
    )
    return bytes(header) + plan


GOOD_INPUT = {"name": "x", "dtype": "float32", "shape": [1], "profiles": []}


@pytest.mark.parametrize(
    "metadata",
    [
        "",
        "not json",
        "[]",
        "{}",
        json.dumps({"inputs": [], "outputs": []}),
        json.dumps({"inputs": {}, "outputs": [], "build_options": {}}),
        json.dumps({"inputs": [1], "outputs": [], "build_options": {}}),
        json.dumps({"inputs": [{"name": "x"}], "outputs": [], "build_options": {}}),
        json.dumps(
            {"inputs": [{**GOOD_INPUT, "dtype": "float99"}], "outputs": [], "build_options": {}}
        ),
        json.dumps(
            {"inputs": [{**GOOD_INPUT, "shape": [1.5]}], "outputs": [], "build_options": {}}
        ),
        json.dumps({"inputs": [{**GOOD_INPUT, "shape": [-2]}], "outputs": [], "build_options": {}}),
        json.dumps(
            {
                "inputs": [{**GOOD_INPUT, "profiles": [[[2], [1], [3]]]}],
                "outputs": [],
                "build_options": {},
            }
        ),
        json.dumps({"inputs": [{**GOOD_INPUT, "shape": True}], "outputs": [], "build_options": {}}),
        json.dumps({"inputs": [GOOD_INPUT, GOOD_INPUT], "outputs": [], "build_options": {}}),
        json.dumps({"inputs": [], "outputs": [], "build_options": []}),
        "[" * 100000,
    ],
)
def test_checksummed_but_invalid_metadata_is_a_format_error(metadata: str) -> None:
    with pytest.raises(EngineFormatError, match="metadata"):
        engine_file.read(encoded_with_metadata(metadata))


def test_unknown_metadata_keys_are_ignored() -> None:
    metadata = {"inputs": [GOOD_INPUT], "outputs": [], "build_options": {}, "later": 1}
    info, _ = engine_file.read(encoded_with_metadata(json.dumps(metadata)))
    assert info.inputs == (TensorSpec("x", "float32", (1,), True),)


# --- raw plans and foreign files -----------------------------------------------------------------


def test_a_raw_plan_is_recognised_by_its_own_header(tmp_path: Path) -> None:
    plan = fake_plan(os.urandom(100), version=(10, 16, 0, 5))
    expected = EngineInfo(
        format_version=0,
        tensorrt_version="10.16.0",
        edition="",
        gpu_name="",
        compute_capability=(0, 0),
        inputs=(),
        outputs=(),
        build_options={},
        model_sha256="",
        plan_sha256="",
        plan_size=len(plan),
        raw_plan=True,
        host_code=False,
    )
    info, read_plan = engine_file.read(plan)
    assert info == expected
    assert read_plan is plan  # the whole input is the plan: no copy
    path = tmp_path / "model.plan"
    path.write_bytes(plan)
    assert engine_file.read(path) == (expected, plan)
    assert trtfast.inspect(path) == expected


def test_a_raw_plan_of_another_layout_has_no_version() -> None:
    plan = bytearray(fake_plan(b"x" * 10))
    struct.pack_into("<I", plan, 4, 3)
    assert engine_file.read_info(bytes(plan)).tensorrt_version == ""


def test_a_plan_shorter_than_its_header_is_a_format_error() -> None:
    for size in range(1, 28):
        with pytest.raises(EngineFormatError, match="truncated"):
            engine_file.read(fake_plan()[:size])


# A real ONNX ModelProto's first fields: ir_version 8, producer_name "pytorch".
ONNX_START = b"\x08\x08\x12\x07pytorch\x1a\x052.5.0:\x02\n\x00"
PLAN = fake_plan(b"weights")


@pytest.mark.parametrize(
    ("content", "named"),
    [
        (b"\x89PNG\r\n\x1a\n" + bytes(40), "a PNG image"),
        (ONNX_START + bytes(40), "an ONNX model"),
        (b"PK\x03\x04" + bytes(40), "a ZIP archive"),
        (b'{"model": "resnet"}\n', "text"),
        (struct.pack("<I", 9) + b'{"a": 10}' + PLAN, "an Ultralytics engine"),
        (b"\x00\x01\x02\x03\x04", ""),
    ],
)
def test_foreign_files_are_named(tmp_path: Path, content: bytes, named: str) -> None:
    path = tmp_path / "model.engine"
    path.write_bytes(content)
    with pytest.raises(EngineFormatError) as error:
        engine_file.read(path)
    message = str(error.value)
    assert str(path) in message
    assert "neither a trtfast engine nor a TensorRT plan" in message
    assert named in message
    with pytest.raises(EngineFormatError, match="neither a trtfast engine nor a TensorRT plan"):
        engine_file.read(content)


def test_an_executable_is_not_an_engine() -> None:
    with pytest.raises(EngineFormatError, match="an ELF binary"):
        engine_file.read_info(sys.executable)


def test_an_empty_file_says_it_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "empty.engine"
    path.write_bytes(b"")
    with pytest.raises(EngineFormatError, match="is empty"):
        engine_file.read(path)
    with pytest.raises(EngineFormatError, match="is empty"):
        engine_file.read(b"")


def test_files_that_cannot_be_opened_raise_os_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        engine_file.read(tmp_path / "missing.engine")
    with pytest.raises(IsADirectoryError):
        engine_file.read_info(tmp_path)


# --- encoding rules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"edition": ""}, "edition"),
        ({"model_sha256": "ABC"}, "model_sha256"),
        ({"compute_capability": (70000, 0)}, "compute capability"),
    ],
)
def test_encode_rejects_invalid_fields(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        engine_file.encode(sample_info(**change), fake_plan())


def test_encode_rejects_an_empty_plan() -> None:
    with pytest.raises(ValueError, match="plan is empty"):
        engine_file.encode(sample_info(), b"")


@pytest.mark.parametrize(
    "options",
    [
        {"x": float("nan")},
        {"x": {1: 2}},
        {"x": {1, 2}},
        {"x": b"bytes"},
        {"x": "\ud800"},
        {"\udfff": 1},
        {"x": json.loads("[" * 40 + "]" * 40)},
    ],
)
def test_build_options_must_be_json(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="build_options"):
        sample_info(build_options=options)


def test_build_options_are_stored_as_they_read_back() -> None:
    options = {"profiles": [{"x": ((1, 2), (3, 4), (5, 6))}]}
    info = sample_info(build_options=options)
    assert info.build_options == {"profiles": [{"x": [[1, 2], [3, 4], [5, 6]]}]}
    options["profiles"].clear()
    assert info.build_options["profiles"]  # detached from the caller's dict


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dtype": "float64"}, "dtype"),
        ({"name": ""}, "name"),
        ({"name": "in\ud800"}, "not valid Unicode text"),
        ({"shape": (1, -2)}, "below -1"),
        ({"shape": (1.0,)}, "ints"),
        ({"profiles": (((2,), (1,), (3,)),)}, "min <= opt <= max"),
        ({"profiles": (((1,), (2,)),)}, "min, opt, max"),
        ({"profiles": (((1,), (2, 2), (3,)),)}, "differ in length"),
        ({"is_input": False, "profiles": (((1,), (1,), (1,)),)}, "only inputs"),
    ],
)
def test_tensor_specs_are_validated(kwargs: dict[str, Any], message: str) -> None:
    fields: dict[str, Any] = {"name": "x", "dtype": "float32", "shape": (-1,), "is_input": True}
    with pytest.raises((TypeError, ValueError), match=message):
        TensorSpec(**{**fields, **kwargs})


def test_tensor_names_are_unique() -> None:
    with pytest.raises(ValueError, match="unique"):
        sample_info(outputs=(TensorSpec("images", "float32", (1,), False),))


# --- writing -------------------------------------------------------------------------------------


def test_write_is_atomic_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    path = tmp_path / "model.engine"
    plans = [fake_plan(b"first"), fake_plan(b"second")]
    for plan in plans:
        engine_file.write(path, sample_info(), plan)
        assert os.listdir(tmp_path) == ["model.engine"]
        assert engine_file.read(path)[1] == plan
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    target = tmp_path / "model.engine"
    target.mkdir()  # os.replace cannot put a file over a directory
    with pytest.raises(OSError):
        engine_file.write(target, sample_info(), fake_plan())
    assert os.listdir(tmp_path) == ["model.engine"]
    assert target.is_dir()

    path = tmp_path / "other.engine"
    engine_file.write(path, sample_info(), fake_plan(b"old"))
    with pytest.raises(ValueError):
        engine_file.write(path, sample_info(edition="nope"), fake_plan(b"new"))
    assert sorted(os.listdir(tmp_path)) == ["model.engine", "other.engine"]
    assert engine_file.read(path)[1] == fake_plan(b"old")


def test_reading_does_not_copy_the_plan_more_than_once(tmp_path: Path) -> None:
    plan = fake_plan(os.urandom(32 << 20))
    path = tmp_path / "large.engine"
    engine_file.write(path, sample_info(), plan)
    data = path.read_bytes()
    for source in (path, data):
        tracemalloc.start()
        try:
            _, read_plan = engine_file.read(source)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert read_plan == plan
        assert peak < len(plan) * 1.1, f"reading {type(source).__name__} peaked at {peak} bytes"
        del read_plan
    tracemalloc.start()
    try:
        trtfast.inspect(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20  # the plan is streamed through its checksum, never held


# --- export and the command line -----------------------------------------------------------------


def test_export_round_trip(tmp_path: Path) -> None:
    plan = fake_plan(os.urandom(1000), version=(11, 4, 0, 1))
    engine = tmp_path / "model.engine"
    engine_file.write(engine, sample_info(), plan)
    exported = tmp_path / "model.plan"
    trtfast.export(engine, exported)
    assert exported.read_bytes() == plan
    assert hashlib.sha256(exported.read_bytes()).hexdigest() == trtfast.inspect(engine).plan_sha256
    info = trtfast.inspect(exported)
    assert info.raw_plan and info.tensorrt_version == "11.4.0"
    # A bare plan exports as itself, and wrapping it again gives the same engine.
    again = tmp_path / "again.plan"
    trtfast.export(exported, again)
    assert again.read_bytes() == plan
    engine_file.write(tmp_path / "again.engine", sample_info(), again.read_bytes())
    assert (tmp_path / "again.engine").read_bytes() == engine.read_bytes()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trtfast", *args], capture_output=True, text=True, check=False
    )


def test_cli_inspect(tmp_path: Path) -> None:
    info = sample_info(host_code=True, build_options={"precision": "fp16", "workspace": 1 << 30})
    plan = fake_plan(b"x" * 100)
    path = tmp_path / "model.engine"
    engine_file.write(path, info, plan)
    result = run_cli("inspect", str(path))
    assert result.returncode == 0, result.stderr
    text = result.stdout
    for expected in [
        "trtfast engine, format version 1",
        "11.4.0 (standard edition)",
        "NVIDIA H100 80GB HBM3, compute capability 9.0",
        "host code      yes",
        f"{len(plan):,} bytes",
        hashlib.sha256(plan).hexdigest(),
        "ab" * 32,
        "images  float16  (-1, 3, 64, 64)",
        "profile 0: min (1, 3, 64, 64)  opt (4, 3, 64, 64)  max (8, 3, 64, 64)",
        "scores  float32  (-1, 10)",
        'precision  "fp16"',
        "workspace  1073741824",
    ]:
        assert expected in text, f"{expected!r} missing from:\n{text}"


def test_cli_inspect_json(tmp_path: Path) -> None:
    plan = fake_plan(b"y")
    path = tmp_path / "model.engine"
    engine_file.write(path, sample_info(), plan)
    result = run_cli("inspect", str(path), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == as_written(sample_info(), plan).to_json()


def test_cli_inspect_raw_plan(tmp_path: Path) -> None:
    path = tmp_path / "model.plan"
    path.write_bytes(fake_plan(b"z", version=(10, 16, 1, 0)))
    result = run_cli("inspect", str(path))
    assert result.returncode == 0, result.stderr
    assert "bare TensorRT plan" in result.stdout
    assert "10.16.1" in result.stdout


def test_cli_export(tmp_path: Path) -> None:
    plan = fake_plan(b"w" * 50)
    engine = tmp_path / "model.engine"
    engine_file.write(engine, sample_info(), plan)
    result = run_cli("export", str(engine), "-o", str(tmp_path / "model.plan"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "model.plan").read_bytes() == plan


def test_cli_reports_bad_files_without_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "picture.engine"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(20))
    for args in (["inspect", str(path)], ["export", str(path), "-o", str(tmp_path / "o.plan")]):
        result = run_cli(*args)
        assert result.returncode == 1
        assert "a PNG image" in result.stderr
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "o.plan").exists()
    missing = run_cli("inspect", str(tmp_path / "missing.engine"))
    assert missing.returncode == 1
    assert "No such file" in missing.stderr


def test_where_an_engine_was_built_is_recorded_and_shown(tmp_path: Path) -> None:
    from test_build import H100_SXM

    environment = {
        "gpu": H100_SXM,
        "library": {"parser": 110100, "cuda_major": 13},
        "trtfast": "1.0.0",
        "cache_schema": 2,
    }
    info = sample_info(environment=environment)
    engine_file.write(tmp_path / "model.engine", info, fake_plan())
    read = engine_file.read_info(tmp_path / "model.engine")
    assert read.environment == environment
    text = engine_file.summary(read, "model.engine")
    assert "built on       GPU-00000000-0000-0000-0000-000000000001, 132 SMs, 85.0 GiB" in text
    assert "built with     ONNX parser 110100, CUDA 13" in text
    # Files that record none read back with none.
    assert engine_file.read_info(engine_file.encode(sample_info(), fake_plan())).environment == {}
    with pytest.raises(ValueError, match="environment"):
        sample_info(environment={"gpu": float("nan")})
