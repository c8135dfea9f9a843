"""Per-call overhead of otel-llm next to its peers, in one run: `python bench/instrumentation/run.py`.

Method: the shared harness (`shared/bench/instrumentation_overhead/`, imported by path, not copied):
its loopback stand-in server, its driver (`run_bench.main`: fresh client process per run, order
reversed every other repetition, a baseline run before and after every configuration run, paired
overhead, runs repeated when other processes were busy) and its client (`bench_client.main`: same SDK
providers with counting exporters, same calls, CPU time per call). We only add the `otel-llm`
configuration (`client.py`) and, afterwards, the ratio table, the per-chunk measurement
(`per_chunk.py`) and the paired in-process measurement (`paired.py`: every configuration and an
SDK-only floor taking turns in one process, which gives much tighter ratios on a busy machine).

Setup (once): `--setup` creates the benchmark venv (default /tmp/bench-venv, never the project's
venv) from the harness's `requirements-openai3.txt`: openai 3.54 on httpx2,
opentelemetry-instrumentation-genai-openai 1.3b0 (official successor of openai-v2) and
opentelemetry-instrumentation-openai 0.62.4 (OpenLLMetry). otel-llm itself is taken from this
repository through PYTHONPATH.

Example (a few minutes on the 2-core machine):

    python bench/instrumentation/run.py --setup --reps 2 --calls 300 --stream-calls 150 --warmup 50

`--paired-only` skips the fresh-process runs (about two minutes in all); `--no-paired` skips the
paired one; `--paired-rounds N` sets its number of rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _paths import HARNESS, HERE, REPO

DEFAULT_VENV = Path("/tmp/bench-venv")
PEERS = ("genai-openai", "traceloop")


def setup(venv: Path) -> None:
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "-r", str(HARNESS / "requirements-openai3.txt")],
        check=True,
    )


def client_environment() -> dict[str, str]:
    """Our environment without any instrumentation's settings, with otel-llm and the bench importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRACELOOP_", "OPENLIT_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(HERE)])
    return env


def run_client(
    python: str, config: str, content: str, port: int, args: Any, cpu: int | None = None
) -> dict[str, Any]:
    """Drop-in for the harness's `run_client`: the same, with our client script and otel-llm importable."""
    import run_bench

    cmd = [
        python,
        str(HERE / "client.py"),
        "--config",
        config,
        "--content",
        content,
        "--port",
        str(port),
        "--calls",
        str(args.calls),
        "--stream-calls",
        str(args.stream_calls),
        "--warmup",
        str(args.warmup),
    ]
    env = client_environment()
    env["OTEL_SDK_DISABLED"] = "false"
    env["PYTHONHASHSEED"] = "0"
    done = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        env=env,
        timeout=args.client_timeout,
        preexec_fn=run_bench._pinned(cpu),
    )
    if done.returncode != 0:
        raise SystemExit(f"client {config} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def per_chunk(python: str) -> dict[str, Any]:
    env = client_environment()
    done = subprocess.run(
        [python, str(HERE / "per_chunk.py")], capture_output=True, text=True, env=env, timeout=600, check=True
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def paired(python: str, rounds: int, configs: list[str] | None) -> dict[str, Any]:
    """Runs `paired.py` (its table goes to our stdout) and returns its results."""
    env = client_environment()
    done = subprocess.run(
        [
            python,
            str(HERE / "paired.py"),
            "--rounds",
            str(rounds),
            "--json",
            *(["--configs", *configs] if configs else []),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        timeout=3600,
        check=True,
    )
    lines = done.stdout.strip().splitlines()
    print("\n".join(lines[:-1]))
    return dict(json.loads(lines[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    parser.add_argument("--setup", action="store_true", help="create/refresh the benchmark venv first")
    parser.add_argument("--configs", nargs="+", default=["none", "otel-llm", *PEERS])
    parser.add_argument("--out", type=Path, default=None, help="keep the raw JSON here")
    parser.add_argument("--no-per-chunk", action="store_true")
    parser.add_argument("--no-paired", action="store_true", help="skip the paired in-process measurement")
    parser.add_argument(
        "--paired-only", action="store_true", help="only the paired measurement (and per-chunk)"
    )
    parser.add_argument("--paired-rounds", type=int, default=40)
    parser.add_argument(
        "--paired-configs", nargs="+", default=None, help="paired.py's --configs (default: its own default)"
    )
    args, harness_args = parser.parse_known_args()
    if args.setup:
        setup(args.venv)
    python = str(args.venv / "bin" / "python")
    if not Path(python).exists():
        raise SystemExit(f"{python} missing: run with --setup first")

    sys.path.insert(0, str(HARNESS))
    import run_bench

    out = args.out or Path(tempfile.mkdtemp(prefix="otel-llm-bench-")) / "results.json"
    if args.paired_only:
        data: dict[str, Any] = {"paired": paired(python, args.paired_rounds, args.paired_configs)}
        if not args.no_per_chunk:
            data["per_chunk"] = print_per_chunk(python)
        out.write_text(json.dumps(data, indent=1))
        print(f"\nraw results: {out}")
        return
    run_bench.run_client = run_client
    sys.argv = [
        "run_bench.py",
        "--python",
        python,
        "--configs",
        *args.configs,
        "--out",
        str(out),
        *harness_args,
    ]
    run_bench.main()  # prints the harness's table

    summary = json.loads(out.read_text())["summary"]
    print("\n## otel-llm against the best peer (lower is better)\n")
    print("| measure | otel-llm | best peer | ratio otel-llm / best peer |")
    print("|---|---|---|---|")
    for mode, label in (("non_streaming", "plain call"), ("streaming", "stream (20 content chunks)")):
        for key, what in (("cpu_per_call_us", "CPU"), ("mean_us", "latency")):
            field = f"{mode}.{key}.overhead"
            ours = summary["otel-llm"][field]
            peers = {
                p: summary[p][field] for p in args.configs if p not in ("none", "otel-llm") and p in summary
            }
            best = min(peers, key=lambda p: peers[p])
            ratio = ours / peers[best] if peers[best] > 0 else float("nan")
            print(
                f"| {label}, {what} overhead (us) | {ours:+,.0f} | {best} {peers[best]:+,.0f} | {ratio:.2f} |"
            )
    data = json.loads(out.read_text())
    if not args.no_per_chunk:
        data["per_chunk"] = print_per_chunk(python)
    if not args.no_paired:
        data["paired"] = paired(python, args.paired_rounds, args.paired_configs)
    out.write_text(json.dumps(data, indent=1))
    print(f"\nraw results: {out}")


def print_per_chunk(python: str) -> dict[str, Any]:
    chunk = per_chunk(python)
    print(
        f"\notel-llm per streamed chunk (CPU, slope between 20- and 200-chunk streams): "
        f"{chunk['per_chunk_us']:.2f} us; fixed per stream (span + metrics): {chunk['per_stream_fixed_us']:.0f} us,"
        f" {chunk['fixed_over_sdk_floor']:.2f} x the SDK's own cost for that span and those metric records"
        f" ({chunk['sdk_floor_us']:.0f} us)"
    )
    return chunk


if __name__ == "__main__":
    main()
