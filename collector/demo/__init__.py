"""``otel-llm demo``: the collector on a config plus instrumented LLM traffic, with a live summary.

What runs, all on loopback:

- the collector (in this process) on the given config;
- a stand-in LLM API (:mod:`collector.demo.llm_server`) speaking the OpenAI and Anthropic wire formats;
- an application: the real ``openai`` and ``anthropic`` SDKs, instrumented by
  :class:`otel_llm.LLMInstrumentor`, exporting spans over OTLP/gRPC to the collector's receiver;
- a real Prometheus scraping the collector, when the ``prometheus`` binary is installed (the README's
  first command installs it), so PromQL works from the first minute.

Every ten seconds it prints per-model requests, tokens, p95 latency and cost read back from the
collector's Prometheus endpoint: numbers the collector derived from the spans, not the demo's own.
"""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from collector.component import Kind
from collector.configuration import CollectorConfig, load_config
from collector.demo.llm_server import LlmServer
from collector.demo.summary import Summary, read_summary
from collector.errors import ComponentError, ConfigError
from collector.logs import configure_logging

__all__ = ["run_demo"]

_OPENAI_MODELS = ("gpt-4o-mini", "gpt-4o-mini", "gpt-4o")
_ANTHROPIC_MODELS = ("claude-3-5-haiku-latest", "claude-sonnet-4-20250514")
_QUESTIONS = (
    "How do I rotate the API keys of the billing service?",
    "Summarise yesterday's incident report in three bullet points.",
    "Which dashboards show the p95 latency of the checkout flow?",
    "Draft a polite reply to a customer asking for a refund.",
    "Explain the difference between a histogram and a summary in Prometheus.",
)


@dataclass
class _Endpoints:
    otlp_grpc: str
    prometheus_scrape: str


@dataclass
class _Counts:
    sent: int = 0
    failed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _find_endpoints(config: CollectorConfig) -> _Endpoints:
    grpc_endpoint = ""
    for spec in config.components[Kind.RECEIVER].values():
        if spec.id.type == "otlp":
            protocols = getattr(spec.config, "protocols", None)
            grpc = getattr(protocols, "grpc", None)
            grpc_endpoint = getattr(grpc, "endpoint", "") or grpc_endpoint
    scrape = ""
    for spec in config.components[Kind.EXPORTER].values():
        if spec.id.type == "prometheus":
            scrape = getattr(spec.config, "endpoint", "")
    if not grpc_endpoint:
        raise ConfigError([f"{config.source}: the demo needs an `otlp` receiver with a grpc protocol"])
    if not scrape:
        raise ConfigError([f"{config.source}: the demo needs a `prometheus` exporter"])
    return _Endpoints(otlp_grpc=grpc_endpoint, prometheus_scrape=scrape)


