"""The TensorRT step of a build, run in a child process.

TensorRT's builder spends seconds to hours in native code, some phases without a single
progress callback; a Ctrl-C in there would wait for the build's end (TensorRT swallows what its
callbacks raise), and a crash inside TensorRT would end the caller's process. In a child the
caller stays in Python: Ctrl-C, or an exception from the progress callback, kills the child at
once and is raised; a crash of the child is a BuildError; and since files are written only from
a finished result, nothing is half-written.

The child is a fresh interpreter (``sys.executable``), not a fork: CUDA does not survive a fork,
and multiprocessing's spawn would run the caller's ``__main__`` again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from .errors import BuildError

if TYPE_CHECKING:
    from .build import PlanBuilder

Progress = Callable[[str, str, int, int], bool]

_HEADER = struct.Struct("<Q")
# Ctrl-C at a terminal reaches the whole foreground process group; the parent decides.
# The parent's import path comes first, so that the child imports the same trtfast.
_BOOT = (
    "import json, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "sys.path[:0] = json.loads(sys.argv[2]); "
    "from trtfast._build_process import serve; serve(int(sys.argv[1]))"
)


def build_plan(
    make_builder: Callable[[], PlanBuilder],
    onnx: bytes,
    options: dict[str, Any],
    progress: Progress,
) -> dict[str, Any]:
    """``make_builder().build_plan(onnx, options, progress)`` in a child process.

    ``make_builder`` must pickle (a module-level function or a ``functools.partial`` of one).
    Progress events and the records of the ``trtfast`` loggers come back as they happen;
    ``progress`` runs here, and its answer goes back to the build.
    """
    # The model and the plan travel as raw bytes: no pickled copy of either.
    result, plan = _run(("build", make_builder, options, _logging_levels()), [onnx], progress)
    return {**result, "plan": plan}


def combine_timing_caches(
    make_builder: Callable[[], PlanBuilder], caches: Sequence[bytes], device: int
) -> bytes:
    """``make_builder().combine_timing_caches(caches, device)`` in a child process: combining
    creates a TensorRT builder and a CUDA context, which the caller's process is spared."""
    request = ("combine", make_builder, {"device": device, "count": len(caches)})
    _, combined = _run((*request, _logging_levels()), list(caches), lambda *event: True)
    return combined


def _run(request: tuple[Any, ...], blobs: list[bytes], progress: Progress) -> tuple[Any, bytes]:
    """Send ``request`` and ``blobs`` to a new child; its result and the bytes that follow it."""
    ours, theirs = socket.socketpair()
    try:
        child = _start(theirs)
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    channel = _Channel(ours)
    try:
        try:
            channel.send(request, *blobs)
            return _serve_build(channel, progress)
        except (BrokenPipeError, ConnectionResetError, _Closed):
            raise BuildError(f"the build process ended unexpectedly ({_ending(child)})") from None
    except BaseException:
        with contextlib.suppress(OSError):
            child.kill()
        raise
    finally:
        channel.close()
        _reap(child)


def _serve_build(channel: _Channel, progress: Progress) -> tuple[Any, bytes]:
    """Answer the child's messages until its result, or its error, arrives."""
    while True:
        message = channel.receive()
        kind = message[0]
        if kind == "progress":
            channel.send(bool(progress(*message[1:])))
        elif kind == "log":
            _, name, level, text = message
            logging.getLogger(name).log(level, "%s", text)
        elif kind == "result":
            return message[1], channel.receive_bytes()
        else:  # "error"
            error: BaseException = message[1]
            raise error


def _start(channel: socket.socket) -> subprocess.Popen[bytes]:
    try:
        if not sys.executable:
            raise OSError("this interpreter does not know its executable (sys.executable)")
        return subprocess.Popen(
            [sys.executable, "-c", _BOOT, str(channel.fileno()), json.dumps(sys.path)],
            pass_fds=(channel.fileno(),),
            stdin=subprocess.DEVNULL,
        )
    except OSError as error:
        raise BuildError(
            f"cannot start the build process with {sys.executable!r}: {error}"
        ) from error


def _reap(child: subprocess.Popen[bytes]) -> None:
    # A killed child's teardown (its CUDA context, TensorRT's memory) can take a while; the
    # caller need not wait for it.
    if child.poll() is None:
        threading.Thread(target=child.wait, name="trtfast-build-reaper", daemon=True).start()


