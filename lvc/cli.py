"""The ``lvc`` command: a thin layer over the library API.

Every subcommand reports failures of type :class:`lvc.errors.LvcError` as one line on
stderr with a non-zero exit code; tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from lvc import __version__
from lvc.errors import LvcError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lvc", description="lvc — learned video codec toolkit")
    parser.add_argument("--version", action="version", version=f"lvc {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from lvc.analysis import cli as analysis_cli
    from lvc.bench import cli as bench_cli
    from lvc.codec import cli as codec_cli
    from lvc.search import cli as search_cli
    from lvc.train import cli as train_cli

    codec_cli.add_parsers(sub)
    train_cli.add_parser(sub)
    bench_cli.add_parsers(sub)
    search_cli.add_parsers(sub)
    analysis_cli.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # MKL's GEMM gives bitwise-identical results for any thread count only in strict
    # conditional-reproducibility mode; it must be set before MKL starts.
    os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")
    parser = build_parser()
    args = parser.parse_args(argv)

    def note(message, category, filename, lineno, file=None, line=None) -> None:  # one line, no source
        print(f"lvc {args.command}: note: {message}", file=sys.stderr)

    warnings.showwarning = note
    try:
        rc = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe must fail here, not in the interpreter's exit flush
        return rc
    except LvcError as e:
        print(f"lvc {args.command}: error: {e.message()}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"lvc {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`lvc info X | head`): stop quietly, as cat does
        try:  # no second error when the interpreter flushes stdout at exit
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        except (OSError, ValueError):  # stdout without a file descriptor: nothing to redirect
            pass
        return 141


if __name__ == "__main__":
    sys.exit(main())
