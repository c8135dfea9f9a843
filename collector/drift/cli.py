"""``otel-llm drift``: build drift references from recorded traffic, for ``reference::mode: file``.

``collector/cli.py`` hands everything after ``drift`` to :func:`drift_main`::

    otel-llm drift save-reference --config config/collector.yaml [--processor drift] \\
        [--directory DIR] traces-monday.jsonl traces-tuesday.jsonl

The trace files hold one OTLP/JSON ``ExportTraceServiceRequest`` per line, as the OpenTelemetry
Collector's ``file`` exporter writes them. The processor's own config (grouping, signals, reference
size, embedder) decides what is saved, so the files match what that processor loads. Exit 0 with one
line per written file; exit 2 with one line per problem on stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn, TextIO

__all__ = ["drift_main"]

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """A usage mistake is one line on stderr and exit code 2, like the main command's."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="otel-llm drift", description="Drift detection tools.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    save = commands.add_parser(
        "save-reference",
        help="build references from recorded traces",
        description="Build drift references, one file per group and signal, from OTLP/JSON trace files "
        "(one export request per line), with the settings of a drift processor of a collector config.",
    )
    save.add_argument("--config", required=True, metavar="FILE", help="the collector YAML file")
    save.add_argument(
        "--processor", default="drift", metavar="ID", help="the drift processor's id (default drift)"
    )
    save.add_argument(
        "--directory", metavar="DIR", help="where to write (default: the processor's reference::directory)"
    )
    save.add_argument("traces", nargs="+", metavar="TRACES", help="OTLP/JSON lines files")
    return parser


def drift_main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run ``otel-llm drift`` with ``argv`` (the arguments after ``drift``); return the exit code."""
    args = _parser().parse_args(list(sys.argv[2:] if argv is None else argv))
    stream = out if out is not None else sys.stdout
    from collector.drift.references import save_reference_from_config
    from collector.errors import ConfigError

    try:
        written = save_reference_from_config(
            args.config, args.traces, processor=args.processor, directory=args.directory
        )
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"otel-llm drift: error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    except (ValueError, OSError) as exc:
        print(f"otel-llm drift: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not written:
        print("otel-llm drift: error: no group had enough values for a reference", file=sys.stderr)
        return EXIT_USAGE
    for path in written:
        print(path, file=stream)
    return 0
