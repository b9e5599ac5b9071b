"""Serving throughput and latency against the number of concurrent clients, side by side.

Two engines of trtfast._testing (a kernel of about 50 us per call and one of about 1 ms, any
batch up to 256 rows), each driven by 1, 8, 64 and 256 concurrent clients, each client sending
one-row requests back to back, four ways:

- direct: a thread per client calling the engine (each on a pooled session of its own);
- run_async: an asyncio task per client awaiting ``engine.run_async``;
- batcher-threads: a thread per client calling a :class:`trtfast.Batcher`;
- batcher-asyncio: an asyncio task per client awaiting ``batcher.run_async``.

Every request carries its own number and its answer is checked, so lost or repeated answers are
counted. Prints a Markdown table (throughput in requests/s, p50 and p99 in microseconds) and the
goals, and with ``--plot PATH`` draws throughput and p99 against clients.

It also measures the clients alone, with answers that cost nothing: every client runs Python
under one GIL, so by Little's law N clients keep each request waiting at least N divided by that
rate, whatever answers them. A p99 goal below that bound is named as beyond the clients' reach.

``--standin`` runs the same cases on the CPU, without a GPU: each engine is replaced by a stand-in
that, like one GPU, runs one call at a time and waits out the kernel's time with the GIL released
(a sleep), then computes the same outputs with numpy. What it measures is the host side: the
batcher's queueing, batch forming, splitting and waking of callers. ``run_async`` needs a GPU and
is left out.

Goals, all measured in this one run (the first two from rounds of paired runs, PAIRED_ROUNDS):
- at 64 clients on the 50 us engine, the batcher's throughput is at least 4x direct calls';
- at 1 client, run_async adds at most 30 us to the p50 of a direct call;
- the batcher's p99 is at most max_delay_us plus 3x the latency of a full batch on its own;
- at 256 clients no request is lost or answered twice.

    python benchmarks/bench_serving.py [--requests 4000] [--max-delay-us 500] [--plot out.png]
    python benchmarks/bench_serving.py --standin
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import datetime
import platform
import random
import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from trtfast import Batcher, Engine, TensorSpec, _core
from trtfast.bench import measure

CLIENTS = (1, 8, 64, 256)
KERNELS_US = (50.0, 1000.0)
MAX_ROWS = 256
FEATURES = 4
GOAL_THROUGHPUT_RATIO = 4.0
GOAL_ASYNC_EXTRA_US = 30.0
GOAL_P99_FULL_BATCHES = 3.0
MODES = ("direct", "run_async", "batcher-threads", "batcher-asyncio")
PR_SET_TIMERSLACK, PR_GET_TIMERSLACK = 29, 30
# The goals' ratios and differences are medians over rounds of ones taken within a round, each
# round's modes in random order: this machine runs at one of two speeds for seconds at a time.
PAIRED_ROUNDS = 10


class DeviceStandIn:
    """The test engine (y = 2 x + 1, 1 to MAX_ROWS rows) on the CPU. Like one GPU it runs one
    call at a time, and each call waits out the kernel's time with the GIL released, as a call
    waiting for its kernel does. It has an engine's inputs/outputs specs, so a Batcher runs on
    it."""

    def __init__(self, kernel_us: float) -> None:
        self.kernel = kernel_us * 1e-6
        rows = ((1, FEATURES), (64, FEATURES), (MAX_ROWS, FEATURES))
        self.inputs = (TensorSpec("x", "float32", (-1, FEATURES), True, (rows,)),)
        self.outputs = (TensorSpec("y", "float32", (-1, FEATURES), False),)
        self._device = threading.Lock()

    def __call__(self, inputs: Mapping[str, Any] | None = None, /, **named: Any) -> dict[str, Any]:
        x = np.asarray({**(inputs or {}), **named}["x"])
        with self._device:
            sleep_precisely(self.kernel)
            return answer(x)

    def close(self) -> None:
        pass


_libc = ctypes.CDLL(None) if platform.system() == "Linux" else None


def sleep_precisely(seconds: float) -> None:
    """time.sleep without Linux's timer slack (50 us by default), which would double a 50 us
    kernel; the calling thread's slack is put back after, so the batcher's own waits keep it."""
    if _libc is None:
        time.sleep(seconds)
        return
    slack = _libc.prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0)
    _libc.prctl(PR_SET_TIMERSLACK, 1000, 0, 0, 0)  # nanoseconds
    try:
        time.sleep(seconds)
    finally:
        _libc.prctl(PR_SET_TIMERSLACK, slack, 0, 0, 0)


@dataclass
class Result:
    kernel_us: float
    mode: str
    clients: int
    throughput: float  # requests per second
    p50_us: float
    p99_us: float
    answered: int
    expected: int
    wrong: int  # answers that were not the request's own (lost, repeated or mixed up)


def answer(x: np.ndarray) -> dict[str, np.ndarray]:
    """The test engine's outputs for `x`: y = 2 x + 1."""
    return {"y": x * np.float32(2) + np.float32(1)}


