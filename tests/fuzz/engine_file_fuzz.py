#!/usr/bin/env python3
"""Coverage-guided fuzzing of the engine-file reader with atheris (libFuzzer for Python).

    python tests/fuzz/engine_file_fuzz.py -max_total_time=60 [CORPUS_DIR] [libFuzzer flags]
    python tests/fuzz/engine_file_fuzz.py crash-1234...   # replay one input

Every input is read as an engine file from memory and from an open file. The only exception
allowed out is EngineFormatError (and OSError from the file, as documented); anything else, a
crash, a sanitizer report or a hang (-timeout, 10 s here) is a finding. What a successful read
returns is checked too: memory and file agree, the header alone agrees with the full read, and
re-encoding the result reads back the same.

Seeds are written into the first corpus folder (a temporary one if none is given): engine files
encoded from realistic EngineInfos, TensorRT plans built for real with TensorRT-RTX when its
Python bindings (tensorrt_rtx) are installed, bare-plan headers and a few foreign formats. A
custom mutator repairs the checksums of a mutated trtfast header most of the time, so that the
fuzzer gets past the CRC-32 into the fields behind it.

Every input that ever failed is kept in tests/fuzz/regressions/ and replayed by
tests/test_fuzz_regressions.py on every test run. See tests/fuzz/README.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import struct
import sys
import tempfile
import zlib
from pathlib import Path
from typing import Any

if __name__ == "__main__":
    import atheris

    # Python coverage of trtfast's own modules; the C++ reader is covered where the extension
    # was built with TRTFAST_FUZZ_COVERAGE (clang's -fsanitize=fuzzer-no-link).
    with atheris.instrument_imports(include=["trtfast"]):
        from trtfast import engine_file
        from trtfast.errors import EngineFormatError
else:
    from trtfast import engine_file
    from trtfast.errors import EngineFormatError

HERE = Path(__file__).resolve().parent
DICTIONARY = HERE / "engine_file.dict"

MAGIC = b"\x89TRTFAST"
HEADER_SIZE_AT, HEADER_CRC_AT, PLAN_SIZE_AT, PLAN_CRC_AT = 12, 16, 24, 32
FIXED_FIELDS_END = 44  # see cpp/include/trtfast/engine_file.hpp


class Finding(AssertionError):
    """A read that broke a promise of the engine-file reader."""


# --- the check -----------------------------------------------------------------------------------


def _outcome(read: Any, *args: Any, **kwargs: Any) -> tuple[str, Any]:
    try:
        return "ok", read(*args, **kwargs)
    except EngineFormatError as error:
        if not str(error):
            raise Finding("EngineFormatError without a message") from error
        return "format error", None


def _file_outcome(read: Any, data: bytes, **kwargs: Any) -> tuple[str, Any]:
    """The same read from an open file (an anonymous in-memory one)."""
    fd = os.memfd_create("engine")
    try:
        os.write(fd, data)
        try:
            return _outcome(read, f"/proc/self/fd/{fd}", **kwargs)
        except OSError as error:
            return "os error", error.errno
    finally:
        os.close(fd)


def check(data: bytes) -> None:
    """Read `data` every way the reader offers; raise Finding (or let any unexpected exception
    out) when the reader misbehaves."""
    memory = _outcome(engine_file.read, data)
    from_file = _file_outcome(engine_file.read, data)
    if memory[0] != from_file[0] or memory[1] != from_file[1]:
        raise Finding(f"reading from memory gave {memory[0]}, from a file {from_file[0]}")
    checked = _outcome(engine_file.read_info, data, check_plan=True)
    header = _outcome(engine_file.read_info, data)
    if memory[0] != "ok":
        if checked[0] == "ok":
            raise Finding("read_info(check_plan=True) accepted what read() refused")
        return

    info, plan = memory[1]
    if checked != ("ok", info) or header != ("ok", info):
        raise Finding(f"read_info disagrees with read: {checked[0]}, {header[0]}")
    if info.plan_size != len(plan):
        raise Finding(f"plan_size {info.plan_size} but the plan has {len(plan)} bytes")
    engine_file.summary(info, "fuzzed")
    info.to_json()
    if info.raw_plan:
        if plan != data:
            raise Finding("a raw plan must be the whole file")
        return
    # The stored plan SHA-256 is the plan's identity and is not recomputed when reading (the
    # CRC-32 guards integrity), so re-encoding may correct it; everything else must survive.
    again, plan_again = engine_file.read(engine_file.encode(info, plan))
    if plan_again != plan or dataclasses.replace(again, plan_sha256=info.plan_sha256) != info:
        raise Finding(f"re-encoding changed the engine: {info} became {again}")


def test_one_input(data: bytes) -> None:
    check(data)


# --- mutation ------------------------------------------------------------------------------------


def reframe(data: bytes, rng: random.Random) -> bytes:
    """Repair the size and checksum fields of a trtfast header after a mutation, so that the
    mutated fields behind the header CRC-32 get parsed."""
    if not data.startswith(MAGIC) or len(data) < FIXED_FIELDS_END:
        return data
    out = bytearray(data)
    (header_size,) = struct.unpack_from("<I", out, HEADER_SIZE_AT)
    if rng.random() < 0.3:
        # Re-align the header to its fields, as a writer would.
        header_size = max(FIXED_FIELDS_END, min(len(out), header_size))
        header_size = (header_size + 63) // 64 * 64
        struct.pack_into("<I", out, HEADER_SIZE_AT, header_size)
    if header_size > len(out) or header_size < FIXED_FIELDS_END:
        return bytes(out)
    if rng.random() < 0.7:
        struct.pack_into("<Q", out, PLAN_SIZE_AT, len(out) - header_size)
    (plan_size,) = struct.unpack_from("<Q", out, PLAN_SIZE_AT)
    if header_size + plan_size <= len(out):
        plan = out[header_size : header_size + plan_size]
        struct.pack_into("<I", out, PLAN_CRC_AT, zlib.crc32(plan))
    struct.pack_into("<I", out, HEADER_CRC_AT, 0)
    struct.pack_into("<I", out, HEADER_CRC_AT, zlib.crc32(out[:header_size]))
    return bytes(out)


def split_header(data: bytes) -> tuple[bytes, list[bytes], bytes] | None:
    """(fixed fields, the five strings, plan) of a trtfast file whose framing holds together."""
    if not data.startswith(MAGIC) or len(data) < FIXED_FIELDS_END:
        return None
    (header_size,) = struct.unpack_from("<I", data, HEADER_SIZE_AT)
    strings, at = [], FIXED_FIELDS_END
    for _ in range(5):
        if at + 4 > min(header_size, len(data)):
            return None
        (length,) = struct.unpack_from("<I", data, at)
        strings.append(data[at + 4 : at + 4 + length])
        at += 4 + length
    if at > min(header_size, len(data)):
        return None
    return data[:FIXED_FIELDS_END], strings, data[header_size:]


def join_header(fixed: bytes, strings: list[bytes], plan: bytes) -> bytes:
    header = bytearray(fixed)
    for value in strings:
        header += struct.pack("<I", len(value)) + value
    header += bytes(-len(header) % 64)
    struct.pack_into("<I", header, HEADER_SIZE_AT, len(header))
    return reframe(bytes(header) + plan, random.Random(0))


def json_fragment(rng: random.Random) -> str:
    """JSON text of a kind a reader must be ready for (as text: nesting this deep is beyond
    what Python's json module writes)."""
    depth = rng.choice([1, 2, 8, 64, 300, 900, 5000])
    return rng.choice(
        [
            "null",
            "true",
            "-1",
            "0",
            str(rng.randrange(-(2**70), 2**70)),
            "1" + "0" * 5000,
            "1.5",
            "1e999",
            "NaN",
            "-Infinity",
            '""',
            '"float16"',
            '"\\ud800"',
            '"' + "x" * rng.randrange(1, 5000) + '"',
            "[]",
            "{}",
            "[[1,2,3],[1,2,3],[1,2,3]]",
            '{"name":"x","dtype":"float32","shape":[-1],"profiles":[]}',
            "[" * depth + "]" * depth,
            '{"a":' * depth + "0" + "}" * depth,
        ]
    )


def mutate_metadata(data: bytes, rng: random.Random) -> bytes:
    """Change one node of the metadata JSON: what byte flips rarely reach."""
    parts = split_header(data)
    if parts is None:
        return data
    fixed, strings, plan = parts
    try:
        metadata = json.loads(strings[4])
    except (ValueError, RecursionError):
        return data
    nodes: list[tuple[Any, Any]] = []  # (container, key)
    stack = [metadata]
    while stack:
        node = stack.pop()
        if isinstance(node, (dict, list)):
            for key, child in list(node.items() if isinstance(node, dict) else enumerate(node)):
                nodes.append((node, key))
                stack.append(child)
    if not nodes:
        return data
    container, key = rng.choice(nodes)
    placeholder = "\0fragment\0"
    if rng.random() < 0.15 and isinstance(container, dict):
        del container[key]
    elif rng.random() < 0.15 and isinstance(container, dict):
        container["unknown"] = placeholder
    else:
        container[key] = placeholder
    text = json.dumps(metadata, separators=(",", ":"))
    text = text.replace(json.dumps(placeholder), json_fragment(rng), 1)
    return join_header(fixed, [*strings[:4], text.encode()], plan)


def mutate(data: bytes, max_size: int, seed: int) -> bytes:
    import atheris

    rng = random.Random(seed)
    if rng.random() < 0.2:
        mutated = mutate_metadata(data, rng)
    else:
        mutated = atheris.Mutate(data, max_size)
        if rng.random() < 0.8:
            mutated = reframe(mutated, rng)
    return mutated[:max_size]


# --- seeds ---------------------------------------------------------------------------------------


def fake_plan(payload: bytes = b"", version: tuple[int, int, int, int] = (11, 4, 0, 7)) -> bytes:
    """Bytes that start like a TensorRT plan: the tag 'ftrt', layout 0, and at bytes 24..27 the
    TensorRT version that built it."""
    return b"ftrt" + struct.pack("<I", 0) + bytes(16) + bytes(version) + payload


def realistic_infos() -> list[engine_file.EngineInfo]:
    spec = engine_file.TensorSpec
    detector = engine_file.EngineInfo(
        format_version=0,
        tensorrt_version="11.4.0",
        edition="standard",
        gpu_name="NVIDIA H100 80GB HBM3",
        compute_capability=(9, 0),
        inputs=(
            spec(
                "images",
                "float16",
                (-1, 3, 640, 640),
                True,
                (((1, 3, 640, 640), (8, 3, 640, 640), (32, 3, 640, 640)),),
            ),
        ),
        outputs=(
            spec("boxes", "float16", (-1, 8400, 4), False),
            spec("scores", "float32", (-1, 8400, 80), False),
        ),
        build_options={
            "precision": "fp16",
            "strongly_typed": True,
            "workspace": 4 << 30,
            "optimization_level": 3,
            "version_compatible": False,
            "hardware_compatibility": None,
            "plugins": [],
            "profiles": [{"images": [[1, 3, 640, 640], [8, 3, 640, 640], [32, 3, 640, 640]]}],
        },
        model_sha256=hashlib.sha256(b"detector.onnx").hexdigest(),
        plan_sha256="",
        plan_size=0,
        raw_plan=False,
        host_code=False,
    )
    language_model = dataclasses.replace(
        detector,
        tensorrt_version="10.16.0",
        gpu_name="NVIDIA L4",
        compute_capability=(8, 9),
        inputs=(
            spec(
                "input_ids",
                "int64",
                (-1, -1),
                True,
                (((1, 1), (1, 128), (4, 2048)), ((1, 1), (16, 64), (64, 256))),
            ),
            spec("attention_mask", "bool", (-1, -1), True, (((1, 1), (1, 128), (4, 2048)),) * 2),
        ),
        outputs=(spec("logits", "bfloat16", (-1, -1, 32000), False),),
        build_options={"precision": "bf16", "version_compatible": True, "plugins": ["libx.so"]},
        host_code=True,
    )
    rtx = dataclasses.replace(
        detector,
        edition="rtx",
        tensorrt_version="1.7.1",
        gpu_name="NVIDIA GeForce RTX 4090 — ünïcode",
        compute_capability=(8, 9),
        inputs=(spec("x", "float32", (), True, (((), (), ()),)),),
        outputs=(spec("y", "float8_e4m3fn", (2, 2), False),),
        build_options={},
        model_sha256="",
    )
    return [detector, language_model, rtx]


def rtx_plans() -> list[bytes]:
    """Plans built for real by TensorRT-RTX (CPU-only ahead-of-time build), when installed."""
    try:
        import tensorrt_rtx as trt
    except ImportError:
        return []
    try:
        logger = trt.Logger(trt.Logger.ERROR)
        builder = trt.Builder(logger)
        network = builder.create_network(0)
        x = network.add_input("x", trt.float32, (1, 8))
        relu = network.add_activation(x, trt.ActivationType.RELU)
        relu.get_output(0).name = "y"
        network.mark_output(relu.get_output(0))
        plan = builder.build_serialized_network(network, builder.create_builder_config())
    except Exception as error:  # an optional seed source: say why and fuzz without it
        print(f"engine_file_fuzz: no TensorRT-RTX seed ({error})", file=sys.stderr)
        return []
    if plan is None:
        print("engine_file_fuzz: TensorRT-RTX built no plan; no RTX seed", file=sys.stderr)
        return []
    return [bytes(plan)]


def seeds() -> list[bytes]:
    rng = random.Random(0)
    plans = [fake_plan(rng.randbytes(size)) for size in (0, 1, 37, 300)]
    found = []
    for index, info in enumerate(realistic_infos()):
        found.append(engine_file.encode(info, plans[index % len(plans)]))
    for plan in rtx_plans():
        rtx = dataclasses.replace(realistic_infos()[2], tensorrt_version="", inputs=(), outputs=())
        found += [plan, engine_file.encode(rtx, plan)]
    found += [
        fake_plan(b""),  # the shortest plan header
        fake_plan(b"", (10, 16, 0, 3))[:27],  # one byte short of it
        fake_plan(rng.randbytes(64), (10, 16, 0, 3)),
        b"ftrt" + struct.pack("<I", 3) + rng.randbytes(40),  # another layout: no version
        b"PK\x03\x04" + bytes(60),
        b"\x7fELF\x02\x01\x01" + bytes(57),
        b"\x08\x08\x12\x07pytorch",  # the start of an ONNX model
        struct.pack("<I", 2) + b"{}" + fake_plan(b"x"),  # an Ultralytics engine
        b'{"inputs": []}\n',
    ]
    return found


def write_seeds(corpus: Path) -> int:
    corpus.mkdir(parents=True, exist_ok=True)
    for seed in seeds():
        (corpus / f"seed-{hashlib.sha1(seed).hexdigest()}").write_bytes(seed)
    regressions = HERE / "regressions"
    for kept in sorted(regressions.glob("*")) if regressions.is_dir() else []:
        (corpus / f"regression-{kept.name}").write_bytes(kept.read_bytes())
    return len(list(corpus.iterdir()))


def main(argv: list[str]) -> None:
    import atheris

    flags = [arg for arg in argv[1:] if arg.startswith("-")]
    paths = [Path(arg) for arg in argv[1:] if not arg.startswith("-")]
    if not any(path.is_file() for path in paths):  # not replaying inputs: fuzz from the seeds
        if not paths:
            paths = [Path(tempfile.mkdtemp(prefix="engine-file-corpus-"))]
        count = write_seeds(paths[0])
        print(f"engine_file_fuzz: corpus {paths[0]} ({count} inputs)", file=sys.stderr)
    defaults = {
        "-dict": str(DICTIONARY),
        "-timeout": "10",
        "-max_len": "65536",
        "-len_control": "0",
        "-print_final_stats": "1",
        # Python keeps objects until exit by design; leaks are checked by the sanitizer suite.
        "-detect_leaks": "0",
    }
    given = {flag.split("=", 1)[0] for flag in flags}
    flags += [f"{flag}={value}" for flag, value in defaults.items() if flag not in given]
    atheris.Setup([argv[0], *flags, *map(str, paths)], test_one_input, custom_mutator=mutate)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
