"""Memory the GPU still uses stays alive, and every producer's stream is waited on: bound and
interrupted calls hold what they read, unbind and close wait their turn, pooled blocks a consumer
let go of are not rewritten under its work, and the streams __cuda_array_interface__ and DLPack
name are honoured. Each test makes the GPU read or write memory while another party (the caller's
allocator, a consumer's stream, a producer's stream) touches it, so a missing hold or wait shows
as a wrong value, not as luck."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import numpy as np
import pytest
from dlpack_producer import FLAG_READ_ONLY, Producer
from test_session_gpu import affine, cupy_module, make_engine, random_x, torch_cuda

import trtfast
from trtfast import _core
from trtfast.bench import DeviceCopy

pytestmark = pytest.mark.gpu

# torch.cuda._sleep's cycles: 200 million keep a stream busy for about 100 ms.
LONG_WORK = 200_000_000


@pytest.fixture
def engine() -> trtfast.Engine:
    return make_engine(profiles=[(1, 8, 64)])


class CudaArray:
    """Memory exposed only by `interface` (__cuda_array_interface__); `owner` keeps it alive."""

    def __init__(self, interface: dict[str, Any], owner: Any = None) -> None:
        self.__cuda_array_interface__ = interface
        self.owner = owner


def with_stream(tensor: Any, stream: Any) -> CudaArray:
    """A float32 torch tensor (device or pinned host) exposed by __cuda_array_interface__ v3,
    with the torch stream `stream` as its producer's."""
    interface = {
        "shape": tuple(tensor.shape),
        "typestr": "<f4",
        "data": (tensor.data_ptr(), False),
        "strides": None,
        "version": 3,
        "stream": stream.cuda_stream,
    }
    return CudaArray(interface, tensor)


def sleep_on(torch: Any, stream_handle: int) -> None:
    """Keeps the stream `stream_handle` (any library's) busy for about 100 ms."""
    with torch.cuda.stream(torch.cuda.ExternalStream(stream_handle)):
        torch.cuda._sleep(LONG_WORK)


# --- bind() holds a copy of the mapping and every tensor in it -----------------------------------

# Rows of 128 KiB: numpy's memory for the first input is mapped whole and unmapped when freed, so
# a binding that does not hold it reads unmapped memory (a crash) or another array's bytes.
BOUND_HOST_INPUT = textwrap.dedent(
    """
    import numpy as np

    import trtfast
    from trtfast import _testing

    features = 1 << 15
    engine = trtfast.Engine(_testing.affine(features=features, profiles=[(1, 8, 16)]))
    session = engine.session()
    a = np.full((16, features), 3.0, np.float32)
    inputs = {"x": a}
    bound = session.bind(inputs)
    inputs["x"] = np.zeros((16, features), np.float32)  # the caller reuses its dict
    del a
    for _ in range(3):
        garbage = np.full((16, features), -100.0, np.float32)
        y = session.run()["y"]
        assert (y == 7.0).all(), y
    session.close()
    print("ok")
    """
)


