"""The TensorRT step of a build runs in a child process: results, progress answers, logs and
errors cross over intact; Ctrl-C and exceptions from the progress callback stop the child at
once; a crash of the child, or of its parent, ends the build and nothing else. Last, Ctrl-C
during a real, long TensorRT-RTX build on the CPU."""

from __future__ import annotations

import functools
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import build_models
import onnx
import plan_builders
import pytest

import trtfast
from trtfast import _build_process, reference
from trtfast.errors import BuildError

OPTIONS = {"device": 0, "profiles": [{"x": [[1], [2], [3]]}], "model_dir": None}


def build(behaviour: str, progress: Any = None, onnx: bytes = b"model") -> dict[str, Any]:
    make = functools.partial(plan_builders.PlanBuilder, behaviour)
    return _build_process.build_plan(make, onnx, OPTIONS, progress or (lambda *event: True))


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_gone(pid: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return not _alive(pid)


def test_the_result_and_progress_answers_cross_over() -> None:
    events = []

    def progress(event: str, phase: str, step: int, total: int) -> bool:
        events.append((event, phase, step, total))
        return event != "step"

    plan = os.urandom(3 << 20)
    result = build("echo", progress, onnx=plan)
    assert result["plan"] == plan
    assert result["options"] == OPTIONS
    assert events == [("start", "phase", 0, 2), ("step", "phase", 1, 2), ("end", "phase", 2, 2)]
    assert result["answers"] == [True, False, True]
    assert result["pid"] != os.getpid()
    assert _wait_gone(result["pid"])


def test_errors_keep_their_type_details_and_where_they_were_raised() -> None:
    with pytest.raises(BuildError, match="parser refused") as raised:
        build("fail")
    assert raised.value.parser_errors == [{"node_index": 3, "message": "no such op"}]
    if sys.version_info >= (3, 11):
        (note,) = raised.value.__notes__
        assert "raised in the build process" in note and "plan_builders.py" in note


def test_an_error_that_does_not_pickle_arrives_as_a_build_error() -> None:
    with pytest.raises(BuildError, match="_Unpicklable: cannot cross processes"):
        build("fail_unpicklable")


@pytest.mark.parametrize(
    ("behaviour", "ending"), [("crash", "killed by SIGABRT"), ("exit_quietly", "exit status 7")]
)
def test_a_build_process_that_dies_is_a_build_error(behaviour: str, ending: str) -> None:
    with pytest.raises(BuildError, match=f"the build process ended unexpectedly \\({ending}\\)"):
        build(behaviour)


def test_a_build_process_that_cannot_start_is_a_build_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "executable", "/nonexistent/python3")
    with pytest.raises(BuildError, match="cannot start the build process with '/nonexistent"):
        build("echo")


def _pid_of_long_build(phase: str) -> int:
    return int(phase.removeprefix("pid "))


def test_an_exception_from_the_progress_callback_stops_the_build_at_once() -> None:
    started: list[int] = []

    def progress(event: str, phase: str, step: int, total: int) -> bool:
        started.append(_pid_of_long_build(phase))
        raise LookupError("caller gave up")

    with pytest.raises(LookupError, match="caller gave up"):
        build("long", progress)
    assert _wait_gone(started[0]), "the build process outlived the failed build"


def test_ctrl_c_stops_a_build_that_does_not_call_back() -> None:
    started: list[int] = []
    interrupted_at: list[float] = []

    def interrupt() -> None:
        interrupted_at.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGINT)

    def progress(event: str, phase: str, step: int, total: int) -> bool:
        started.append(_pid_of_long_build(phase))
        # Ctrl-C half a second into a phase that would go on for a minute without callbacks.
        threading.Timer(0.5, interrupt).start()
        return True

    with pytest.raises(KeyboardInterrupt):
        build("long", progress)
    # Timed from the Ctrl-C, not from the call: starting the process is slow on a busy machine.
    assert time.monotonic() - interrupted_at[0] < 5
    assert _wait_gone(started[0]), "the interrupted build process is still running"


def test_logs_of_the_build_reach_this_process_at_its_levels(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="trtfast"):
        build("log")
    assert [(r.name, r.levelno, r.message) for r in caplog.records] == [
        ("trtfast.tensorrt", logging.WARNING, "warning from the build")
    ]
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="trtfast.tensorrt"):
        build("log")
    assert [r.message for r in caplog.records] == [
        "detail from the build",
        "warning from the build",
    ]


_ORPHANED = textwrap.dedent(
    """
    import functools, sys
    import plan_builders
    from trtfast import _build_process

    def progress(event, phase, step, total):
        print(phase, flush=True)
        return True

    make = functools.partial(plan_builders.PlanBuilder, "long")
    _build_process.build_plan(make, b"", {}, progress)
    """
)


def test_a_build_process_ends_when_its_parent_is_killed() -> None:
    with subprocess.Popen(
        [sys.executable, "-c", _ORPHANED],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    ) as parent:
        try:
            assert parent.stdout is not None
            build_process = _pid_of_long_build(parent.stdout.readline().strip())
            assert _alive(build_process)
        finally:
            parent.kill()
    assert _wait_gone(build_process), "the build process outlived its parent"


