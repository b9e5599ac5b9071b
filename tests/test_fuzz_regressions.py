"""Every input the engine-file fuzzer ever failed on (tests/fuzz/regressions/), replayed through
its check, plus the checks of the harness itself: its seeds read cleanly, its checksum repair
keeps valid files valid, and its check does fail when the reader misbehaves."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

from trtfast import EngineFormatError, engine_file

sys.path.insert(0, str(Path(__file__).parent / "fuzz"))
import engine_file_fuzz as harness

REGRESSIONS = sorted((Path(__file__).parent / "fuzz" / "regressions").iterdir())


def test_every_kept_input_is_here() -> None:
    assert {path.name for path in REGRESSIONS} >= {
        "deeply-nested-build-options",
        "lone-surrogate-in-metadata",
    }


@pytest.mark.parametrize("path", REGRESSIONS, ids=[path.name for path in REGRESSIONS])
def test_a_kept_input_is_read_or_refused_cleanly(path: Path) -> None:
    data = path.read_bytes()
    harness.check(data)
    with pytest.raises(EngineFormatError):
        engine_file.read(data)


def test_deeply_nested_build_options_are_refused_naming_the_depth() -> None:
    (path,) = [p for p in REGRESSIONS if p.name == "deeply-nested-build-options"]
    with pytest.raises(EngineFormatError, match="nests deeper than 32 levels"):
        engine_file.read(path.read_bytes())


def test_a_lone_surrogate_in_a_tensor_name_is_refused() -> None:
    (path,) = [p for p in REGRESSIONS if p.name == "lone-surrogate-in-metadata"]
    with pytest.raises(EngineFormatError, match="is not valid Unicode text"):
        engine_file.read(path.read_bytes())


def test_the_seeds_read_cleanly() -> None:
    seeds = harness.seeds()
    read = 0
    for seed in seeds:
        harness.check(seed)
        try:
            engine_file.read(seed)
            read += 1
        except EngineFormatError:
            pass
    assert read >= len(harness.realistic_infos()) + 2  # the engines and the bare plans


def test_reframing_keeps_a_valid_engine_valid_and_repairs_a_mutated_one() -> None:
    engine = harness.seeds()[0]
    assert harness.reframe(engine, random.Random(0)) == engine
    mutated = bytearray(engine)
    mutated[-1] ^= 0xFF  # a plan byte: the plan CRC no longer matches
    with pytest.raises(EngineFormatError, match="CRC-32"):
        engine_file.read(bytes(mutated))
    engine_file.read(harness.reframe(bytes(mutated), random.Random(1)))


def test_metadata_mutations_keep_the_framing_valid() -> None:
    engine = harness.seeds()[0]
    rng = random.Random(0)
    for _ in range(50):
        mutated = harness.mutate_metadata(engine, rng)
        harness.check(mutated)
        # Whatever the JSON now says, the framing and checksums hold: only the metadata fails.
        try:
            engine_file.read(mutated)
        except EngineFormatError as error:
            assert "metadata" in str(error), error


def test_the_check_fails_when_the_reader_misbehaves(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = harness.seeds()[0]

    def broken_read(source: object) -> object:
        raise IndexError("an unexpected exception from the reader")

    monkeypatch.setattr(engine_file, "read", broken_read)
    with pytest.raises(IndexError):
        harness.check(engine)


def test_the_check_fails_when_memory_and_file_disagree(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = harness.seeds()[0]
    read = engine_file.read

    def refuse_files(source: object) -> object:
        if isinstance(source, str):
            raise EngineFormatError("refused")
        return read(source)  # type: ignore[arg-type]

    monkeypatch.setattr(engine_file, "read", refuse_files)
    with pytest.raises(harness.Finding, match="from memory gave ok, from a file format error"):
        harness.check(engine)
