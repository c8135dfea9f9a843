"""Canary probes against a loopback server that swaps model A for model B behind the same name."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from collector.component import ComponentId, CreateSettings, Host, Kind
from collector.drift.canary import Canary, CanaryConfig, EndpointConfig, ProbeError, send_probe
from collector.drift.embedders import HashingEmbedder
from collector.extensions.canary import FACTORY, CanaryExtension
from collector.telemetry import SelfTelemetry

# Model A answers in a fixed style and, like real models at temperature 0, not always word for word
# (two phrasings, alternating); model B is another model: other wording, other format.
ANSWERS_A = {
    "capital": [
        "Canberra is the capital of Australia, chosen as a compromise between Sydney and Melbourne.",
        "The capital of Australia is Canberra, chosen as a compromise between Sydney and Melbourne.",
    ],
    "primes": ["2, 3, 5, 7, 11, 13, 17, 19", "2, 3, 5, 7, 11, 13, 17, 19"],
    "french": ["La réunion est déplacée à jeudi après-midi.", "La réunion est reportée à jeudi après-midi."],
    "multiply": ["391", "391"],
}
ANSWERS_B = {
    "capital": ["Australia's capital city: Canberra. It was purpose-built after a federal rivalry dispute."],
    "primes": [
        "Here are the first eight primes: two, three, five, seven, eleven, thirteen, seventeen, nineteen."
    ],
    "french": ["Traduction : « Nous avons décalé la rencontre au jeudi, dans l'après-midi. »"],
    "multiply": ["17 × 23 equals 391, since 17 × 20 = 340 and 17 × 3 = 51."],
}
PROMPTS = {
    "capital": "In one sentence, what is the capital of Australia and why was it chosen?",
    "primes": "List the first eight prime numbers, comma separated, nothing else.",
    "french": "Translate to French: 'The meeting is moved to Thursday afternoon.'",
    "multiply": "What is 17 multiplied by 23? Answer with the number only.",
}
TOPIC_OF = {prompt: key for key, prompt in PROMPTS.items()}


class StandIn:
    """OpenAI chat and Anthropic Messages on one loopback port; ``served`` says which model answers."""

    def __init__(self) -> None:
        self.served = "A"
        self.calls = 0
        self.bodies: list[dict[str, Any]] = []
        self.seen: dict[tuple[str, str], int] = {}
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet test output
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stand_in.bodies.append(body)
                stand_in.calls += 1
                table = ANSWERS_A if stand_in.served == "A" else ANSWERS_B
                topic = TOPIC_OF[body["messages"][0]["content"]]
                # Each endpoint alternates its phrasings run by run.
                count = stand_in.seen[(self.path, topic)] = stand_in.seen.get((self.path, topic), -1) + 1
                text = table[topic][count % len(table[topic])]
                if self.path == "/v1/chat/completions":
                    answer: dict[str, Any] = {
                        "model": body["model"] + ("-2024" if stand_in.served == "A" else "-2025"),
                        "system_fingerprint": f"fp_{stand_in.served}",
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
                        "usage": {"prompt_tokens": 20, "completion_tokens": 10},
                    }
                elif self.path == "/v1/messages":
                    answer = {
                        "model": body["model"],
                        "content": [{"type": "text", "text": text}],
                        "usage": {"input_tokens": 20, "output_tokens": 10},
                    }
                else:
                    self.send_error(404)
                    return
                payload = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> StandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    with StandIn() as server:
        yield server


def _config(url: str, **overrides: Any) -> CanaryConfig:
    raw: dict[str, Any] = {
        "prompts": list(PROMPTS.values()),
        "baseline_runs": 4,
        "endpoints": [
            {
                "name": "gpt",
                "api": "openai",
                "url": url + "/v1",
                "model": "gpt-x",
                "input_usd_per_mtok": 1.0,
                "output_usd_per_mtok": 4.0,
            },
            {"name": "claude", "api": "anthropic", "url": url, "model": "claude-x", "api_key": "k"},
        ],
        **overrides,
    }
    return CanaryConfig.model_validate(raw)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("endpoint", ["gpt", "claude"])
def test_swapped_model_behind_the_same_name_is_flagged(stand_in: StandIn, endpoint: str) -> None:
    clock = Clock()
    canary = Canary(_config(stand_in.url), HashingEmbedder(256), clock=clock)
    phases = []
    for _ in range(4):
        phases.append(next(r for r in canary.run_once() if r.endpoint == endpoint).phase)
        clock.now += 3600
    assert phases == ["baseline"] * 4
    # Same model, its usual variation: no change.
    for _ in range(3):
        report = next(r for r in canary.run_once() if r.endpoint == endpoint)
        clock.now += 3600
        assert report.phase == "compared" and not report.changed, report
        assert report.spreads[PROMPTS["capital"]] > 0  # the baseline saw both phrasings
    stand_in.served = "B"
    report = next(r for r in canary.run_once() if r.endpoint == endpoint)
    assert report.changed
    assert report.moved_fraction == 1.0
    if endpoint == "gpt":
        assert report.fingerprint_changed and report.fingerprints == ["fp_B"]
        assert report.models == ["gpt-x-2025"]


def test_probes_use_temperature_zero_and_seed_where_supported(stand_in: StandIn) -> None:
    config = _config(stand_in.url)
    openai_answer = send_probe(config.endpoints[0], PROMPTS["primes"])
    anthropic_answer = send_probe(config.endpoints[1], PROMPTS["primes"])
    assert openai_answer.text == anthropic_answer.text == "2, 3, 5, 7, 11, 13, 17, 19"
    assert openai_answer.system_fingerprint == "fp_A" and anthropic_answer.system_fingerprint == ""
    assert (openai_answer.input_tokens, openai_answer.output_tokens) == (20, 10)
    first, second = stand_in.bodies
    assert first["temperature"] == 0 and first["seed"] == 1234 and first["max_tokens"] == 128
    assert second["temperature"] == 0 and "seed" not in second


def test_probe_errors_are_reported_not_raised() -> None:
    endpoint = EndpointConfig(name="down", url="http://127.0.0.1:9/v1", model="m", timeout=1.0)
    with pytest.raises(ProbeError):
        send_probe(endpoint, "hi")
    canary = Canary(CanaryConfig(endpoints=[endpoint], prompts=["hi"]), HashingEmbedder(64))
    (report,) = canary.run_once()
    assert report.errors == 1 and report.phase == "incomplete"
    assert (report.answered, report.failed) == (0, 1)


def test_spend_caps_count_and_budget(stand_in: StandIn) -> None:
    clock = Clock()
    # Four prompts per run; five probes an hour leaves the second run of the hour short.
    canary = Canary(
        _config(stand_in.url, max_probes_per_hour=5, endpoints=[_config(stand_in.url).endpoints[0]]),
        HashingEmbedder(64),
        clock=clock,
    )
    assert canary.run_once()[0].skipped == 0
    short = canary.run_once()[0]
    assert (short.skipped, short.answered, short.skip_reasons) == (3, 1, {"probes_per_hour": 3})
    assert canary.limiter.skipped["probes_per_hour"] == 3
    clock.now += 3600
    assert canary.run_once()[0].skipped == 0

    # Budget: each probe costs 20 × 1 + 10 × 4 = 60 micro-USD; the estimate (128 output tokens) is larger.
    budget = Canary(
        _config(stand_in.url, budget_usd_per_day=0.0012, endpoints=[_config(stand_in.url).endpoints[0]]),
        HashingEmbedder(64),
        clock=clock,
    )
    reports = [budget.run_once()[0] for _ in range(5)]
    spent = budget.limiter.spent_today()
    assert spent <= 0.0012
    assert sum(r.skipped for r in reports) > 0 and budget.limiter.skipped["budget"] > 0
    assert sum(r.skip_reasons.get("budget", 0) for r in reports) == budget.limiter.skipped["budget"]
    assert sum(r.cost_usd for r in reports) == pytest.approx(spent)


def test_extension_exports_and_logs(stand_in: StandIn, caplog: pytest.LogCaptureFixture) -> None:
    assert FACTORY.type_name == "canary"
    settings = CreateSettings(
        id=ComponentId("canary"),
        kind=Kind.EXTENSION,
        logger=logging.getLogger("canary.test"),
        telemetry=SelfTelemetry(),
    )
    extension = CanaryExtension(_config(stand_in.url, baseline_runs=1), settings)
    extension.shutdown(1.0)  # before start: safe
    host = Host(telemetry=SelfTelemetry())
    extension._bind_store(host)
    extension.run_once()
    stand_in.served = "B"
    with caplog.at_level(logging.WARNING, logger="canary.test"):
        extension.run_once()
    assert [r.getMessage() for r in caplog.records].count("canary change detected") == 2
    metrics = pytest.importorskip("collector.metrics")
    snapshot = {s.name: s for s in metrics.shared_store(host).snapshot()}
    states = {
        dict(p.attributes)["gen_ai.request.model"]: p.value for p in snapshot["otel_llm.drift.state"].points
    }
    assert states == {"gpt-x": 1.0, "claude-x": 1.0}
    # The series carry the endpoint's name, so two endpoints serving one model stay apart.
    assert {p.attributes for p in snapshot["otel_llm.drift.score"].points} == {
        (
            ("gen_ai.request.model", "gpt-x"),
            ("otel_llm.drift.signal", "canary"),
            ("otel_llm.canary.endpoint", "gpt"),
        ),
        (
            ("gen_ai.request.model", "claude-x"),
            ("otel_llm.drift.signal", "canary"),
            ("otel_llm.canary.endpoint", "claude"),
        ),
    }

    def counts(name: str) -> dict[tuple[tuple[str, object], ...], float]:
        return {p.attributes: p.value for p in snapshot[name].points}

    # Two runs of four prompts per endpoint, all answered; only gpt has prices: 8 × (20 × 1 + 10 × 4) / 1e6.
    assert counts("otel_llm.canary.probes") == {
        (("otel_llm.canary.endpoint", "gpt"), ("otel_llm.canary.probe.outcome", "answered")): 8.0,
        (("otel_llm.canary.endpoint", "claude"), ("otel_llm.canary.probe.outcome", "answered")): 8.0,
    }
    cost = counts("otel_llm.canary.cost")
    assert cost[(("otel_llm.canary.endpoint", "gpt"),)] == pytest.approx(8 * 60e-6)
    assert cost[(("otel_llm.canary.endpoint", "claude"),)] == 0.0
    assert "otel_llm.canary.skipped" not in snapshot  # nothing skipped: no series


def test_extension_counts_failed_and_skipped_probes(stand_in: StandIn) -> None:
    metrics = pytest.importorskip("collector.metrics")
    settings = CreateSettings(
        id=ComponentId("canary"),
        kind=Kind.EXTENSION,
        logger=logging.getLogger("canary.test"),
        telemetry=SelfTelemetry(),
    )
    down = {"name": "down", "url": "http://127.0.0.1:9/v1", "model": "m", "timeout": 1.0}
    config = _config(
        stand_in.url, max_probes_per_hour=6, endpoints=[_config(stand_in.url).endpoints[0], down]
    )
    extension = CanaryExtension(config, settings)
    host = Host(telemetry=SelfTelemetry())
    extension._bind_store(host)
    extension.run_once()  # gpt: 4 answered; down: 2 sent and failed, then the hourly cap skips 2
    snapshot = {s.name: s for s in metrics.shared_store(host).snapshot()}
    assert {p.attributes: p.value for p in snapshot["otel_llm.canary.probes"].points} == {
        (("otel_llm.canary.endpoint", "gpt"), ("otel_llm.canary.probe.outcome", "answered")): 4.0,
        (("otel_llm.canary.endpoint", "down"), ("otel_llm.canary.probe.outcome", "failed")): 2.0,
    }
    assert {p.attributes: p.value for p in snapshot["otel_llm.canary.skipped"].points} == {
        (("otel_llm.canary.endpoint", "down"), ("otel_llm.canary.skip.reason", "probes_per_hour")): 2.0
    }
    assert {
        dict(p.attributes)["otel_llm.canary.endpoint"] for p in snapshot["otel_llm.canary.cost"].points
    } == {"gpt"}


def test_duplicate_endpoint_names_are_a_config_problem() -> None:
    endpoint = {"name": "a", "url": "http://x", "model": "m"}
    assert CanaryConfig.model_validate({"endpoints": [endpoint, endpoint]}).problems() == [
        ("endpoints", "expected unique names, got a more than once")
    ]


def test_baselines_survive_a_restart(stand_in: StandIn, tmp_path: Path) -> None:
    config = _config(stand_in.url, baseline_runs=2, directory=str(tmp_path))
    first = Canary(config, HashingEmbedder(256))
    assert [r.phase for r in first.run_once()] == ["baseline", "baseline"]
    assert [r.phase for r in first.run_once()] == ["baseline", "baseline"]
    assert len(list(tmp_path.glob("canary-*.json"))) == 2

    stand_in.served = "B"  # the model changed while the collector was down
    restarted = Canary(config, HashingEmbedder(256))
    reports = restarted.run_once()
    assert [r.phase for r in reports] == ["compared", "compared"]
    assert all(r.changed for r in reports)

    # Other prompts (or another embedder) make an old baseline meaningless: it is ignored.
    other = Canary(
        _config(
            stand_in.url,
            prompts=["List the first eight prime numbers, comma separated, nothing else."],
            directory=str(tmp_path),
        ),
        HashingEmbedder(256),
    )
    assert [r.phase for r in other.run_once()] == ["baseline", "baseline"]
    restarted.reset_baseline("gpt")
    assert len(list(tmp_path.glob("canary-*.json"))) == 1


def test_extension_scheduler_runs_at_start_and_stops(stand_in: StandIn) -> None:
    settings = CreateSettings(
        id=ComponentId("canary"),
        kind=Kind.EXTENSION,
        logger=logging.getLogger("canary.test"),
        telemetry=SelfTelemetry(),
    )
    extension = CanaryExtension(_config(stand_in.url, interval="1h"), settings)
    extension.start(Host(telemetry=SelfTelemetry()))
    try:
        for _ in range(500):
            if extension.reports:
                break
            time.sleep(0.01)
        assert [r.phase for r in extension.reports] == ["baseline", "baseline"]
    finally:
        extension.shutdown(2.0)
    assert extension._thread is None