def test_bind_holds_the_host_arrays_it_read() -> None:
    done = subprocess.run(
        [sys.executable, "-c", BOUND_HOST_INPUT], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", (done.returncode, done.stderr)


class DeviceFill:
    """(8, 4) float32 device arrays of one value from torch, cupy, or a trtfast session's pool
    (DeviceArray), and their host copy."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        if kind == "torch":
            self.torch = torch_cuda()
        elif kind == "cupy":
            self.cupy = cupy_module()
        else:
            self.producer = make_engine().session()  # y = 2x + 1, into pooled blocks

    def __call__(self, value: float) -> Any:
        if self.kind == "torch":
            return self.torch.full((8, 4), value, device="cuda")
        if self.kind == "cupy":
            return self.cupy.full((8, 4), value, dtype=self.cupy.float32)
        x = np.full((8, 4), (value - 1.0) / 2.0, np.float32)  # exact: 2x + 1 == value
        return self.producer(x=DeviceCopy(x))["y"]

    def close(self) -> None:
        if self.kind == "devicearray":
            self.producer.close()


@pytest.mark.parametrize("kind", ["torch", "cupy", "devicearray"])
def test_bind_holds_a_copy_of_the_mapping_and_the_device_arrays_it_read(
    engine: trtfast.Engine, kind: str
) -> None:
    full = DeviceFill(kind)
    with engine.session(torch_results=False) as session:  # DeviceArray results for torch too
        a = full(3.0)
        inputs = {"x": a}
        bound = session.bind(inputs)
        inputs["x"] = full(0.0)  # another array: the binding keeps reading its own
        del a
        # The allocator's freed block goes to the next array of that size: a's block, unless the
        # binding still holds a.
        reused = full(-100.0)
        session.run()
        np.testing.assert_array_equal(bound["y"].numpy(), np.full((8, 4), 7.0, np.float32))
        del reused
    full.close()


# --- a call interrupted by Ctrl-C holds what its running work reads ------------------------------

# argv: the kind of input. x is freed by the caller once the call is interrupted, and its memory
# handed to a new array written at once on a stream the session's work is not ordered with; the
# interrupted call's work (2 s on the GPU) reads x only at its end.
INTERRUPTED_INPUT = textwrap.dedent(
    """
    import sys

    import numpy as np

    import trtfast
    from trtfast import _testing
    from trtfast.bench import DeviceCopy

    kind = sys.argv[1]
    engine = trtfast.Engine(_testing.affine(delay_us=2e6))
    session = engine.session(sync="spin")
    if kind == "torch":
        import torch

        side = torch.cuda.Stream()

        def full(value):
            with torch.cuda.stream(side):  # freed blocks return to side's share of the cache
                tensor = torch.full((8, 4), value, device="cuda")
            return tensor

        out = torch.zeros((8, 4), device="cuda")
        read_out = lambda: out.cpu().numpy()
    elif kind == "cupy":
        import cupy

        side = cupy.cuda.Stream(non_blocking=True)

        def full(value):
            with side:  # cupy's pool reuses blocks per stream
                array = cupy.full((8, 4), value, dtype=cupy.float32)
            side.synchronize()
            return array

        out = cupy.zeros((8, 4), dtype=cupy.float32)
        read_out = lambda: cupy.asnumpy(out)
    else:
        producer = trtfast.Engine(_testing.affine()).session()

        def full(value):  # another session's pooled block: y = 2x + 1 == value
            return producer(x=DeviceCopy(np.full((8, 4), (value - 1) / 2, np.float32)))["y"]

        holder = trtfast.Engine(_testing.affine()).session()
        out = holder(x=DeviceCopy(np.zeros((8, 4), np.float32)))["y"]
        read_out = out.numpy
    x = full(3.0)
    if kind == "torch":
        side.synchronize()
    print("calling", flush=True)
    try:
        session(x=x, out={"y": out})
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    else:
        print("returned without KeyboardInterrupt", flush=True)
        sys.exit(1)
    del x
    reused = full(-100.0)  # x's memory, unless the interrupted call still holds x
    session.close()  # waits for the interrupted call's work
    y = read_out()
    assert (y == 7.0).all(), y
    print("ok", flush=True)
    """
)


def run_interrupted(script: str, *arguments: str) -> str:
    """Runs `script`, interrupts (SIGINT) the call it starts after printing "calling", and returns
    what it printed after; fails unless it exits 0 having printed "interrupted"."""
    child = subprocess.Popen(
        [sys.executable, "-c", script, *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        started = child.stdout.readline()
        assert started == "calling\n", started + (child.stderr.read() if child.stderr else "")
        time.sleep(0.5)  # inside the call: its GPU work takes 2 s
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, f"{out}{err}"
    assert out.startswith("interrupted\n"), f"{out}{err}"
    return out


@pytest.mark.parametrize("kind", ["torch", "cupy", "devicearray"])
def test_an_interrupted_call_holds_its_inputs_until_its_work_is_done(kind: str) -> None:
    if kind == "torch":
        torch_cuda()
    elif kind == "cupy":
        cupy_module()
    out = run_interrupted(INTERRUPTED_INPUT, kind)
    assert out.splitlines()[-1] == "ok", out


# --- unbind() and close() wait their turn --------------------------------------------------------


def wait_until_enqueued(engine: trtfast.Engine, count: int) -> None:
    """Until the test engine has enqueued `count` calls: the calling thread is inside its call."""
    deadline = time.monotonic() + 30
    while engine.core.enqueue_count < count:
        assert time.monotonic() < deadline, "the call never reached the GPU"
        time.sleep(0.001)


def test_unbind_refuses_while_another_thread_is_inside_a_call() -> None:
    engine = make_engine(delay_us=1_000_000.0)
    x = random_x(4)
    with engine.session(cuda_graph=False) as session:
        bound = session.bind({"x": x})
        enqueued = engine.core.enqueue_count
        worker = threading.Thread(target=session.run)
        worker.start()
        wait_until_enqueued(engine, enqueued + 1)  # the GPU works for a second from here
        with pytest.raises(
            trtfast.TrtfastError,
            match="this Session is running a call on another thread; unbind it after the call",
        ):
            session.unbind()
        worker.join(timeout=30)
        assert session.bound
        np.testing.assert_array_equal(bound["y"], affine(x))
        session.unbind()


# close() waits for an interrupted call's work; a call another thread starts meanwhile is refused
# (not run on a session being freed).
CLOSE_WHILE_WAITING = textwrap.dedent(
    """
    import threading
    import time

    import numpy as np

    import trtfast
    from trtfast import _testing

    engine = trtfast.Engine(_testing.affine(delay_us=2e6))
    session = engine.session(sync="spin")
    x = np.ones((2, 4), np.float32)
    print("calling", flush=True)
    try:
        session(x=x)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    outcome = []

    def call():
        time.sleep(0.3)  # close() waits for the interrupted call's work by now
        try:
            outcome.append(session(x=x)["y"])
        except trtfast.TrtfastError as error:
            outcome.append(str(error))

    worker = threading.Thread(target=call)
    worker.start()
    session.close()
    worker.join()
    assert isinstance(outcome[0], str), outcome
    assert "this Session is running a call on another thread" in outcome[0], outcome
    assert session.closed
    print("ok", flush=True)
    """
)


def test_close_is_busy_while_it_waits_for_work_in_flight() -> None:
    out = run_interrupted(CLOSE_WHILE_WAITING)
    assert out.splitlines()[-1] == "ok", out


def test_submit_racing_close_leaves_no_worker_pool_behind() -> None:
    engine = make_engine(delay_us=2_000.0)
    x = random_x(2)
    before = {thread.ident for thread in threading.enumerate()}
    for _ in range(20):
        session = engine.session(workers=2)
        refused: list[str] = []

        def submit_until_closed(
            session: trtfast.Session = session, refused: list[str] = refused
        ) -> None:
            while True:
                try:
                    session.submit(x=x).result()
                except RuntimeError as error:
                    refused.append(str(error))
                    return

        submitter = threading.Thread(target=submit_until_closed)
        submitter.start()
        time.sleep(0.02)
        session.close()
        submitter.join(timeout=30)
        assert refused == ["this Session is closed"]
    left = [
        thread.name
        for thread in threading.enumerate()
        if thread.ident not in before and thread.name.startswith("trtfast-session")
    ]
    assert not left, f"worker threads of pools started after close: {left}"


# --- pooled blocks a DLPack consumer let go of ---------------------------------------------------


@pytest.mark.parametrize("consumer", ["torch", "cupy"])
def test_a_block_released_by_a_consumer_is_not_rewritten_under_its_work(
    engine: trtfast.Engine, consumer: str
) -> None:
    torch = torch_cuda()  # its sleep kernel keeps the consumer's stream busy
    x1 = torch.full((8, 4), 1.0, device="cuda")
    x2 = torch.full((8, 4), 5.0, device="cuda")
    with engine.session(torch_results=False) as session:  # pooled DeviceArray results
        if consumer == "torch":
            side = torch.cuda.Stream()
            with torch.cuda.stream(side):
                y = torch.from_dlpack(session(x=x1)["y"])  # names side as its stream
                torch.cuda._sleep(LONG_WORK)  # queued work still to read y ...
                copied = y.clone()
            first = y.data_ptr()
        else:
            cupy = cupy_module()
            # cupy loads its copy kernel on first use, which can outlast the sleep below.
            cupy.zeros((8, 4), np.float32).copy()
            side = cupy.cuda.Stream(non_blocking=True)
            with side:
                y = cupy.from_dlpack(session(x=x1)["y"])
                sleep_on(torch, side.ptr)
                copied = y.copy()
            first = y.data.ptr
        del y  # ... when the consumer lets go of the block
        z = session(x=x2)["y"]
        assert z.ptr != first  # another block while the consumer may still read the first
        side.synchronize()
        expected = np.full((8, 4), 3.0, np.float32)
        if consumer == "torch":
            np.testing.assert_array_equal(copied.cpu().numpy(), expected)
        else:
            np.testing.assert_array_equal(cupy.asnumpy(copied), expected)
        del z
        # Once the consumer's work is done, the block returns to the pool.
        assert session(x=x2)["y"].ptr == first


# --- the producer streams of __cuda_array_interface__ v3 -----------------------------------------


def test_out_buffers_wait_for_their_producer_stream(engine: trtfast.Engine) -> None:
    torch = torch_cuda()
    side = torch.cuda.Stream()
    x = torch.full((8, 4), 3.0, device="cuda")
    out = torch.empty((8, 4), device="cuda")
    torch.cuda.synchronize()
    with torch.cuda.stream(side):
        torch.cuda._sleep(LONG_WORK)
        out.fill_(0.0)  # the producer's last write, queued behind its long work
    with engine.session() as session:
        session(x=x, out={"y": with_stream(out, side)})
    torch.cuda.synchronize()
    np.testing.assert_array_equal(out.cpu().numpy(), np.full((8, 4), 7.0, np.float32))


def test_cupy_out_buffers_wait_for_the_stream_they_name(engine: trtfast.Engine) -> None:
    torch = torch_cuda()
    cupy = cupy_module()
    x = torch.full((8, 4), 3.0, device="cuda")
    side = cupy.cuda.Stream(non_blocking=True)
    with side:
        out = cupy.empty((8, 4), dtype=cupy.float32)
        sleep_on(torch, side.ptr)
        out.fill(0.0)
        with engine.session() as session:
            session(x=x, out={"y": out})  # cupy names its current stream: side
    side.synchronize()
    np.testing.assert_array_equal(cupy.asnumpy(out), np.full((8, 4), 7.0, np.float32))


@pytest.mark.parametrize("role", ["input", "output"])
def test_pinned_host_arrays_wait_for_their_producer_stream_before_the_cpu_copies(
    engine: trtfast.Engine, role: str
) -> None:
    torch = torch_cuda()
    side = torch.cuda.Stream()
    pinned = torch.zeros((8, 4), pin_memory=True)
    threes = torch.full((8, 4), 3.0, device="cuda")
    zeros = torch.zeros((8, 4), device="cuda")
    torch.cuda.synchronize()
    with torch.cuda.stream(side):
        torch.cuda._sleep(LONG_WORK)
        # The producer's last write into the pinned array lands after its long work.
        pinned.copy_(threes if role == "input" else zeros, non_blocking=True)
    host = with_stream(pinned, side)
    with engine.session() as session:
        if role == "input":
            y = session(x=host)["y"]
        else:
            session(x=np.full((8, 4), 3.0, np.float32), out={"y": host})
            y = pinned.numpy()
    side.synchronize()
    np.testing.assert_array_equal(y, np.full((8, 4), 7.0, np.float32))


def test_a_producer_stream_of_another_device_is_an_input_error(engine: trtfast.Engine) -> None:
    if _core.cuda.device_count() < 2:
        pytest.skip("needs two GPUs")
    other = _core.cuda.Stream(1)
    x = DeviceCopy(random_x(4))  # on device 0

    on_other_stream = CudaArray({**x.__cuda_array_interface__, "stream": other.handle}, x)

    with (
        engine.session() as session,
        pytest.raises(
            trtfast.InputError,
            match="input 'x': its __cuda_array_interface__ stream belongs to "
            "cuda:1, the array to cuda:0",
        ),
    ):
        session(x=on_other_stream)


def test_masked_arrays_are_refused(engine: trtfast.Engine) -> None:
    x = DeviceCopy(random_x(4))

    masked = CudaArray({**x.__cuda_array_interface__, "mask": x}, x)

    with (
        engine.session() as session,
        pytest.raises(trtfast.InputError, match="input 'x': expected an array without a mask"),
    ):
        session(x=masked)


# --- DLPack --------------------------------------------------------------------------------------


def test_dlpack_producers_are_asked_for_versioned_capsules(engine: trtfast.Engine) -> None:
    torch = torch_cuda()
    x = torch.full((8, 4), 3.0, device="cuda")

    class Recording:
        def __init__(self) -> None:
            self.requests: list[dict[str, Any]] = []

        def __dlpack_device__(self) -> Any:
            return x.__dlpack_device__()

        def __dlpack__(self, **keywords: Any) -> Any:
            self.requests.append(keywords)
            return x.__dlpack__(**keywords)

    producer = Recording()
    with engine.session() as session:
        y = torch.from_dlpack(session(x=producer)["y"])
        assert bool((y == 7.0).all())
        request = producer.requests[0]  # a torch without DLPack 1.0 is asked again without
        assert request["max_version"] == (1, 0)
        assert request["stream"] not in (None, 0, -1)  # the session's stream
        # A check runs no GPU work: it asks for no ordering.
        engine.core.signature.check({"x": producer}, 0)
        assert producer.requests[-1]["stream"] == -1


def test_a_read_only_dlpack_tensor_is_never_an_output_buffer(engine: trtfast.Engine) -> None:
    memory = _core.cuda.DeviceBuffer(8 * 4 * 4)
    read_only = Producer(memory.ptr, (8, 4), flags=FLAG_READ_ONLY)
    with (
        engine.session() as session,
        pytest.raises(trtfast.InputError, match="output 'y': the buffer given is read-only"),
    ):
        session(x=random_x(8), out={"y": read_only})
    assert read_only.requests[0]["max_version"] == (1, 0)
    writable = Producer(memory.ptr, (8, 4))
    with engine.session() as session:
        session(x=DeviceCopy(random_x(8)), out={"y": writable})
    assert writable.deleted == 1