def request(number: int) -> np.ndarray:
    return np.full((1, FEATURES), number, dtype=np.float32)


def answer_of(y: Any) -> int:
    """The request number an output answers (the engine computes 2 x + 1)."""
    return round((float(np.asarray(y)[0, 0]) - 1.0) / 2.0)


class Tally:
    """Latencies and answers of one run, from any thread, and the run's span: from the first
    request sent to the last answered (the clients' set-up, threads started, is not in it)."""

    def __init__(self, total: int) -> None:
        self.latencies = np.zeros(total)
        self.seen = np.zeros(total, dtype=np.int64)
        self.lock = threading.Lock()
        self.first = float("inf")
        self.last = 0.0

    def record(self, number: int, started: int, y: Any) -> None:
        ended = time.perf_counter_ns()
        got = answer_of(y)
        with self.lock:
            self.latencies[number] = (ended - started) / 1000.0
            self.first = min(self.first, started)
            self.last = max(self.last, ended)
            if 0 <= got < len(self.seen) and got == number:
                self.seen[got] += 1

    def span_s(self) -> float:
        return (self.last - self.first) / 1e9


def run_threads(call: Callable[[np.ndarray], Any], clients: int, per_client: int) -> Tally:
    tally = Tally(clients * per_client)
    ready = threading.Barrier(clients)  # every thread started before the first request

    def client(index: int) -> None:
        ready.wait()
        for k in range(per_client):
            number = index * per_client + k
            started = time.perf_counter_ns()
            tally.record(number, started, call(request(number))["y"])

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    return tally


def run_tasks(call: Callable[[np.ndarray], Any], clients: int, per_client: int) -> Tally:
    tally = Tally(clients * per_client)

    async def client(index: int) -> None:
        for k in range(per_client):
            number = index * per_client + k
            started = time.perf_counter_ns()
            tally.record(number, started, (await call(request(number)))["y"])

    async def main() -> None:
        await asyncio.gather(*(client(i) for i in range(clients)))

    asyncio.run(main())
    return tally


def measure_mode(
    kernel_us: float,
    mode: str,
    engine: Engine | DeviceStandIn,
    batcher: Batcher,
    clients: int,
    total: int,
) -> Result:
    calls: dict[str, tuple[Callable[..., Tally], Callable[[np.ndarray], Any]]] = {
        "direct": (run_threads, lambda x: engine(x=x)),
        "run_async": (run_tasks, lambda x: engine.run_async(x=x)),  # type: ignore[union-attr]
        "batcher-threads": (run_threads, lambda x: batcher(x=x)),
        "batcher-asyncio": (run_tasks, lambda x: batcher.run_async(x=x)),
    }
    runner, call = calls[mode]
    tally, count = timed_run(runner, call, clients, total)
    return Result(
        kernel_us=kernel_us,
        mode=mode,
        clients=clients,
        throughput=count / tally.span_s(),
        p50_us=float(np.percentile(tally.latencies, 50)),
        p99_us=float(np.percentile(tally.latencies, 99)),
        answered=int(tally.seen.sum()),
        expected=count,
        wrong=int(np.count_nonzero(tally.seen != 1)),
    )


