"""The ``otel-llm`` command: run the collector, check a config, run the demo, print the version.

Every user mistake (bad flag, missing file, invalid config) ends in one clear line on stderr and exit
code 2, never a traceback. The collector's heavy dependencies are imported only by the subcommands that
need them, so ``otel-llm version`` works with the application-side package alone.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import NoReturn

__all__ = ["main"]

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake as one line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _fail(message: str, code: int = EXIT_USAGE) -> int:
    print(f"otel-llm: error: {message}", file=sys.stderr)
    return code


def _missing_extra(exc: ImportError) -> int:
    return _fail(
        f"the collector needs the [collector] extra ({exc.name} is not installed): "
        "pip install 'otel-llm[collector]'"
    )


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="otel-llm", description="GenAI observability with OpenTelemetry.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    run = commands.add_parser("collector", help="run the collector", description="Run the collector.")
    run.add_argument("--config", required=True, metavar="FILE", help="the collector YAML file")
    run.add_argument("--workers", type=int, metavar="N", help="override service::workers")

    check = commands.add_parser(
        "validate-config", help="check a config file", description="Check a config file; exit 0 when valid."
    )
    check.add_argument("file", metavar="FILE")

    demo = commands.add_parser(
        "demo",
        help="collector + instrumented demo traffic",
        description="Start the collector on a config and send instrumented LLM traffic to it "
        "(real openai SDK against a local stand-in server), then print where to look.",
    )
    demo.add_argument("--config", default="config/collector.yaml", metavar="FILE")
    demo.add_argument(
        "--duration",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long to send traffic (default 60; 0 = until Ctrl-C)",
    )
    demo.add_argument(
        "--rate", type=float, default=5.0, metavar="RPS", help="requests per second (default 5)"
    )
    demo.add_argument(
        "--no-prometheus", action="store_true", help="do not start a Prometheus even if installed"
    )

    for name, summary in _DELEGATED_HELP.items():
        delegated = commands.add_parser(name, help=summary, add_help=False)
        delegated.add_argument("rest", nargs=argparse.REMAINDER)

    commands.add_parser("version", help="print the version", description="Print the version.")
    return parser


# Subcommands with their own argument parsers; `otel-llm NAME --help` shows theirs.
_DELEGATED_HELP = {
    "alerts": "test, validate and export alert rules (otel-llm alerts --help)",
    "health": "health score per service and model from a running collector",
    "variants": "compare two variants on quality, feedback, cost and latency",
    "drift": "drift references: save one from recorded traffic",
}


def _delegate(name: str, rest: list[str]) -> int:
    if name == "alerts":
        from collector.alerting.cli import alerts_main

        return alerts_main(rest)
    if name == "health":
        from collector.alerting.health import health_main

        return health_main(rest)
    if name == "variants":
        from collector.quality.variants import variants_main

        return variants_main(rest)
    from collector.drift.cli import drift_main

    return drift_main(rest)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``otel-llm`` console script."""
    # The drift statistics run many small matrix products: one BLAS thread is faster for them and
    # keeps the collector from competing with its own gRPC threads. Set before numpy is imported.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] and arguments[0] in _DELEGATED_HELP:
        try:
            return _delegate(arguments[0], arguments[1:])
        except ImportError as exc:
            return _missing_extra(exc)
    args = _build_parser().parse_args(arguments)
    if args.command == "version":
        print(f"otel-llm {_version()}")
        return 0
    try:
        if args.command == "validate-config":
            return _validate(args.file)
        if args.command == "collector":
            from collector.runner import run_collector

            return run_collector(args.config, workers=args.workers)
        if args.command == "demo":
            from collector.demo import run_demo

            return run_demo(
                args.config, duration_s=args.duration, rate=args.rate, prometheus=not args.no_prometheus
            )
    except ImportError as exc:
        if exc.name and exc.name.split(".")[0] in {
            "grpc",
            "yaml",
            "pydantic",
            "numpy",
            "scipy",
            "google",
            "genai_prices",
            "prometheus_client",
            "cramjam",
            "openai",
        }:
            return _missing_extra(exc)
        raise
    except KeyboardInterrupt:
        return 130
    return _fail(f"unknown command {args.command!r}")


def _validate(path: str) -> int:
    from collector.configuration import load_config
    from collector.errors import ConfigError

    try:
        config = load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_USAGE
    print(f"{path}: valid ({len(config.pipelines)} pipelines)")
    return 0


def _version() -> str:
    try:
        return metadata.version("otel-llm")
    except metadata.PackageNotFoundError:
        return "0+unknown"


if __name__ == "__main__":
    raise SystemExit(main())
