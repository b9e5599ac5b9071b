"""trtfast on Ray Serve: replicas that each load an engine and batch with :class:`Batcher`.

``trtfast.serve.app(engine="model.engine")`` is a Ray Serve application; ``serve run
trtfast.serve:build_app engine=model.engine`` runs one from the command line. Each replica
takes one GPU by default (``ray_actor_options={"num_gpus": 1}``); Ray Serve's autoscaling and
replica settings pass through unchanged.

Requests come through Ray Serve handles (``handle.infer.remote({"x": array})`` returns a dict
of numpy arrays) or over HTTP: a POST whose body is numpy's ``.npy`` (one input: named by the
``input`` query parameter, else the engine's only input; answered with ``.npy`` for one output,
``.npz`` for several) or JSON (``{"x": [[...]], ...}``, answered with JSON). The HTTP endpoint
faces untrusted clients: nothing is unpickled, a body larger than the engine's largest inputs
can need is refused before it is read whole, and a bad request gets a 4xx answer naming the
problem.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

try:
    from ray import serve as ray_serve
except ImportError as error:  # pragma: no cover - the message is tested in a subprocess
    raise ImportError(
        "trtfast.serve needs Ray Serve: pip install 'trtfast[serve]' (or 'ray[serve]')"
    ) from error

from .batcher import Batcher, Runnable
from .errors import EngineCompatibilityError, InputError, OverloadedError

# What a body may hold beyond its arrays' bytes: .npy/.npz headers, JSON punctuation.
_HEADER_ALLOWANCE = 64 * 1024
# JSON spells a number in at most this many characters (a float64 with sign, digits, exponent).
_JSON_CHARACTERS_PER_NUMBER = 32


class HTTPError(Exception):
    """A request the endpoint refuses: its status and the sentence naming the problem."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class EngineServer:
    """One replica: an engine (loaded, built for this GPU, or made by a factory) behind a
    :class:`Batcher`."""

    def __init__(
        self,
        engine: str | os.PathLike[str] | None = None,
        *,
        engine_factory: Callable[[], Runnable] | None = None,
        onnx: str | os.PathLike[str] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        build_options: Mapping[str, Any] | None = None,
        batcher_options: Mapping[str, Any] | None = None,
        device: int = 0,
    ) -> None:
        if (engine is None) == (engine_factory is None):
            raise ValueError("give one of engine (an engine file) and engine_factory")
        if engine_factory is not None:
            self.engine: Any = engine_factory()
        else:
            assert engine is not None
            self.engine = load_engine(engine, onnx, cache_dir, build_options or {}, device)
        self.batcher = Batcher(self.engine, **dict(batcher_options or {}))
        self._specs = {spec.name: spec for spec in self.engine.inputs}
        self._limit_bytes = _largest_body(self.engine.inputs)

    async def infer(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """A call through a Ray Serve handle: numpy arrays in, numpy arrays out."""
        result = await self.batcher.run_async(inputs)
        return {name: np.asarray(value) for name, value in result.items()}

    def metrics(self) -> dict[str, Any]:
        """This replica's batcher metrics (see :meth:`Batcher.metrics`)."""
        return self.batcher.metrics()

    def check_health(self) -> None:
        """Ray Serve's health check: a replica whose batcher is closed is unhealthy."""
        if self.batcher.closed:
            raise RuntimeError("the replica's batcher is closed")

    def __del__(self) -> None:
        batcher = getattr(self, "batcher", None)
        if batcher is not None:
            batcher.close()

    async def __call__(self, request: Any) -> Any:
        from starlette.responses import JSONResponse, Response

        try:
            if request.method != "POST":
                raise HTTPError(405, "send inputs with POST")
            body = await self._read_body(request)
            kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if kind == "application/json":
                inputs = self._parse_json(body)
            elif kind in ("application/x-npy", "application/octet-stream"):
                inputs = self._parse_npy(body, request.query_params.get("input"))
            else:
                raise HTTPError(
                    415,
                    f"content type {kind or 'none'!r} is not accepted: send "
                    "application/x-npy (numpy's .npy) or application/json",
                )
            result = await self.infer(inputs)
        except HTTPError as error:
            return JSONResponse({"error": str(error)}, status_code=error.status)
        except (InputError, ValueError, TypeError) as error:
            return JSONResponse({"error": str(error)}, status_code=422)
        except OverloadedError as error:
            return JSONResponse(
                {"error": str(error)}, status_code=503, headers={"Retry-After": "1"}
            )
        except TimeoutError as error:
            return JSONResponse({"error": str(error)}, status_code=504)
        if kind == "application/json":
            return JSONResponse({name: value.tolist() for name, value in result.items()})
        buffer = io.BytesIO()
        if len(result) == 1:
            np.save(buffer, next(iter(result.values())), allow_pickle=False)
            return Response(buffer.getvalue(), media_type="application/x-npy")
        np.savez(buffer, **result)
        return Response(buffer.getvalue(), media_type="application/x-npz")

    async def _read_body(self, request: Any) -> bytes:
        """The body, refused (413) as soon as it is known to exceed what any call can need."""
        limit = self._limit_bytes
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                raise HTTPError(400, f"Content-Length {declared!r} is not a number")
            if int(declared) > limit:
                raise HTTPError(413, _too_large(int(declared), limit))
        chunks = []
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise HTTPError(413, _too_large(received, limit))
            chunks.append(chunk)
        return b"".join(chunks)

    def _parse_npy(self, body: bytes, name: str | None) -> dict[str, np.ndarray]:
        if name is None:
            if len(self._specs) != 1:
                raise HTTPError(
                    400,
                    f"the engine takes {sorted(self._specs)}: name the input of a .npy body with "
                    "?input=NAME, or send JSON",
                )
            name = next(iter(self._specs))
        spec = self._check_name(name)
        try:
            array = np.load(io.BytesIO(body), allow_pickle=False)
        except (ValueError, OSError, EOFError) as error:
            raise HTTPError(400, f"the body is not a readable .npy array: {error}") from error
        if not isinstance(array, np.ndarray):
            raise HTTPError(400, "the body is an .npz archive; send one .npy array")
        return {name: _checked(array, spec)}

    def _parse_json(self, body: bytes) -> dict[str, np.ndarray]:
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError) as error:
            raise HTTPError(400, f"the body is not valid JSON: {error}") from error
        if not isinstance(document, dict):
            raise HTTPError(400, "the JSON body must be an object of input names to arrays")
        inputs = {}
        for name, value in document.items():
            spec = self._check_name(name)
            try:
                array = np.asarray(value, dtype=np.dtype(spec.dtype))
            except (ValueError, TypeError, OverflowError) as error:
                raise HTTPError(
                    422, f"input {name!r} is not a rectangular array of {spec.dtype}: {error}"
                ) from error
            inputs[name] = _checked(array, spec)
        return inputs

    def _check_name(self, name: str) -> Any:
        spec = self._specs.get(name)
        if spec is None:
            raise HTTPError(422, f"unknown input {name!r}; the engine takes {sorted(self._specs)}")
        return spec