def _ending(child: subprocess.Popen[bytes]) -> str:
    try:
        code = child.wait(timeout=10)
    except subprocess.TimeoutExpired:
        return "it closed its end and kept running"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit status {code}"


def _logging_levels() -> dict[str, int]:
    """The levels the child's ``trtfast`` loggers need to send what this process would log."""
    names = ["trtfast"] + [
        name
        for name, entry in list(logging.Logger.manager.loggerDict.items())
        if name.startswith("trtfast.") and isinstance(entry, logging.Logger)
    ]
    return {name: logging.getLogger(name).getEffectiveLevel() for name in names}


class _Closed(Exception):
    """The other end closed the channel."""


class _Channel:
    """Messages over a socket: a length, then a pickle, each optionally followed by raw byte
    strings (a length, then the bytes). Safe to send from several threads."""

    def __init__(self, connection: socket.socket) -> None:
        self.connection = connection
        # Reads of a given length land in one bytes object, without a copy.
        self.reader = connection.makefile("rb")
        self.sending = threading.Lock()
        self.asking = threading.Lock()

    def send(self, message: Any, *blobs: bytes) -> None:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        with self.sending:
            for frame in (data, *blobs):
                self.connection.sendall(_HEADER.pack(len(frame)))
                self.connection.sendall(frame)

    def receive(self) -> Any:
        return pickle.loads(self.receive_bytes())

    def receive_bytes(self) -> bytes:
        (size,) = _HEADER.unpack(self._read(_HEADER.size))
        return self._read(size)

    def ask(self, message: Any) -> Any:
        """Send ``message`` and return the answer to it."""
        with self.asking:
            self.send(message)
            return self.receive()

    def close(self) -> None:
        self.reader.close()
        self.connection.close()

    def _read(self, size: int) -> bytes:
        data = self.reader.read(size)
        if len(data) < size:
            raise _Closed
        return data


# ---------------------------------------------------------------------------------------------
# The child


def serve(descriptor: int) -> None:
    """The child's main: one request (a build, or a combination of timing caches) in; its
    events, then its result, out."""
    _end_with_parent()
    channel = _Channel(socket.socket(fileno=descriptor))
    try:
        kind, make_builder, options, levels = channel.receive()
        if kind == "build":
            onnx = channel.receive_bytes()
        else:  # "combine"
            caches = [channel.receive_bytes() for _ in range(options["count"])]

        def progress(event: str, phase: str, step: int, total: int) -> bool:
            return bool(channel.ask(("progress", event, phase, step, total)))

        with _forwarding_logs(channel, levels):
            try:
                builder = make_builder()
                if kind == "build":
                    result = builder.build_plan(onnx, options, progress)
                    answer = result.pop("plan")
                else:
                    answer = builder.combine_timing_caches(caches, options["device"])
                    result = {}
            except BaseException as error:  # every failure goes to the parent
                channel.send(("error", _portable(error)))
            else:
                channel.send(("result", result), answer)
    except (_Closed, BrokenPipeError, ConnectionResetError):
        pass  # the parent is gone or gave up: nobody is left to tell
    finally:
        channel.close()


def _end_with_parent() -> None:
    """Have the kernel kill this process when its parent dies: an orphaned build would hold a
    GPU and CPU for nothing."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:  # the parent died before the line above
        os._exit(1)


class _Forward(logging.Handler):
    def __init__(self, channel: _Channel) -> None:
        super().__init__()
        self.channel = channel

    def emit(self, record: logging.LogRecord) -> None:
        self.channel.send(("log", record.name, record.levelno, record.getMessage()))


@contextlib.contextmanager
def _forwarding_logs(channel: _Channel, levels: dict[str, int]) -> Iterator[None]:
    root = logging.getLogger("trtfast")
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    handler = _Forward(channel)
    root.addHandler(handler)
    root.propagate = False  # the parent's handlers print; the child's would print twice
    try:
        yield
    finally:
        root.removeHandler(handler)


def _portable(error: BaseException) -> BaseException:
    """``error`` as the parent can unpickle it, with the child's traceback as a note."""
    where = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    try:
        portable: BaseException = pickle.loads(pickle.dumps(error))
    except Exception:  # one that does not pickle still gets through
        portable = BuildError(f"{type(error).__name__}: {error}")
    if hasattr(portable, "add_note"):
        portable.add_note(f"raised in the build process:\n{where.rstrip()}")
    return portable
