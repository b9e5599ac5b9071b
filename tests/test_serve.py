"""trtfast.serve on a real local Ray Serve instance, on the CPU: replicas serve a numpy stand-in
engine through handles and HTTP, batch concurrent requests, refuse overload, and answer bad
HTTP bodies with a 4xx naming the problem."""

from __future__ import annotations

import functools
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from standin import AffineStandIn, expected

import trtfast

# The test extra installs Ray Serve, so CI runs this; elsewhere (a GPU machine with only the
# runtime's packages) it skips.
ray = pytest.importorskip("ray", reason="Ray Serve (the test extra's ray[serve]) is not installed")
serve = pytest.importorskip("ray.serve")

import trtfast.serve  # noqa: E402  (needs Ray Serve)

TESTS = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# A loaded CI machine can take tens of seconds to start a worker process: Ray Serve's controller
# (which reads these at its start) must not give up on its HTTP proxy meanwhile.
SLOW_START = {
    "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "300",
    "RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S": "120",
}


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    port = free_port()
    monkeypatch = pytest.MonkeyPatch()
    for key, value in SLOW_START.items():
        monkeypatch.setenv(key, value)
    path = os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])
    ray.init(
        num_cpus=1,  # Ray starts as many idle workers: few on a small machine
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": path}},  # replicas import the stand-in
    )
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        yield port
    finally:
        serve.shutdown()
        ray.shutdown()
        monkeypatch.undo()


def rows(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, 4), dtype=np.float32)