def _checked(array: np.ndarray, spec: Any) -> np.ndarray:
    """Refuses (422) an array whose dtype or shape the input cannot take."""
    if array.dtype != np.dtype(spec.dtype):
        raise HTTPError(422, f"input {spec.name!r} must be {spec.dtype}, got {array.dtype}")
    shape = tuple(spec.shape)
    if array.ndim != len(shape) or any(
        want != -1 and want != got for want, got in zip(shape, array.shape, strict=True)
    ):
        raise HTTPError(
            422, f"input {spec.name!r} must have shape {shape} (-1: any), got {array.shape}"
        )
    return array


def _largest_body(specs: Any) -> int:
    """Bytes the largest call's inputs can need, as .npy or JSON, plus headers."""
    largest = 0
    for spec in specs:
        shapes = [profile[2] for profile in spec.profiles] or [spec.shape]
        volume = max(int(np.prod([max(d, 1) for d in shape])) for shape in shapes)
        itemsize = max(np.dtype(spec.dtype).itemsize, 1)
        largest += volume * max(itemsize, _JSON_CHARACTERS_PER_NUMBER)
    return largest + _HEADER_ALLOWANCE


def _too_large(size: int, limit: int) -> str:
    return f"the body has {size} bytes or more; the engine's largest inputs need at most {limit}"


def load_engine(
    engine: str | os.PathLike[str],
    onnx: str | os.PathLike[str] | None,
    cache_dir: str | os.PathLike[str] | None,
    build_options: Mapping[str, Any],
    device: int = 0,
) -> Any:
    """The engine file, or, where it cannot run on this GPU and an ONNX model is given, an
    engine built for this GPU into ``cache_dir`` (under a lock: replicas that start together
    build once, and later ones load what the first built)."""
    from .engine import Engine

    try:
        return Engine.load(engine, device=device)
    except EngineCompatibilityError:
        if onnx is None or cache_dir is None:
            raise
    return Engine.load(build_for_this_gpu(onnx, cache_dir, build_options, device), device=device)