@contextmanager
def _real_prometheus(scrape_endpoint: str, wanted: bool) -> Iterator[str | None]:
    """Start Prometheus on 127.0.0.1:9090 scraping the collector every 5 s, if wanted and installed."""
    binary = shutil.which("prometheus") if wanted else None
    if binary is None:
        yield None
        return
    rules = Path(__file__).resolve().parents[2] / "config" / "prometheus" / "recording-rules.yaml"
    with tempfile.TemporaryDirectory(prefix="otel-llm-demo-prom-") as workdir:
        config = Path(workdir) / "prometheus.yml"
        rule_files = f"rule_files: ['{rules}']\n" if rules.exists() else ""
        config.write_text(
            "global: {scrape_interval: 5s, evaluation_interval: 5s}\n"
            + rule_files
            + f"scrape_configs:\n  - job_name: otel-llm\n    static_configs: [{{targets: ['{scrape_endpoint}']}}]\n"
        )
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir}/data",
                "--web.listen-address=127.0.0.1:9090",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            yield "http://127.0.0.1:9090"
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _app_traffic(
    base_url: str, otlp_endpoint: str, stop: threading.Event, rate: float, counts: _Counts
) -> Any:
    """Instrument the SDKs and send requests until ``stop``; returns the tracer provider to flush."""
    import anthropic
    import openai
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from otel_llm import LLMInstrumentor

    provider = TracerProvider(
        resource=Resource.create({"service.name": "demo-support-bot", "deployment.environment.name": "demo"})
    )
    provider.add_span_processor(
        BatchSpanProcessor(
            OTLPSpanExporter(endpoint=f"http://{otlp_endpoint}", insecure=True), schedule_delay_millis=1000
        )
    )
    LLMInstrumentor().instrument(tracer_provider=provider)
    openai_client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="demo-key", max_retries=0)
    anthropic_client = anthropic.Anthropic(base_url=base_url, api_key="demo-key", max_retries=0)
    rng = random.Random(11)

    def one_call() -> None:
        question = rng.choice(_QUESTIONS) + " " + "context " * rng.randint(0, 600)
        messages: Any = [{"role": "user", "content": question}]
        roll = rng.random()
        if roll < 0.03:
            openai_client.chat.completions.create(model="gpt-5-does-not-exist", messages=messages)
        elif roll < 0.45:
            openai_client.chat.completions.create(model=rng.choice(_OPENAI_MODELS), messages=messages)
        elif roll < 0.70:
            stream = openai_client.chat.completions.create(
                model=rng.choice(_OPENAI_MODELS),
                messages=messages,
                stream=True,
                stream_options={"include_usage": True},
            )
            for _chunk in stream:
                pass
        elif roll < 0.78:
            openai_client.embeddings.create(model="text-embedding-3-small", input=[question])
        elif roll < 0.90:
            anthropic_client.messages.create(
                model=rng.choice(_ANTHROPIC_MODELS), max_tokens=512, messages=messages
            )
        else:
            with anthropic_client.messages.stream(
                model=rng.choice(_ANTHROPIC_MODELS), max_tokens=512, messages=messages
            ) as message_stream:
                for _text in message_stream.text_stream:
                    pass

    def worker() -> None:
        interval = 4.0 / rate  # four workers share the rate
        while not stop.is_set():
            started = time.monotonic()
            try:
                one_call()
                with counts.lock:
                    counts.sent += 1
            except (openai.APIError, anthropic.APIError):
                with counts.lock:
                    counts.failed += 1
            stop.wait(max(0.0, interval - (time.monotonic() - started)))

    threads = [threading.Thread(target=worker, name=f"demo-app-{i}", daemon=True) for i in range(4)]
    for thread in threads:
        thread.start()
    return provider, threads


def _print_summary(summary: Summary, counts: _Counts, elapsed: float) -> None:
    print(
        f"\n[{elapsed:4.0f}s] app made {counts.sent} calls ({counts.failed} failed as planned); "
        "the collector derived, per model:"
    )
    print(summary.table())
    sys.stdout.flush()


def run_demo(config_path: str, duration_s: float = 60.0, rate: float = 5.0, prometheus: bool = True) -> int:
    """Run the demo; returns the exit code (0 when the collector reported numbers)."""
    from collector.service import Service

    try:
        config = load_config(config_path)
        endpoints = _find_endpoints(config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    configure_logging("warning", "text")
    service = Service(config, instance_id="demo")
    try:
        service.start()
    except ComponentError as exc:
        print(f"otel-llm: error: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    llm = LlmServer().start()
    counts = _Counts()
    scrape_url = f"http://{endpoints.prometheus_scrape}/metrics"
    got_numbers = False
    with _real_prometheus(endpoints.prometheus_scrape, prometheus) as prometheus_url:
        print(f"otel-llm demo: collector receiving OTLP on {endpoints.otlp_grpc} (gRPC)")
        print(f"  derived GenAI metrics:  {scrape_url}")
        if prometheus_url:
            print(
                f"  Prometheus (PromQL):    {prometheus_url}/graph  try: "
                "sum by (gen_ai_request_model) (rate(otel_llm_cost_usd_total[1m]))"
            )
        else:
            print("  (install the `prometheus` Debian package to also get a Prometheus UI)")
        print(f"  stand-in LLM API:       {llm.base_url}  (no real provider is called)")
        provider, threads = _app_traffic(llm.base_url, endpoints.otlp_grpc, stop, rate, counts)
        started = time.monotonic()
        next_report = started + 10
        try:
            while not stop.is_set():
                now = time.monotonic()
                if duration_s and now - started >= duration_s:
                    break
                if now >= next_report:
                    summary = read_summary(scrape_url)
                    got_numbers = got_numbers or bool(summary.rows)
                    _print_summary(summary, counts, now - started)
                    next_report = now + 10
                stop.wait(0.5)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=10)
            provider.force_flush()
            provider.shutdown()
            time.sleep(1.5)
            summary = read_summary(scrape_url)
            got_numbers = got_numbers or bool(summary.rows)
            _print_summary(summary, counts, time.monotonic() - started)
            with suppress(Exception):
                from otel_llm import LLMInstrumentor

                LLMInstrumentor().uninstrument()
            llm.stop()
            service.shutdown(10)
    if not got_numbers:
        print("otel-llm demo: the collector reported no GenAI metrics; see the log above", file=sys.stderr)
        return 1
    return 0