def post(
    port: int, route: str, body: bytes, content_type: str, **headers: str
) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request(
            "POST", route, body=body, headers={"Content-Type": content_type, **headers}
        )
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def npy(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def deploy(route: str, name: str, **options: Any) -> Any:
    application = trtfast.serve.app(
        engine_factory=functools.partial(AffineStandIn, **options.pop("engine", {})),
        name=name,
        ray_actor_options={"num_cpus": 0},
        **options,
    )
    return serve.run(application, name=name, route_prefix=route)


def test_two_replicas_batch_concurrent_requests_from_handles_and_http(port: int) -> None:
    handle = deploy(
        "/affine",
        "affine",
        engine={"max_rows": 32, "delay": 0.01},
        num_replicas=2,
        max_ongoing_requests=256,
        batcher_options={"max_delay_us": 20_000},
    )
    status = serve.status().applications["affine"]
    assert status.status == "RUNNING"
    assert status.deployments["affine"].replica_states.get("RUNNING") == 2

    through_handles = [handle.infer.remote({"x": rows(1 + i % 3, seed=i)}) for i in range(64)]
    with ThreadPoolExecutor(32) as pool:
        over_http = list(
            pool.map(
                lambda i: post(port, "/affine", npy(rows(2, seed=100 + i)), "application/x-npy"),
                range(64),
            )
        )
    for i, call in enumerate(through_handles):
        result = call.result()
        np.testing.assert_array_equal(result["y"], expected(rows(1 + i % 3, seed=i)))
    for i, (code, body) in enumerate(over_http):
        assert code == 200, body
        archive = np.load(io.BytesIO(body), allow_pickle=False)
        np.testing.assert_array_equal(archive["y"], expected(rows(2, seed=100 + i)))

    code, body = post(
        port, "/affine", json.dumps({"x": rows(1, 7).tolist()}).encode(), "application/json"
    )
    assert code == 200, body
    np.testing.assert_allclose(json.loads(body)["y"], expected(rows(1, 7)), rtol=1e-6)

    snapshots = [handle.metrics.remote().result() for _ in range(20)]
    assert all(s["failed"] == 0 for s in snapshots)
    # Every request here has 1 to 3 rows: a batch of more rows held several requests.
    assert any(max(s["batch_sizes"], default=0) > 3 for s in snapshots), snapshots


def test_bad_http_requests_get_a_4xx_naming_the_problem_and_the_replica_serves_on(
    port: int,
) -> None:
    deploy("/strict", "strict", engine={"max_rows": 8}, batcher_options={"max_delay_us": 0})
    cases = [
        (b"not an array", "application/x-npy", 400, "not a readable .npy"),
        (
            npy(np.array([{"a": 1}], dtype=object), allow_pickle=True),
            "application/x-npy",
            400,
            "pickle",
        ),
        (npy(rows(2, 0).astype(np.float64)), "application/x-npy", 422, "must be float32"),
        (npy(np.zeros((2, 5), np.float32)), "application/x-npy", 422, "must have shape"),
        (npy(np.zeros((9, 4), np.float32)), "application/x-npy", 422, "9 rows"),
        (b'{"z": [[1, 2, 3, 4]]}', "application/json", 422, "unknown input 'z'"),
        (b'{"x": [[1, 2], [3]]}', "application/json", 422, "not a rectangular array"),
        (b"{", "application/json", 400, "not valid JSON"),
        (b"x", "text/plain", 415, "application/x-npy"),
    ]
    for body, kind, status, words in cases:
        code, answer = post(port, "/strict", body, kind)
        assert code == status, (words, answer)
        assert words in json.loads(answer)["error"], answer
    # A body larger than any call can need is refused from its Content-Length, unread.
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.putrequest("POST", "/strict")
    connection.putheader("Content-Type", "application/x-npy")
    connection.putheader("Content-Length", str(1 << 30))
    connection.endheaders()
    connection.send(b"\x93NUMPY")
    response = connection.getresponse()
    assert response.status == 413
    assert b"largest inputs need at most" in response.read()
    connection.close()

    code, body = post(port, "/strict", npy(rows(3, 1)), "application/x-npy")
    assert code == 200
    np.testing.assert_array_equal(np.load(io.BytesIO(body))["y"], expected(rows(3, 1)))


def test_overload_is_refused_at_once_over_http_and_through_handles(port: int) -> None:
    handle = deploy(
        "/slow",
        "slow",
        engine={"delay": 0.5},
        max_ongoing_requests=64,
        batcher_options={"max_batch": 1, "max_delay_us": 0, "max_queue": 2, "workers": 1},
    )
    started = time.monotonic()
    with ThreadPoolExecutor(12) as pool:
        answers = list(
            pool.map(lambda i: post(port, "/slow", npy(rows(1, i)), "application/x-npy"), range(12))
        )
    codes = sorted(code for code, _ in answers)
    assert codes.count(200) >= 1
    assert codes.count(503) >= 6, codes
    assert set(codes) <= {200, 503}
    refused = [body for code, body in answers if code == 503]
    assert all(b"max_queue" in body for body in refused)
    assert time.monotonic() - started < 12 * 0.5  # refusals did not wait their turn

    calls = [handle.infer.remote({"x": rows(1, i)}) for i in range(12)]
    outcomes = []
    for call in calls:
        try:
            call.result()
            outcomes.append("ok")
        except trtfast.OverloadedError:
            outcomes.append("overloaded")
    assert "overloaded" in outcomes and "ok" in outcomes
    assert handle.metrics.remote().result()["overloaded"] >= outcomes.count("overloaded")


def test_build_app_reads_serve_run_arguments() -> None:
    with pytest.raises(ValueError, match="needs engine=PATH"):
        trtfast.serve.build_app({})
    with pytest.raises(ValueError, match=r"unknown argument\(s\) \['colour'\]"):
        trtfast.serve.build_app({"engine": "m.engine", "colour": "red"})
    application = trtfast.serve.build_app(
        {"engine": "m.engine", "max_delay_us": "500", "num_replicas": "3"}
    )
    assert application is not None


def test_without_ray_the_import_error_says_what_to_install() -> None:
    code = "import sys; sys.modules['ray'] = None; import trtfast.serve"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode != 0
    assert "pip install 'trtfast[serve]'" in result.stderr


def test_replicas_that_start_together_build_an_engine_once(tmp_path: Path) -> None:
    target = tmp_path / "model-sm90.engine"
    builds: list[int] = []

    def build(path: Path) -> None:
        builds.append(1)
        time.sleep(0.2)  # the others arrive while this one builds
        partial = path.with_suffix(".partial")
        partial.write_bytes(b"engine")
        partial.replace(path)

    with ThreadPoolExecutor(4) as pool:
        paths = list(pool.map(lambda _: trtfast.serve.build_once(target, build), range(4)))
    assert paths == [target] * 4
    assert len(builds) == 1
    assert target.read_bytes() == b"engine"
