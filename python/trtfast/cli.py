"""The ``trtfast`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from . import __version__


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
    return parser


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


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "doctor":
        from .doctor import main as doctor_main

        return doctor_main()
    if args.command in ("inspect", "export"):
        return _engine_command(args)
    raise AssertionError(f"unhandled command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