# Reports the first TensorRT phase on stdout, then keeps building.
_RTX_BUILD = textwrap.dedent(
    """
    import sys
    from trtfast import reference

    reported = False

    def progress(event, phase, step, total):
        global reported
        if not reported and phase != "trtfast build":
            reported = True
            print("building", flush=True)
        return True

    reference.build(sys.argv[1], output=sys.argv[2], edition="rtx", progress=progress)
    print("finished", flush=True)
    """
)


# An idle process in the same state as _RTX_BUILD's (trtfast and TensorRT-RTX imported), for
# how long Python itself takes to stop on SIGINT on this machine right now.
_IDLE = textwrap.dedent(
    """
    import time
    from trtfast import reference

    reference.unavailable_reason("rtx")
    print("building", flush=True)
    time.sleep(120)
    """
)


def _interrupt(script: str, *args: str) -> tuple[subprocess.Popen[str], float, str, list[int]]:
    """Start `script`, wait for its "building" line and a second more, send SIGINT to its process
    group as Ctrl-C at a terminal would, and wait for it to end: (process, seconds from the
    signal to its end, its stderr, the pids of its children when signalled)."""
    child = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A process group of its own, which Ctrl-C at a terminal signals as a whole.
        start_new_session=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line == "building\n", child.communicate()[1]
        # Into the long phase without progress steps.
        time.sleep(1.0)
        assert child.poll() is None, "the process ended before it could be interrupted"
        children = _children(child.pid)
        os.killpg(child.pid, signal.SIGINT)
        signalled = time.monotonic()
        _, stderr = child.communicate(timeout=120)
        reaction = time.monotonic() - signalled
        for pid in children:
            _wait_gone(pid)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    return child, reaction, stderr, children


@pytest.mark.skipif(
    reference.unavailable_reason("rtx") is not None,
    reason=f"TensorRT-RTX is not installed: {reference.unavailable_reason('rtx')}",
)
def test_ctrl_c_stops_a_long_build_about_as_fast_as_an_idle_process(tmp_path: Path) -> None:
    model = tmp_path / "deep.onnx"
    onnx.save_model(build_models.deep_mlp(1500), str(model))
    out_folder = tmp_path / "out"
    out_folder.mkdir()
    output = out_folder / "deep.engine"
    _, idle, _, _ = _interrupt(_IDLE)
    child, reaction, stderr, children = _interrupt(_RTX_BUILD, str(model), str(output))
    (build_process,) = children
    # Python ends a process on an unhandled KeyboardInterrupt by SIGINT, after its traceback.
    assert child.returncode == -signal.SIGINT, stderr
    assert stderr.rstrip().endswith("KeyboardInterrupt"), stderr
    # Ending the build process adds well under a second to what an idle process takes (the
    # build itself would go on for many seconds); both are measured here, under the same load.
    assert reaction < 1.0 + 2 * idle, (
        f"the build took {reaction:.2f} s to stop after SIGINT, an idle process {idle:.2f} s"
    )
    assert not _alive(build_process), "the interrupted build process is still running"
    assert list(out_folder.iterdir()) == []


def test_timing_caches_combine_in_the_build_process_not_here() -> None:
    from trtfast.build import ChildProcessPlanBuilder

    builder = ChildProcessPlanBuilder(functools.partial(plan_builders.PlanBuilder, "echo"))
    combined = builder.combine_timing_caches([b"theirs", b"ours"], 0)
    caches, pid = combined.split(b"|pid ")
    assert caches == b"theirsours"
    assert int(pid) != os.getpid()


def test_a_crash_while_combining_timing_caches_is_a_build_error() -> None:
    from trtfast.build import ChildProcessPlanBuilder

    builder = ChildProcessPlanBuilder(functools.partial(plan_builders.PlanBuilder, "crash"))
    with pytest.raises(BuildError, match=r"ended unexpectedly.*SIGABRT"):
        builder.combine_timing_caches([b"theirs", b"ours"], 0)


def _relu_model(tmp_path: Path) -> Path:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])],
    )
    path = tmp_path / "relu.onnx"
    onnx.save_model(helper.make_model(graph), str(path))
    return path


def test_the_engine_records_the_gpu_the_build_process_built_on(tmp_path: Path) -> None:
    from trtfast.build import ChildProcessPlanBuilder, build_with

    make = functools.partial(plan_builders.PlanBuilder, "engine")
    here = plan_builders.PlanBuilder().target(0)
    with pytest.warns(
        trtfast.CacheWarning, match="the build process built for GPU seen by process"
    ):
        info = build_with(
            lambda options: ChildProcessPlanBuilder(make),
            _relu_model(tmp_path),
            output=tmp_path / "relu.engine",
            cache_dir=tmp_path / "engines",
            shapes={"x": ((1,), (2,), (3,))},
            timing_cache=tmp_path / "relu.timing",
            progress=False,
        )
    built_on = info.environment["gpu"]
    assert built_on["name"].startswith("GPU seen by process ")
    assert built_on != here and info.gpu_name == built_on["name"]
    assert info.environment["library"] == plan_builders.PlanBuilder.library
    # Not stored under a key made for the GPU this process sees.
    assert not (tmp_path / "engines").exists() or not os.listdir(tmp_path / "engines")