async def answered_at_once(x: np.ndarray) -> dict[str, Any]:
    """An awaitable answer that costs nothing but the wait: one suspension of the awaiting task,
    the least that any awaited answer costs."""
    done: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
    done.get_loop().call_soon(done.set_result, answer(x))
    return await done


def clients_alone(requests: int) -> dict[str, float]:
    """Requests/s of this benchmark's own clients, 64 at once, when answers cost nothing: from
    tasks, each answer one suspension (answered_at_once); from threads, computed in the calling
    thread (no hand-off at all, so a bound that real thread answers cannot reach). All clients
    share one GIL, so by Little's law N clients wait at least N / (this rate) per request for
    the other clients' turns, whatever answers them."""
    rates = {}
    for kind, runner, call in (
        ("asyncio", run_tasks, answered_at_once),
        ("threads", run_threads, answer),
    ):
        tally, count = timed_run(runner, call, 64, requests)
        rates[kind] = count / tally.span_s()
    return rates


def timed_run(
    runner: Callable[..., Tally], call: Callable[[np.ndarray], Any], clients: int, total: int
) -> tuple[Tally, int]:
    """A warm-up (sessions, graphs, threads), then about `total` requests, at least 8 from each
    client: their tally and their number."""
    per_client = max(total // clients, 8)
    runner(call, clients, 2)
    return runner(call, clients, per_client), clients * per_client


def paired_rounds(
    kernel_us: float,
    engine: Engine | DeviceStandIn,
    batcher: Batcher,
    clients: int,
    requests: int,
    modes: tuple[str, ...],
) -> list[dict[str, Result]]:
    """PAIRED_ROUNDS rounds of `modes`, each round in a random order."""
    return [
        {
            mode: measure_mode(kernel_us, mode, engine, batcher, clients, requests)
            for mode in random.sample(modes, len(modes))
        }
        for _ in range(PAIRED_ROUNDS)
    ]


def batcher_ratio(rounds: list[dict[str, Result]]) -> float:
    """The median over rounds of the faster batcher mode's throughput over direct calls'."""
    return float(
        np.median(
            [
                max(r["batcher-threads"].throughput, r["batcher-asyncio"].throughput)
                / r["direct"].throughput
                for r in rounds
            ]
        )
    )


def async_extra_us(rounds: list[dict[str, Result]]) -> float:
    """The median over rounds of run_async's p50 minus a direct call's."""
    return float(np.median([r["run_async"].p50_us - r["direct"].p50_us for r in rounds]))


def loop_wake_us(idle: float, iterations: int = 200) -> float:
    """p50 of the time from a thread's call_soon_threadsafe to the awaiting task's resumption,
    after the event loop slept `idle` seconds: what any awaitable call pays on top of its work
    to wake an idle loop (a direct call spins its thread and pays none of it)."""

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        samples = []
        for _ in range(iterations):
            done: asyncio.Future[int] = loop.create_future()

            def finish(done: asyncio.Future[int] = done) -> None:
                time.sleep(idle)
                loop.call_soon_threadsafe(done.set_result, time.perf_counter_ns())

            thread = threading.Thread(target=finish)
            thread.start()
            woken = await done
            samples.append((time.perf_counter_ns() - woken) / 1000.0)
            thread.join()
        return samples

    return float(np.percentile(asyncio.run(main()), 50))


def full_batch_us(engine: Engine | DeviceStandIn, iterations: int) -> float:
    """p50 of one call of MAX_ROWS rows on its own."""
    x = np.zeros((MAX_ROWS, FEATURES), dtype=np.float32)
    if isinstance(engine, DeviceStandIn):
        return float(np.percentile(measure(lambda: engine(x=x), iterations, 50), 50))
    with engine.session() as session:
        return float(np.percentile(measure(lambda: session(x=x), iterations, 50), 50))


def table(results: list[Result]) -> str:
    lines = [
        "| kernel | mode | clients | requests/s | p50 (us) | p99 (us) | answered once |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.kernel_us:g} us | {r.mode} | {r.clients} | {r.throughput:,.0f} | "
            f"{r.p50_us:.1f} | {r.p99_us:.1f} | {r.expected - r.wrong}/{r.expected} |"
        )
    return "\n".join(lines)


def find(results: list[Result], kernel_us: float, mode: str, clients: int) -> Result:
    return next(
        r for r in results if (r.kernel_us, r.mode, r.clients) == (kernel_us, mode, clients)
    )


def goals(
    results: list[Result],
    full_batch: dict[float, float],
    max_delay_us: float,
    ratio: float,
    async_extra: dict[float, float],
    alone: dict[str, float],
) -> list[tuple[str, bool]]:
    """`ratio`: batcher_ratio at 64 clients on the 50 us engine; `async_extra`: async_extra_us
    at 1 client by engine (empty without run_async); `alone`: clients_alone."""
    checks = [
        (
            f"64 clients, 50 us engine: the batcher's throughput over direct calls', median of "
            f"{PAIRED_ROUNDS} paired rounds: {ratio:.1f}x (goal >= {GOAL_THROUGHPUT_RATIO:g}x)",
            ratio >= GOAL_THROUGHPUT_RATIO,
        )
    ]
    for kernel in KERNELS_US:
        if kernel in async_extra:
            extra = async_extra[kernel]
            checks.append(
                (
                    f"1 client, {kernel:g} us engine: run_async adds {extra:.1f} us to p50, "
                    f"median of {PAIRED_ROUNDS} paired rounds (goal <= {GOAL_ASYNC_EXTRA_US:g})",
                    extra <= GOAL_ASYNC_EXTRA_US,
                )
            )
        bound = max_delay_us + GOAL_P99_FULL_BATCHES * full_batch[kernel]
        for mode in ("batcher-threads", "batcher-asyncio"):
            worst = max(find(results, kernel, mode, c).p99_us for c in CLIENTS)
            text = (
                f"{kernel:g} us engine, {mode}: worst p99 {worst:.0f} us (goal <= "
                f"{max_delay_us:g} + 3 x {full_batch[kernel]:.0f} = {bound:.0f})"
            )
            floor = {c: c / alone[mode.split("-")[1]] * 1e6 for c in CLIENTS}
            beyond = [c for c in CLIENTS if floor[c] > bound]
            if beyond:
                text += "; the clients alone keep a request waiting at least " + ", ".join(
                    f"{floor[c]:.0f} us at {c} clients" for c in beyond
                )
            checks.append((text, worst <= bound))
    for r in results:
        if r.clients == 256:
            checks.append(
                (
                    f"256 clients, {r.kernel_us:g} us engine, {r.mode}: {r.answered} answered of "
                    f"{r.expected}, {r.wrong} lost or repeated",
                    r.wrong == 0 and r.answered == r.expected,
                )
            )
    return checks


def plot(results: list[Result], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, len(KERNELS_US), figsize=(11, 7), squeeze=False)
    modes = sorted({r.mode for r in results})
    for column, kernel in enumerate(KERNELS_US):
        for mode in modes:
            points = [find(results, kernel, mode, c) for c in CLIENTS]
            axes[0][column].plot(CLIENTS, [p.throughput for p in points], marker="o", label=mode)
            axes[1][column].plot(CLIENTS, [p.p99_us for p in points], marker="o", label=mode)
        axes[0][column].set_title(f"{kernel:g} us kernel")
        axes[0][column].set_ylabel("requests/s")
        axes[1][column].set_ylabel("p99 (us)")
        for row in (0, 1):
            axes[row][column].set_xscale("log", base=2)
            axes[row][column].set_yscale("log")
            axes[row][column].set_xlabel("concurrent clients")
        axes[0][column].legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000, help="requests per case")
    parser.add_argument("--max-delay-us", type=float, default=500.0)
    parser.add_argument("--plot", help="write a PNG of throughput and p99 against clients")
    parser.add_argument(
        "--standin",
        action="store_true",
        help="run on the CPU: engines replaced by stand-ins that wait out the kernel's time",
    )
    args = parser.parse_args(argv)
    today = f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d}"
    modes: tuple[str, ...] = MODES
    if args.standin:
        modes = tuple(m for m in MODES if m != "run_async")
        print(f"# Serving, CPU stand-in, {platform.processor() or platform.machine()}, {today}\n")
    else:
        try:
            from trtfast import _testing
        except ImportError:
            print("trtfast._testing was not built (it needs nvcc at build time)", file=sys.stderr)
            return 2
        if _core.cuda.device_count() == 0:
            print(f"no usable CUDA device: {_core.cuda.unavailable_reason()}", file=sys.stderr)
            return 2
        print(f"# Serving, {_core.cuda.devices()[0]['name']}, {today}\n")
    results: list[Result] = []
    full_batch: dict[float, float] = {}
    ratio = 0.0
    async_extra: dict[float, float] = {}
    for kernel in KERNELS_US:
        engine: Engine | DeviceStandIn
        if args.standin:
            engine = DeviceStandIn(kernel)
        else:
            engine = Engine(_testing.affine(profiles=[(1, 64, MAX_ROWS)], delay_us=kernel))
        full_batch[kernel] = full_batch_us(engine, 200)
        with Batcher(engine, max_delay_us=args.max_delay_us, max_queue=4096) as batcher:
            for clients in CLIENTS:
                for mode in modes:
                    result = measure_mode(kernel, mode, engine, batcher, clients, args.requests)
                    results.append(result)
                    print(
                        f"{kernel:g} us {mode} x{clients}: {result.throughput:,.0f}/s, "
                        f"p99 {result.p99_us:.0f} us",
                        file=sys.stderr,
                    )
            if kernel == 50.0:
                ratio = batcher_ratio(
                    paired_rounds(
                        kernel,
                        engine,
                        batcher,
                        64,
                        args.requests,  # as long as the table's runs: start and end weigh alike
                        ("direct", "batcher-threads", "batcher-asyncio"),
                    )
                )
            if "run_async" in modes:
                async_extra[kernel] = async_extra_us(
                    paired_rounds(
                        kernel, engine, batcher, 1, args.requests, ("direct", "run_async")
                    )
                )
        engine.close()
    print(table(results))
    print(
        f"\nA full batch ({MAX_ROWS} rows) alone, p50: "
        + ", ".join(f"{full_batch[k]:.0f} us on the {k:g} us engine" for k in KERNELS_US)
    )
    print(
        "An idle event loop woken from a thread resumes its task, p50: "
        + ", ".join(f"{loop_wake_us(k * 1e-6):.0f} us after {k:g} us idle" for k in KERNELS_US)
    )
    alone = clients_alone(args.requests)
    print(
        "The clients alone, answers costing nothing (64 clients; N clients wait at least "
        "N / this per request): "
        + ", ".join(f"{rate:,.0f}/s from {kind}" for kind, rate in alone.items())
    )
    print(f"max_delay_us = {args.max_delay_us:g}\n")
    checks = goals(results, full_batch, args.max_delay_us, ratio, async_extra, alone)
    for text, met in checks:
        print(f"- [{'x' if met else ' '}] {text}")
    if args.plot:
        plot(results, args.plot)
    return 0 if all(met for _, met in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
