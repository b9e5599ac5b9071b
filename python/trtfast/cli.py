"""The ``trtfast`` command line."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from . import __version__
from ._choices import HARDWARE_COMPATIBILITY, PRECISIONS, PREPARE_MODES
from .engine_file import EDITIONS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trtfast",
        description="Build TensorRT engines from ONNX and run them with minimal overhead.",
    )
    parser.add_argument("--version", action="version", version=f"trtfast {__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log more: -v trtfast's and TensorRT's info, -vv everything (TensorRT's verbose "
        "log as DEBUG)",
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="log errors only, no progress bar"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser(
        "doctor",
        help="show what this machine has and whether it can build or run engines",
        description="Exit 0 only when this machine can build or run TensorRT engines.",
    )
    _add_build_parser(commands)
    _add_engine_file_parsers(commands)
    _add_demo_parser(commands)
    _add_prepare_parser(commands)
    _add_measure_parsers(commands)
    _add_run_parser(commands)
    return parser


@contextlib.contextmanager
def logging_for(verbose: int, quiet: bool) -> Iterator[None]:
    """For one command: the ``trtfast`` logger and ``trtfast.tensorrt`` (TensorRT's log, its
    verbose level as DEBUG) at the level -v/-q ask for, printed on stderr; as before after."""
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO)[min(verbose, 1)]
    if verbose >= 2:
        level = logging.DEBUG
    loggers = [logging.getLogger("trtfast"), logging.getLogger("trtfast.tensorrt")]
    before = [logger.level for logger in loggers]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(name)s: %(levelname)s: %(message)s"))
    loggers[0].addHandler(handler)
    for logger in loggers:
        logger.setLevel(level)
    try:
        yield
    finally:
        loggers[0].removeHandler(handler)
        for logger, previous in zip(loggers, before, strict=True):
            logger.setLevel(previous)


def _add_build_parser(commands: Any) -> None:
    build = commands.add_parser(
        "build",
        help="build a TensorRT engine from an ONNX model",
        description="Build a TensorRT engine from an ONNX model and write it as an engine file.",
        epilog="Exit status: 0 built, 1 the build failed, 2 invalid arguments, 130 interrupted "
        "(nothing written).",
    )
    build.add_argument("model", help="the .onnx file (external weights beside it are found)")
    build.add_argument("-o", "--output", help="engine file to write")
    build.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="fp16/bf16 convert the model on TensorRT 11 (inputs and outputs keep their types); "
        "int8/fp8 need a quantized (Q/DQ) model (default: fp32)",
    )
    build.add_argument(
        "--shapes",
        action="append",
        default=[],
        metavar="NAME:MIN,OPT,MAX",
        help="shape range of a dynamic input, shapes written 1x3x224x224 (one shape: fixed); "
        "NAME:values=MIN,OPT,MAX gives a shape-tensor input's values (a vector: 1x16); "
        "repeat for more inputs; naming an input again starts the next optimization profile",
    )
    for which in ("min", "opt", "max"):
        build.add_argument(
            f"--{which}-shapes",
            f"--{which}Shapes",
            dest=f"{which}_shapes",
            action="append",
            default=[],
            metavar="NAME:SHAPE,...",
            help=f"{which} shapes of one optimization profile as trtexec writes them: "
            "a:1x3x224x224,b:1x10" + ("" if which != "opt" else " (min and max default to it)"),
        )
    build.add_argument("--timing-cache", metavar="FILE", help="timing cache to reuse and update")
    build.add_argument("--workspace", metavar="SIZE", help="workspace limit, e.g. 4GiB or 512MiB")
    build.add_argument(
        "--cache-dir", metavar="DIR", help="engine cache: reuse an engine built the same way"
    )
    build.add_argument(
        "--optimization-level",
        type=int,
        choices=range(6),
        metavar="{0..5}",
        help="builder optimization level",
    )
    build.add_argument(
        "--version-compatible",
        action="store_true",
        help="build an engine later TensorRT versions can run",
    )
    build.add_argument(
        "--hardware-compatibility",
        choices=("none", *HARDWARE_COMPATIBILITY),
        default="none",
        help="build for GPUs other than this one",
    )
    build.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="LIB",
        help="plugin library to load (repeatable)",
    )
    build.add_argument("--device", type=int, default=0, help="GPU index (default: 0)")
    build.add_argument(
        "--edition",
        choices=EDITIONS,
        default="standard",
        help="standard: TensorRT through trtfast's builder; rtx: TensorRT-RTX through its Python "
        "API, which needs no GPU and builds for any GPU it supports (default: standard)",
    )
    build.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar (by default one shows when stderr is a terminal)",
    )
    build.add_argument(
        "--prepare",
        choices=PREPARE_MODES,
        default="auto",
        help="auto: prepare the model (opset, constant folding, shapes) when the ONNX parser "
        "refuses it as given; always: prepare first; never (default: auto)",
    )


def _fail(status: int, message: str) -> int:
    print(f"trtfast build: error: {message}", file=sys.stderr)
    return status


def _build(args: argparse.Namespace) -> int:
    from .build import build
    from .errors import BuildError, BuildOptionError, TrtfastError

    if not args.output and not args.cache_dir:
        return _fail(2, "pass -o/--output (the engine file to write) or --cache-dir")
    try:
        shapes = _build_shapes(args)
        options: dict[str, Any] = dict(
            output=args.output,
            precision=args.precision,
            shapes=shapes,
            workspace=args.workspace,
            timing_cache=args.timing_cache,
            cache_dir=args.cache_dir,
            optimization_level=args.optimization_level,
            version_compatible=args.version_compatible,
            hardware_compatibility=args.hardware_compatibility,
            plugins=args.plugin,
            progress=False if args.no_progress or args.quiet else "auto",
            device=args.device,
            prepare=args.prepare,
        )
        if args.edition == "rtx":
            from . import reference

            info = reference.build(args.model, edition="rtx", **options)
        else:
            info = build(args.model, **options)
    except BuildOptionError as error:
        return _fail(2, str(error))
    except (TrtfastError, ImportError, OSError) as error:
        lines = [str(error)]
        if isinstance(error, BuildError):
            lines.extend(
                f"  node {entry['node_index']} {entry['node_name']!r} ({entry['op_type']}): "
                f"{entry['message']}"
                for entry in error.parser_errors
            )
        return _fail(1, "\n".join(lines))
    except KeyboardInterrupt:
        return _fail(130, "interrupted; nothing was written")
    assert not isinstance(info, bytes)  # output or cache_dir was given
    where = info.path or args.output
    product, gpu = "TensorRT", info.gpu_name
    if info.edition == "rtx":
        product, gpu = "TensorRT-RTX", gpu or "any GPU TensorRT-RTX supports"
    size = f"{info.plan_size / 2**20:.1f} MiB"
    print(f"{where}: {product} {info.tensorrt_version} engine for {gpu}, {size}")
    preparation = info.build_options.get("prepare") or {}
    if preparation.get("applied"):
        from .prepare import PrepareReport

        summary = PrepareReport.from_json(preparation).summary()
        print(f"prepared ({preparation['reason']}): {summary}")
    return 0


def _build_shapes(args: argparse.Namespace) -> list[dict[str, Any]] | None:
    from .errors import BuildOptionError
    from .profiles import parse_shapes_option, parse_trtexec_shapes

    trtexec = args.min_shapes or args.opt_shapes or args.max_shapes
    if trtexec and args.shapes:
        raise BuildOptionError(
            "give the shapes one way: --shapes NAME:MIN,OPT,MAX, or trtexec's --min-shapes, "
            "--opt-shapes and --max-shapes"
        )
    if trtexec:
        return parse_trtexec_shapes(args.min_shapes, args.opt_shapes, args.max_shapes)
    return parse_shapes_option(args.shapes) if args.shapes else None


def _add_prepare_parser(commands: Any) -> None:
    prepare = commands.add_parser(
        "prepare",
        help="prepare an ONNX model for TensorRT's parser: opset, constant folding, shapes",
        description="Write the model as trtfast.build gives it to TensorRT's ONNX parser when "
        "it prepares it: converted to an opset the parser imports, constant subgraphs folded, "
        "shapes inferred, and converted for --precision. Prints what changed.",
        epilog="Exit status: 0 written, 1 preparation failed, 2 invalid arguments.",
    )
    prepare.add_argument("model", help="the .onnx file (external weights beside it are found)")
    prepare.add_argument(
        "-o",
        "--output",
        required=True,
        help="the .onnx file to write (weights go to OUTPUT.data when the model kept them in "
        "files or exceeds 2 GB)",
    )
    prepare.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="also convert the model as a TensorRT 11 build does for this precision",
    )
    prepare.add_argument(
        "--opset", type=int, help="convert to this opset (default: one the parser imports)"
    )
    prepare.add_argument(
        "--tensorrt-version",
        metavar="X.Y",
        help="prepare for this TensorRT's parser (default: the TensorRT installed)",
    )
    prepare.add_argument("--no-fold", action="store_true", help="do not fold constants")
    prepare.add_argument("--no-shapes", action="store_true", help="do not infer shapes")


def _prepare(args: argparse.Namespace) -> int:
    from .errors import BuildOptionError, TrtfastError
    from .prepare import load, prepare_model, prepare_with_report, require_build_extra, save_model

    options = {
        "opset": args.opset,
        "fold_constants": False if args.no_fold else None,
        "infer_shapes": not args.no_shapes,
        "tensorrt_version": args.tensorrt_version,
    }
    try:
        require_build_extra()
        if args.precision == "fp32":
            # Weights are copied file to file, never all in memory.
            prepared = prepare_model(load(args.model), **options)
            report = prepared.report
            weights = prepared.save(args.output)
        else:
            # Converting reads every weight: the converted model is written whole.
            proto, report = prepare_with_report(args.model, args.precision, **options)
            weights = save_model(proto, args.output)
    except BuildOptionError as error:
        print(f"trtfast prepare: error: {error}", file=sys.stderr)
        return 2
    except (TrtfastError, ImportError, OSError) as error:
        print(f"trtfast prepare: error: {error}", file=sys.stderr)
        return 1
    print(f"{args.output}: {report.summary()}")
    if weights is not None:
        print(f"weights: {weights}")
    return 0


def _add_engine_file_parsers(commands: Any) -> None:
    inspect = commands.add_parser(
        "inspect",
        help="show what an engine file holds: versions, GPU, inputs and outputs, options",
        description="Check an engine file (or a bare TensorRT plan) and describe it.",
    )
    inspect.add_argument("file", help="engine file or bare TensorRT plan")
    inspect.add_argument("--json", action="store_true", help="print the description as JSON")
    export = commands.add_parser(
        "export",
        help="write an engine's bare TensorRT plan, for trtexec or Triton",
        description="Check an engine file and write its bare TensorRT plan.",
    )
    export.add_argument("file", help="engine file")
    export.add_argument("-o", "--output", required=True, help="where to write the plan")


def _engine_command(args: argparse.Namespace) -> int:
    from . import engine_file
    from .errors import TrtfastError

    try:
        if args.command == "inspect":
            info = engine_file.read_info(args.file, check_plan=True)
            if args.json:
                print(json.dumps(info.to_json(), indent=2, ensure_ascii=False))
            else:
                print(engine_file.summary(info, args.file))
        else:
            engine_file.export_plan(args.file, args.output)
    except ValueError as error:  # an output that names the engine being read
        print(f"trtfast {args.command}: {error}", file=sys.stderr)
        return 2
    except (TrtfastError, OSError) as error:
        print(f"trtfast {args.command}: {error}", file=sys.stderr)
        return 1
    return 0


def _add_demo_parser(commands: Any) -> None:
    demo = commands.add_parser(
        "demo",
        help="build a bundled model, check parity and benchmark C++ against Python",
        description="Build a model that comes with trtfast (made on first use, nothing is "
        "downloaded) through trtfast's C++ core, or TensorRT's Python API where only that "
        "works; check that trtfast's C++ core and TensorRT's Python API give the same outputs "
        "(trtfast compare) and measure both (trtfast bench). Without a GPU it builds with "
        "TensorRT-RTX, shows the engine (trtfast inspect) and says what running it needs.",
        epilog="Exit status: 0 built, parity holds and measured; 1 an error, or the outputs "
        "differ; 3 stopped early: this machine cannot run (or build) engines, and the output "
        "says what is missing.",
    )
    demo.add_argument("--model", choices=("cnn", "mlp"), default="cnn", help="(default: cnn)")
    demo.add_argument("--precision", choices=PRECISIONS[:3], default="fp32", help="(default: fp32)")
    demo.add_argument("--device", type=int, default=0, help="GPU index (default: 0)")
    demo.add_argument(
        "--batch", type=_count(1), help="batch to run (default: the model's opt batch)"
    )
    demo.add_argument(
        "--iterations", type=_count(1), default=1000, help="timed calls per row (default: 1000)"
    )


# Exit status of compare and bench when TensorRT (or the reference path) cannot run here.
UNAVAILABLE = 3


def _count(minimum: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def _tolerance(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value >= 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _add_measure_parsers(commands: Any) -> None:
    compare = commands.add_parser(
        "compare",
        help="run an engine through trtfast's C++ core and TensorRT's Python API and compare",
        description="Run an engine file through trtfast's C++ core and through TensorRT's "
        "Python API (the reference path) on the same inputs (random inside the first "
        "optimization profile) and compare each output: max absolute and relative error, "
        "cosine similarity, elements outside atol + rtol * |reference|.",
        epilog="Exit status: 0 the outputs agree, 1 they differ, 2 invalid arguments or an "
        "engine that cannot be used, 3 TensorRT or the reference path cannot run here.",
    )
    bench = commands.add_parser(
        "bench",
        help="measure an engine's latency on every path against this machine's floor",
        description="Measure an engine file's host round-trip latency (p50/p90/p99) and "
        "throughput through trtfast's C++ session (numpy, device zero-copy, bound; CUDA "
        "graphs on and off; spin and blocking sync) and TensorRT's Python API, beside the "
        "engine's GPU time, enqueue times and this machine's floor for the same I/O.",
        epilog="Exit status: 0 measured, 2 invalid arguments or an engine that cannot be "
        "used, 3 TensorRT cannot run here.",
    )
    for command in (compare, bench):
        _add_engine_call_arguments(command)
    compare.add_argument(
        "--onnx",
        metavar="MODEL",
        help="compare the engine with onnxruntime running this ONNX model (as polygraphy run "
        "--trt --onnxrt does) instead of with TensorRT's Python API",
    )
    compare.add_argument(
        "--rtol", type=_tolerance, help="relative tolerance (default: by output dtype)"
    )
    compare.add_argument(
        "--atol", type=_tolerance, help="absolute tolerance (default: by output dtype)"
    )
    bench.add_argument(
        "--iterations", type=_count(1), default=1000, help="timed calls per row (default: 1000)"
    )
    bench.add_argument(
        "--warmup", type=_count(0), default=100, help="untimed calls first (default: 100)"
    )
    bench.add_argument(
        "--no-reference", action="store_true", help="leave out TensorRT's Python API"
    )


def _add_engine_call_arguments(command: Any) -> None:
    """The engine file, its inputs and where it runs: compare, bench and run take them alike."""
    command.add_argument("engine", help="engine file")
    command.add_argument(
        "--inputs",
        metavar="FILE",
        help="inputs by name in a .npz file (np.savez), or one .npy array for an engine with "
        "one input (default: random inputs)",
    )
    command.add_argument(
        "--shapes",
        action="append",
        default=[],
        metavar="NAME:SHAPE",
        help="shape of a random input, as trtexec writes it: x:8x128 or x:8x128,mask:8x128 "
        "(default: the profile's opt shape)",
    )
    command.add_argument(
        "--batch",
        type=_count(1),
        help="first dimension of dynamic random inputs (default: the profile's opt shape)",
    )
    command.add_argument("--seed", type=_count(0), default=0, help="seed of the random inputs")
    command.add_argument("--device", type=_count(0), default=0, help="GPU index (default: 0)")
    command.add_argument(
        "--allow-host-code",
        action="store_true",
        help="load an engine that embeds host code (only one you trust)",
    )
    command.add_argument("--json", action="store_true", help="print the result as JSON")


def _call_inputs(args: argparse.Namespace, info: Any) -> dict[str, Any]:
    """``inputs``, ``shapes`` and ``batch`` for compare, bench and run from --inputs, --shapes
    and --batch; ValueError (or ProfileError) saying what is wrong with them."""
    from .profiles import parse_runtime_shapes

    shapes = parse_runtime_shapes(args.shapes) if args.shapes else None
    inputs = None
    if args.inputs is not None:
        if shapes or args.batch is not None:
            raise ValueError("--inputs gives the inputs; leave out --shapes and --batch")
        inputs = load_inputs(args.inputs, [spec.name for spec in info.inputs])
    return {"inputs": inputs, "shapes": shapes, "batch": args.batch}


def load_inputs(path: str, names: Sequence[str]) -> dict[str, Any]:
    """Arrays by input name from a .npz file, or from a .npy file for an engine with one input;
    ValueError naming the inputs the file and the engine disagree on."""
    import numpy as np

    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read inputs from {path!r}: {error}") from None
    if isinstance(loaded, np.ndarray):
        if len(names) != 1:
            raise ValueError(
                f"{path!r} holds one array, and the engine has the inputs {list(names)}: save "
                "them by name, np.savez(path, " + ", ".join(f"{n}=..." for n in names) + ")"
            )
        return {names[0]: loaded}
    with loaded:
        arrays = {name: loaded[name] for name in loaded.files}
    unknown = [name for name in arrays if name not in names]
    missing = [name for name in names if name not in arrays]
    if unknown or missing:
        problems = []
        if unknown:
            problems.append(f"holds {unknown}, which the engine does not take")
        if missing:
            problems.append(f"lacks {missing}")
        raise ValueError(
            f"{path!r} " + " and ".join(problems) + f"; the engine's inputs are {list(names)}"
        )
    return arrays


def _unrunnable(command: str, engine: str, *, need_reference: bool) -> int:
    """0 when `command` can run `engine` here; else prints why, in one line, and returns the
    exit status: 2 for an engine file that cannot be read, UNAVAILABLE where TensorRT cannot
    run."""
    from . import doctor, engine_file, reference
    from .errors import TrtfastError

    try:
        info = engine_file.read_info(engine)
    except (TrtfastError, OSError) as error:
        print(f"trtfast {command}: {error}", file=sys.stderr)
        return 2
    reason = doctor.unavailable_reason()
    if reason is not None:
        print(
            f"trtfast {command}: TensorRT cannot run engines here: {reason} "
            "(`trtfast doctor` shows more)",
            file=sys.stderr,
        )
        return UNAVAILABLE
    if need_reference:
        reason = reference.unavailable_reason(info.edition or "standard")
        if reason is not None:
            print(
                f"trtfast {command}: the reference path cannot run here: {reason}",
                file=sys.stderr,
            )
            return UNAVAILABLE
    return 0


def _measure(args: argparse.Namespace) -> int:
    from . import engine_file
    from .errors import TrtfastError

    onnx = getattr(args, "onnx", None)
    try:
        feeds = _call_inputs(args, engine_file.read_info(args.engine))
        if onnx is not None:
            from .parity import onnxruntime_session

            onnxruntime_session(onnx)  # a model that cannot load is the caller's to fix first
    except ImportError as error:
        print(f"trtfast {args.command}: cannot run here: {error}", file=sys.stderr)
        return UNAVAILABLE
    except (TrtfastError, ValueError, OSError) as error:
        print(f"trtfast {args.command}: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # onnxruntime's own errors for a model it cannot load
        print(f"trtfast {args.command}: cannot load {onnx!r}: {error}", file=sys.stderr)
        return 2
    need_reference = args.command == "compare" and onnx is None
    status = _unrunnable(args.command, args.engine, need_reference=need_reference)
    if status:
        return status
    options = {
        **feeds,
        "seed": args.seed,
        "device": args.device,
        "allow_host_code": args.allow_host_code,
    }
    try:
        if args.command == "compare":
            from .parity import compare

            result: Any = compare(args.engine, rtol=args.rtol, atol=args.atol, onnx=onnx, **options)
        else:
            from .bench import benchmark

            result = benchmark(
                args.engine,
                iterations=args.iterations,
                warmup=args.warmup,
                reference=not args.no_reference,
                **options,
            )
    except (TrtfastError, ImportError, ValueError, OSError) as error:
        return _failure(args.command, error)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(result.summary() if args.command == "compare" else result.markdown())
    return 1 if args.command == "compare" and not result.passed else 0


def _failure(command: str, error: Exception) -> int:
    """Prints why `command` failed; returns UNAVAILABLE where TensorRT (or an optional package)
    is missing here, else 2."""
    from .errors import TensorRTUnavailableError

    if isinstance(error, (TensorRTUnavailableError, ImportError)):
        print(f"trtfast {command}: cannot run here: {error}", file=sys.stderr)
        return UNAVAILABLE
    print(f"trtfast {command}: {error}", file=sys.stderr)
    return 2


def _add_run_parser(commands: Any) -> None:
    run = commands.add_parser(
        "run",
        help="run an engine on given (or random) inputs and describe its outputs",
        description="Run an engine file once on the inputs of --inputs (or random ones shaped "
        "by --shapes) and print each output's shape, dtype and statistics.",
        epilog="Exit status: 0 ran, 2 invalid arguments or an engine that cannot be used, "
        "3 TensorRT cannot run here.",
    )
    _add_engine_call_arguments(run)
    run.add_argument("--save-outputs", metavar="FILE", help="write the outputs to a .npz file")


def _run(args: argparse.Namespace) -> int:
    import numpy as np

    from . import engine_file
    from .errors import TrtfastError

    try:
        info = engine_file.read_info(args.engine)
        given = _call_inputs(args, info)
    except (TrtfastError, ValueError, OSError) as error:
        print(f"trtfast run: {error}", file=sys.stderr)
        return 2
    status = _unrunnable("run", args.engine, need_reference=False)
    if status:
        return status
    from .engine import Engine
    from .parity import call_inputs

    try:
        engine = Engine.load(args.engine, device=args.device, allow_host_code=args.allow_host_code)
        try:
            feeds = call_inputs(engine.inputs, **given, seed=args.seed)
            outputs = {name: np.asarray(value) for name, value in engine(feeds).items()}
        finally:
            engine.close()
        if args.save_outputs:
            from ._files import atomic_write

            buffer = _npz_bytes(outputs)
            atomic_write(args.save_outputs, buffer)
    except (TrtfastError, ImportError, ValueError, OSError) as error:
        return _failure("run", error)
    described = {
        "engine": args.engine,
        "inputs": {name: describe_array(value) for name, value in feeds.items()},
        "outputs": {name: describe_array(value) for name, value in outputs.items()},
    }
    if args.json:
        print(json.dumps(described, indent=2))
    else:
        print(_describe_table(described))
    return 0


def describe_array(array: Any) -> dict[str, Any]:
    """Shape, dtype and statistics (min, max, mean, std; NaN and infinity counts) of an array,
    as ``trtfast run`` prints them."""
    import numpy as np

    from .parity import json_float

    values = np.asarray(array)
    entry: dict[str, Any] = {"shape": list(values.shape), "dtype": values.dtype.name}
    numeric = values.dtype.kind in "biuf" or values.dtype.name in ("bfloat16", "float8_e4m3fn")
    if values.size == 0 or not numeric:
        return entry
    numbers = values.astype(np.float64)
    finite = numbers[np.isfinite(numbers)]
    entry["nan"] = int(np.count_nonzero(np.isnan(numbers)))
    entry["inf"] = int(np.count_nonzero(np.isinf(numbers)))
    if finite.size:
        entry.update(
            min=json_float(float(finite.min())),
            max=json_float(float(finite.max())),
            mean=json_float(float(finite.mean())),
            std=json_float(float(finite.std())),
        )
    return entry


def _describe_table(described: dict[str, Any]) -> str:
    lines = [f"engine  {described['engine']}"]
    for role in ("inputs", "outputs"):
        lines.append(f"{role}:")
        for name, entry in described[role].items():
            text = f"  {name}  {entry['dtype']} {entry['shape']}"
            if "mean" in entry:
                text += (
                    f"  min {entry['min']:.6g}  max {entry['max']:.6g}  mean {entry['mean']:.6g}"
                    f"  std {entry['std']:.6g}"
                )
            if entry.get("nan") or entry.get("inf"):
                text += f"  nan {entry['nan']}  inf {entry['inf']}"
            lines.append(text)
    return "\n".join(lines)


def _npz_bytes(arrays: dict[str, Any]) -> bytes:
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    with logging_for(args.verbose, args.quiet):
        return _command(args)


def _command(args: argparse.Namespace) -> int:
    if args.command == "run":
        return _run(args)
    if args.command == "doctor":
        from .doctor import main as doctor_main

        return doctor_main()
    if args.command == "build":
        return _build(args)
    if args.command in ("inspect", "export"):
        return _engine_command(args)
    if args.command == "demo":
        from .demo import main as demo_main

        return demo_main(args.model, args.precision, args.device, args.batch, args.iterations)
    if args.command == "prepare":
        return _prepare(args)
    if args.command in ("compare", "bench"):
        return _measure(args)
    raise AssertionError(f"unhandled command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
