"""The ``trtfast`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
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
    return parser


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
    build.add_argument("--no-progress", action="store_true", help="no progress bar")
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
    from .profiles import parse_shapes_option

    try:
        shapes = parse_shapes_option(args.shapes) if args.shapes else None
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
            progress=not args.no_progress,
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
    where = args.output or args.cache_dir
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
        command.add_argument("engine", help="engine file")
        command.add_argument(
            "--batch",
            type=_count(1),
            help="first dimension of dynamic inputs (default: the profile's opt shape)",
        )
        command.add_argument("--seed", type=_count(0), default=0, help="seed of the random inputs")
        command.add_argument("--device", type=_count(0), default=0, help="GPU index (default: 0)")
        command.add_argument(
            "--allow-host-code",
            action="store_true",
            help="load an engine that embeds host code (only one you trust)",
        )
        command.add_argument("--json", action="store_true", help="print the result as JSON")
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
    from .errors import TensorRTUnavailableError, TrtfastError

    status = _unrunnable(args.command, args.engine, need_reference=args.command == "compare")
    if status:
        return status
    options = {
        "batch": args.batch,
        "seed": args.seed,
        "device": args.device,
        "allow_host_code": args.allow_host_code,
    }
    try:
        if args.command == "compare":
            from .parity import compare

            result: Any = compare(args.engine, rtol=args.rtol, atol=args.atol, **options)
        else:
            from .bench import benchmark

            result = benchmark(
                args.engine,
                iterations=args.iterations,
                warmup=args.warmup,
                reference=not args.no_reference,
                **options,
            )
    except (TensorRTUnavailableError, ImportError) as error:
        print(f"trtfast {args.command}: cannot run here: {error}", file=sys.stderr)
        return UNAVAILABLE
    except (TrtfastError, ValueError, OSError) as error:
        print(f"trtfast {args.command}: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(result.summary() if args.command == "compare" else result.markdown())
    return 1 if args.command == "compare" and not result.passed else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
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