def build_for_this_gpu(
    onnx: str | os.PathLike[str],
    cache_dir: str | os.PathLike[str],
    build_options: Mapping[str, Any],
    device: int = 0,
) -> Path:
    """The path of an engine of ``onnx`` for this machine's GPU and TensorRT, built into
    ``cache_dir`` unless an earlier replica built it."""
    from . import _core
    from ._library import tensorrt_library
    from .build import build

    gpu = _core.cuda.devices()[device]
    major, minor = gpu["compute_capability"]
    model = Path(onnx)
    options = json.dumps(dict(build_options), sort_keys=True, default=str)
    digest = hashlib.sha256(options.encode())
    with model.open("rb") as source:  # the model's bytes: a changed model builds anew
        for chunk in iter(lambda: source.read(1 << 20), b""):
            digest.update(chunk)
    tag = digest.hexdigest()[:12]
    folder = Path(cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{model.stem}-{tag}-sm{major}{minor}-trt{tensorrt_library().version}.engine"
    return build_once(
        target,
        lambda path: build(
            model,
            output=path,
            cache_dir=folder,
            progress=False,
            device=device,
            **dict(build_options),
        ),
    )


def build_once(target: Path, build: Callable[[Path], object]) -> Path:
    """``target``, made by ``build(target)`` (which writes it atomically) unless it exists,
    under a file lock beside it: of replicas that start together one builds, and the others
    wait for it and reuse what it built."""
    from filelock import FileLock

    with FileLock(str(target) + ".lock"):
        if not target.exists():
            build(target)
    return target


def app(
    engine: str | os.PathLike[str] | None = None,
    *,
    engine_factory: Callable[[], Runnable] | None = None,
    onnx: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    build_options: Mapping[str, Any] | None = None,
    batcher_options: Mapping[str, Any] | None = None,
    name: str = "trtfast",
    ray_actor_options: Mapping[str, Any] | None = None,
    **deployment_options: Any,
) -> Any:
    """A Ray Serve application of replicas that each serve ``engine`` (or ``engine_factory()``)
    through a :class:`Batcher` (``batcher_options`` are its arguments). ``ray_actor_options``
    defaults to one GPU per replica; ``deployment_options`` (``num_replicas``,
    ``autoscaling_config``, ``max_ongoing_requests``, ...) go to Ray Serve unchanged. Where the
    engine file does not fit a replica's GPU and ``onnx`` and ``cache_dir`` are given, the
    replica builds for its GPU into ``cache_dir`` (shared between replicas)."""
    deployment = ray_serve.deployment(name=name)(EngineServer)
    options = dict(deployment_options)
    options["ray_actor_options"] = (
        dict(ray_actor_options) if ray_actor_options is not None else {"num_gpus": 1}
    )
    return deployment.options(**options).bind(
        None if engine is None else os.fspath(engine),
        engine_factory=engine_factory,
        onnx=None if onnx is None else os.fspath(onnx),
        cache_dir=None if cache_dir is None else os.fspath(cache_dir),
        build_options=dict(build_options or {}),
        batcher_options=dict(batcher_options or {}),
    )


def build_app(args: dict[str, str]) -> Any:
    """``serve run trtfast.serve:build_app engine=model.engine [onnx=model.onnx]
    [cache_dir=DIR] [max_delay_us=N] [max_batch=N] [num_replicas=N]``."""
    known = {
        "engine",
        "onnx",
        "cache_dir",
        "max_delay_us",
        "max_batch",
        "max_queue",
        "num_replicas",
        "name",
    }
    unknown = sorted(set(args) - known)
    if unknown:
        raise ValueError(f"unknown argument(s) {unknown}; build_app takes {sorted(known)}")
    if "engine" not in args:
        raise ValueError("build_app needs engine=PATH (an engine file)")
    batcher_options: dict[str, Any] = {}
    for key in ("max_batch", "max_queue"):
        if key in args:
            batcher_options[key] = int(args[key])
    if "max_delay_us" in args:
        batcher_options["max_delay_us"] = float(args["max_delay_us"])
    extra: dict[str, Any] = {}
    if "num_replicas" in args:
        extra["num_replicas"] = (
            "auto" if args["num_replicas"] == "auto" else int(args["num_replicas"])
        )
    return app(
        args["engine"],
        onnx=args.get("onnx"),
        cache_dir=args.get("cache_dir"),
        batcher_options=batcher_options,
        name=args.get("name", "trtfast"),
        **extra,
    )


__all__ = [
    "EngineServer",
    "HTTPError",
    "app",
    "build_app",
    "build_for_this_gpu",
    "build_once",
    "load_engine",
]
