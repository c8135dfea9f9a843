"""The drift processor end to end: references, windows, events, export, persistence, bounded memory."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from google.protobuf import json_format
from scipy import stats

from collector.component import ComponentId, CreateSettings, Host, Kind
from collector.drift.embedders import EmbeddingError
from collector.drift.features import Signal
from collector.drift.references import ReferenceStore, save_reference, save_reference_from_config
from collector.processors.drift import FACTORY, DriftProcessor, DriftProcessorConfig
from collector.telemetry import SelfTelemetry
from otel_llm.conventions import attributes as attrs
from otel_llm.conventions import metrics as m
from tests.collector.drift._helpers import SpanSpec, batch, prompts, request

_LOGGER = "otel_llm.collector.processors.drift.test"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def _config(**overrides: Any) -> DriftProcessorConfig:
    base: dict[str, Any] = {
        "reference": {"size": 120, "min_size": 20},
        "window": {"size": 60, "min_size": 20},
        "embedding": {"max_per_minute": 100_000, "queue_size": 100_000, "embedder": {"dimensions": 256}},
        "alpha": 0.01,
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return DriftProcessorConfig.model_validate(base)


def _processor(config: DriftProcessorConfig, clock: FakeClock | None = None) -> DriftProcessor:
    settings = CreateSettings(
        id=ComponentId("drift"),
        kind=Kind.PROCESSOR,
        logger=logging.getLogger(_LOGGER),
        telemetry=SelfTelemetry(),
    )
    return DriftProcessor(config, settings, clock=clock or FakeClock())


def _bound(config: DriftProcessorConfig, clock: FakeClock | None = None) -> tuple[DriftProcessor, Any]:
    """A processor writing into a fresh host's derived-metric store, and that store."""
    metrics = pytest.importorskip("collector.metrics")
    host = Host(telemetry=SelfTelemetry())
    processor = _processor(config, clock)
    processor._bind_store(host)
    return processor, metrics.shared_store(host)


def _points(store: Any, name: str) -> dict[tuple[tuple[str, ...], tuple[tuple[str, object], ...]], float]:
    """(resource attribute values, point attributes) -> value of every series of metric ``name``."""
    found: dict[tuple[tuple[str, ...], tuple[tuple[str, object], ...]], float] = {}
    for snap in store.snapshot():
        if snap.name == name:
            for point in snap.points:
                resource = tuple(value for _, value in store.resource_attributes(point.resource))
                found[(resource, point.attributes)] = point.value
    return found


def _skipped(store: Any) -> dict[object, float]:
    return {
        dict(attributes)[attrs.OTEL_LLM_DRIFT_SKIP_REASON]: value
        for (_, attributes), value in _points(store, m.OTEL_LLM_DRIFT_SKIPPED).items()
    }


def _feed(processor: DriftProcessor, specs: list[SpanSpec], chunk: int = 20) -> None:
    for start in range(0, len(specs), chunk):
        assert processor.process(batch(specs[start : start + chunk])) is not None
        processor.run_pending()


def _state(processor: DriftProcessor, signal: Signal, **labels: str) -> float | None:
    wanted = {"service.name": "chat-api", "gen_ai.request.model": "gpt-4o-mini", **labels}
    for (name, key), value in processor.gauges.items():
        pairs = dict(key)
        if (
            name == m.OTEL_LLM_DRIFT_STATE
            and pairs.get("otel_llm.drift.signal") == signal.value
            and all(pairs.get(k) == v for k, v in wanted.items())
        ):
            return value
    return None


def test_factory_and_defaults() -> None:
    assert FACTORY.type_name == "drift"
    config = DriftProcessorConfig()
    assert config.group_by == ["service.name", "gen_ai.request.model"]
    assert config.alpha == 0.01 and config.consecutive == 2
    assert config.reference.mode == "first_n" and config.window.step is None
    assert "answer_embedding" not in config.signals
    assert config.problems() == []


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (
            {"window": {"size": 50, "min_size": 60}},
            ("window::min_size", "expected at most window::size (50)"),
        ),
        ({"window": {"size": 50, "step": 60}}, ("window::step", "expected at most window::size (50)")),
        ({"reference": {"mode": "file"}}, ("reference::directory", "required when reference::mode is file")),
        (
            {"reference": {"mode": "period", "size": 50, "min_size": 60}},
            ("reference::min_size", "expected at most reference::size (50)"),
        ),
        (
            {"reference": {"size": 30}, "consecutive": 4},
            ("reference::size", "expected at least 40: each of the 4 reference folds needs 10 values"),
        ),
        ({"signals": ["latency", "latency"]}, ("signals", "expected each signal once")),
        (
            {"permutations": 19, "alpha": 0.001, "consecutive": 1},
            ("permutations", "expected at least 6999 to reach the per-window level 0.000143, got 19"),
        ),
    ],
    ids=[
        "min-size",
        "step",
        "file-needs-directory",
        "period-min-size",
        "reference-folds",
        "duplicate-signal",
        "too-few-permutations",
    ],
)
def test_config_problems(raw: dict[str, Any], problem: tuple[str, str]) -> None:
    assert problem in DriftProcessorConfig.model_validate(raw).problems()


def test_lifecycle_shutdown_before_start_and_twice() -> None:
    processor = _processor(_config())
    processor.shutdown(1.0)
    host = Host(telemetry=SelfTelemetry())
    processor.start(host)
    processor.start(host)
    processor.shutdown(1.0)
    processor.shutdown(1.0)


def test_no_drift_then_topic_shift_starts_an_event(caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(0)
    processor = _processor(_config(signals=["prompt_embedding"]))
    _feed(processor, [SpanSpec(prompt=p) for p in prompts("billing", 120 + 5 * 60, rng)])
    assert _state(processor, Signal.PROMPT_EMBEDDING) == 0.0
    with caplog.at_level(logging.INFO, logger=_LOGGER):
        _feed(processor, [SpanSpec(prompt=p) for p in prompts("cooking", 3 * 60, rng)])
    assert _state(processor, Signal.PROMPT_EMBEDDING) == 1.0
    started = [r for r in caplog.records if r.getMessage() == "drift started"]
    assert len(started) == 1
    fields = started[0].fields  # type: ignore[attr-defined]
    assert fields["signal"] == "prompt_embedding" and fields["gen_ai.request.model"] == "gpt-4o-mini"
    assert fields["p_value"] <= fields["test_alpha"]
    # k = 2: each window is tested against one of two disjoint halves of the 120-value reference.
    assert fields["reference_size"] == 60 and fields["window_size"] == 60


def test_statistics_drift_without_content() -> None:
    rng = np.random.default_rng(1)
    processor = _processor(
        _config(signals=["output_tokens", "finish_reason", "latency", "error", "tool_call"])
    )

    def spans(tokens: float, reasons: list[str], weights: list[float], count: int) -> list[SpanSpec]:
        return [
            SpanSpec(
                prompt=None,
                output_tokens=int(rng.poisson(tokens)),
                finish_reason=str(rng.choice(reasons, p=weights)),
                duration_s=float(rng.lognormal(-1, 0.3)),
            )
            for _ in range(count)
        ]

    _feed(processor, spans(50, ["stop", "length"], [0.9, 0.1], 120 + 3 * 60))
    assert _state(processor, Signal.OUTPUT_TOKENS) == 0.0
    assert _state(processor, Signal.FINISH_REASON) == 0.0
    _feed(processor, spans(80, ["stop", "length"], [0.5, 0.5], 3 * 60))
    assert _state(processor, Signal.OUTPUT_TOKENS) == 1.0
    assert _state(processor, Signal.FINISH_REASON) == 1.0
    assert _state(processor, Signal.LATENCY) == 0.0
    assert processor.monitor.snapshot()["spans_without_content"] == 0  # prompt_embedding is off


def test_spans_without_content_are_counted() -> None:
    processor, store = _bound(_config())
    _feed(processor, [SpanSpec(prompt=None)] * 30 + [SpanSpec(prompt="hi there")] * 10)
    _feed(processor, [SpanSpec(prompt=None, service="search-api", model="gpt-4o")] * 5)
    assert processor.monitor.snapshot()["spans_without_content"] == 35
    # Exported per group: service.name as the resource, the other group_by attributes as attributes.
    assert _points(store, m.OTEL_LLM_DRIFT_SPANS_WITHOUT_CONTENT) == {
        (("chat-api",), ((attrs.GEN_AI_REQUEST_MODEL, "gpt-4o-mini"),)): 30.0,
        (("search-api",), ((attrs.GEN_AI_REQUEST_MODEL, "gpt-4o"),)): 5.0,
    }


def test_spans_without_content_past_the_embedding_budget_are_counted_too() -> None:
    # Past the budget the messages are not decoded; a span without them still counts as without content.
    processor, store = _bound(_config(embedding={"max_per_minute": 5}))
    processor.process(batch([SpanSpec(prompt=f"q{i}") for i in range(10)] + [SpanSpec(prompt=None)] * 4))
    assert processor.monitor.snapshot()["spans_without_content"] == 4
    (count,) = _points(store, m.OTEL_LLM_DRIFT_SPANS_WITHOUT_CONTENT).values()
    assert count == 4.0
    assert _skipped(store) == {"rate_limited": 5.0}


def test_embedding_rate_limit_skips_and_counts() -> None:
    clock = FakeClock()
    processor, store = _bound(_config(embedding={"max_per_minute": 50}), clock)
    processor.process(batch([SpanSpec(prompt=f"question {i}") for i in range(100)]))
    assert processor.monitor.snapshot()["skipped"] == {"rate_limited": 50}
    assert _skipped(store) == {"rate_limited": 50.0}
    assert processor.run_pending() == 50
    clock.now += 30.0  # half a minute refills 25 prompts
    processor.process(batch([SpanSpec(prompt=f"question {i}") for i in range(100)]))
    assert processor.monitor.snapshot()["skipped"] == {"rate_limited": 125}
    assert _skipped(store) == {"rate_limited": 125.0}


def test_embedding_queue_bound_skips_and_counts() -> None:
    processor, store = _bound(_config(embedding={"queue_size": 30}))
    processor.process(batch([SpanSpec(prompt=f"question {i}") for i in range(100)]))
    assert processor.monitor.snapshot()["skipped"] == {"queue_full": 70}
    assert _skipped(store) == {"queue_full": 70.0}
    assert processor.run_pending() == 30


def test_memory_is_bounded_with_many_groups() -> None:
    processor, store = _bound(_config(max_groups=10, reference={"size": 50, "min_size": 10}))
    for group in range(120):
        processor.process(batch([SpanSpec(prompt=f"prompt {i}", model=f"model-{group}") for i in range(40)]))
        processor.run_pending()
    snapshot = processor.monitor.snapshot()
    assert snapshot["groups"] == 10
    assert snapshot["groups_evicted"] == 110
    signals = len(processor.config.signals)
    assert snapshot["stored_values"] <= 10 * signals * (50 + 60)
    models = {dict(key).get("gen_ai.request.model") for _, key in processor.gauges}
    assert len(models) <= 10
    assert _points(store, m.OTEL_LLM_DRIFT_GROUPS_EVICTED) == {((), ()): 110.0}


def test_references_persist_and_reload(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    config = _config(reference={"directory": str(tmp_path)}, signals=["prompt_embedding", "input_tokens"])
    first = _processor(config)
    _feed(
        first, [SpanSpec(prompt=p, input_tokens=int(rng.poisson(100))) for p in prompts("travel", 150, rng)]
    )
    first.shutdown(1.0)
    files = sorted(p.name.split(".")[1] for p in tmp_path.glob("*.npz"))
    assert files == ["input_tokens", "prompt_embedding"]

    second = _processor(config)
    # No reference phase after a restart: the first window is already tested.
    _feed(
        second, [SpanSpec(prompt=p, input_tokens=int(rng.poisson(100))) for p in prompts("travel", 60, rng)]
    )
    assert second.monitor.snapshot()["references_loaded"] == 2
    assert _state(second, Signal.PROMPT_EMBEDDING) == 0.0

    # Another embedder's vectors are not comparable: that reference is ignored.
    other = _config(
        reference={"directory": str(tmp_path)},
        embedding={"embedder": {"dimensions": 128}},
        signals=["prompt_embedding"],
    )
    third = _processor(other)
    _feed(third, [SpanSpec(prompt="hello")])
    assert third.monitor.snapshot()["references_loaded"] == 0


def test_time_closes_quiet_windows_and_period_references() -> None:
    clock = FakeClock()
    config = _config(
        signals=["input_tokens"],
        reference={"mode": "period", "period": "1h", "min_size": 20},
        window={"size": 1000, "min_size": 20, "max_age": "10m"},
    )
    processor = _processor(config, clock)
    rng = np.random.default_rng(3)
    for _ in range(30):
        processor.process(batch([SpanSpec(input_tokens=int(rng.poisson(100)))]))
        clock.now += 60.0
    processor.tick()
    assert processor.monitor.snapshot()["decisions"] == 0  # still inside the reference period
    clock.now += 3600.0
    processor.tick()
    for _ in range(25):
        processor.process(batch([SpanSpec(input_tokens=int(rng.poisson(100)))]))
        clock.now += 10.0
    processor.tick()
    assert processor.monitor.snapshot()["decisions"] == 0  # 250 s < max_age
    clock.now += 600.0
    processor.tick()
    assert processor.monitor.snapshot()["decisions"] == 1
    assert _state(processor, Signal.INPUT_TOKENS) == 0.0


def test_sliding_windows_decide_every_step() -> None:
    processor = _processor(_config(signals=["input_tokens"], window={"size": 60, "step": 20, "max_age": 0}))
    rng = np.random.default_rng(4)
    _feed(processor, [SpanSpec(input_tokens=int(rng.poisson(100))) for _ in range(120 + 200)])
    # Windows are decided from min_size (20) on, then every 20 values: 200 / 20.
    assert processor.monitor.snapshot()["decisions"] == 10
    assert processor.monitor.rule.test_alpha == pytest.approx(0.01)


def test_worker_thread_embeds_off_the_ingestion_path() -> None:
    processor = _processor(_config(signals=["prompt_embedding"], reference={"size": 20, "min_size": 10}))
    processor.start(Host(telemetry=SelfTelemetry()))
    try:
        processor.process(batch([SpanSpec(prompt=f"question number {i}") for i in range(20)]))
        for _ in range(500):
            if list(processor.monitor.references()):
                break
            time.sleep(0.01)
        assert list(processor.monitor.references())
    finally:
        processor.shutdown(2.0)


def test_save_reference_from_recorded_traces_for_file_mode(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    traces = tmp_path / "traces.jsonl"
    lines = [
        json_format.MessageToJson(
            request([SpanSpec(prompt=p) for p in prompts("programming", 40, rng)]), indent=None
        )
        for _ in range(4)
    ]
    traces.write_text("\n".join(lines) + "\n", encoding="utf-8")
    references = tmp_path / "refs"
    config = _config(
        reference={"mode": "file", "directory": str(references)}, signals=["prompt_embedding", "input_tokens"]
    )
    written = save_reference([traces], config)
    assert len(written) == 2
    loaded = ReferenceStore(references).load(
        {"service.name": "chat-api", "gen_ai.request.model": "gpt-4o-mini"},
        Signal.PROMPT_EMBEDDING,
        "hashing:crc32:d256:n2",
    )
    assert loaded is not None and loaded.values.shape == (120, 256)

    processor = _processor(config)
    _feed(processor, [SpanSpec(prompt=p) for p in prompts("cooking", 120, rng)])
    assert _state(processor, Signal.PROMPT_EMBEDDING) == 1.0
    # A group without a saved reference is never tested in file mode.
    _feed(processor, [SpanSpec(prompt="hello", model="other-model")] * 70)
    assert _state(processor, Signal.PROMPT_EMBEDDING, **{"gen_ai.request.model": "other-model"}) is None

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"resourceSpans": "nope"}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.jsonl:1"):
        save_reference([bad], config)


def test_exports_into_the_shared_metric_store() -> None:
    metrics = pytest.importorskip("collector.metrics")
    processor, store = _bound(_config(signals=["input_tokens", "finish_reason"]))
    rng = np.random.default_rng(6)
    _feed(processor, [SpanSpec(input_tokens=int(rng.poisson(100))) for _ in range(180)])
    names = {snap.name: snap for snap in store.snapshot()}
    gauges = {m.OTEL_LLM_DRIFT_SCORE, m.OTEL_LLM_DRIFT_P_VALUE, m.OTEL_LLM_DRIFT_STATE, m.OTEL_LLM_DRIFT_PSI}
    assert gauges <= set(names)
    expected = {"gen_ai.request.model": "gpt-4o-mini", "otel_llm.drift.signal": "input_tokens"}
    for name in gauges:
        for point in names[name].points:
            attributes = dict(point.attributes)
            if attributes["otel_llm.drift.signal"] != "input_tokens":
                continue
            # Score and state share their instrument with the canary, whose endpoint label is empty here.
            shared = name in (m.OTEL_LLM_DRIFT_SCORE, m.OTEL_LLM_DRIFT_STATE)
            assert attributes == ({**expected, "otel_llm.canary.endpoint": ""} if shared else expected)
            assert store.resource_attributes(point.resource) == (("service.name", "chat-api"),)
    # The empty endpoint label never reaches an exporter.
    text = metrics.render_text(store, store.snapshot())
    assert 'otel_llm_drift_signal="input_tokens"' in text and "canary_endpoint" not in text
    # PSI for numbers and categories, next to the processor's own copy of the exported values.
    psi = {dict(p.attributes)["otel_llm.drift.signal"]: p.value for p in names[m.OTEL_LLM_DRIFT_PSI].points}
    assert set(psi) == {"input_tokens", "finish_reason"} and all(v >= 0 for v in psi.values())
    assert {
        dict(key)["otel_llm.drift.signal"] for name, key in processor.gauges if name == m.OTEL_LLM_DRIFT_PSI
    } == {
        "input_tokens",
        "finish_reason",
    }


def test_shares_score_and_state_with_the_canary_extension(caplog: pytest.LogCaptureFixture) -> None:
    """Either may create the shared instruments first; with the default group_by both export."""
    metrics = pytest.importorskip("collector.metrics")
    from collector.drift.canary import CanaryConfig
    from collector.extensions.canary import CanaryExtension

    host = Host(telemetry=SelfTelemetry())
    canary_settings = CreateSettings(
        id=ComponentId("canary"),
        kind=Kind.EXTENSION,
        logger=logging.getLogger(_LOGGER),
        telemetry=SelfTelemetry(),
    )
    with caplog.at_level(logging.WARNING, logger=_LOGGER):
        CanaryExtension(CanaryConfig(), canary_settings)._bind_store(host)
        processor = _processor(_config(signals=["input_tokens"]))
        processor._bind_store(host)
    assert caplog.records == []
    rng = np.random.default_rng(6)
    _feed(processor, [SpanSpec(input_tokens=int(rng.poisson(100))) for _ in range(180)])
    store = metrics.shared_store(host)
    assert _points(store, m.OTEL_LLM_DRIFT_STATE)


def test_a_second_group_by_keeps_its_values_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    host = Host(telemetry=SelfTelemetry())
    _processor(_config(signals=["input_tokens"]))._bind_store(host)
    other = _processor(_config(signals=["input_tokens"], group_by=["service.name", "gen_ai.provider.name"]))
    with caplog.at_level(logging.WARNING, logger=_LOGGER):
        other._bind_store(host)
    assert {r.getMessage() for r in caplog.records} == {
        "drift metrics not exported: label names differ from an existing instrument"
    }
    assert other._store_gauges == {} and other._without_content is None
    assert other._skipped is not None  # fixed labels: still shared
    rng = np.random.default_rng(6)
    _feed(other, [SpanSpec(input_tokens=int(rng.poisson(100)), prompt=None) for _ in range(180)])
    states = {key: value for (name, key), value in other.gauges.items() if name == m.OTEL_LLM_DRIFT_STATE}
    assert states == {
        (
            ("gen_ai.provider.name", "openai"),
            ("otel_llm.drift.signal", "input_tokens"),
            ("service.name", "chat-api"),
        ): 0.0
    }


def test_save_reference_from_a_collector_config(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    traces = tmp_path / "traces.jsonl"
    traces.write_text(
        json_format.MessageToJson(
            request([SpanSpec(prompt=p) for p in prompts("travel", 30, rng)]), indent=None
        )
        + "\n",
        encoding="utf-8",
    )
    config = tmp_path / "collector.yaml"
    config.write_text(
        f"""
receivers: {{otlp: {{}}}}
processors:
  drift/prompts: {{signals: [prompt_embedding], reference: {{mode: file, directory: {tmp_path / "refs"}}}}}
  cost: {{}}
exporters: {{debug: {{}}}}
service:
  pipelines:
    traces: {{receivers: [otlp], processors: [drift/prompts, cost], exporters: [debug]}}
""",
        encoding="utf-8",
    )
    written = save_reference_from_config(config, [traces], processor="drift/prompts")
    assert [p.parent.name for p in written] == ["refs"]
    with pytest.raises(ValueError, match="processors::drift is not defined"):
        save_reference_from_config(config, [traces])
    with pytest.raises(ValueError, match="is a cost processor, expected drift"):
        save_reference_from_config(config, [traces], processor="cost")


def test_processor_false_alarms_per_window_and_events_per_decision(monkeypatch: pytest.MonkeyPatch) -> None:
    """The wiring of the rule: levels, folds and k, over 10 groups × 30 no-drift windows."""
    config = _config(
        signals=["latency"],
        alpha=0.2,
        alpha_scope="signal",
        reference={"size": 100, "min_size": 20},
        window={"size": 30, "min_size": 10},
    )
    processor = _processor(config)
    outcomes: list[Any] = []
    publish = processor._publish
    monkeypatch.setattr(processor, "_publish", lambda outcome: (outcomes.append(outcome), publish(outcome)))
    rng = np.random.default_rng(8)
    for _ in range(100 + 30 * 30):
        specs = [
            SpanSpec(prompt=None, model=f"m{g}", duration_s=float(rng.lognormal(0, 0.5))) for g in range(10)
        ]
        processor.process(batch(specs))
        processor.run_pending()
    level = processor.monitor.rule.test_alpha
    assert level == pytest.approx(0.2**0.5)
    assert len(outcomes) == 300
    assert {o.reference_size for o in outcomes} == {50}  # two folds of the 100-value reference
    alarms = sum(o.result.drifted for o in outcomes)
    events = sum(o.transition.value == "started" for o in outcomes)
    # Alarms per window at the level (two-sided 0.001 band), events per decision at most alpha.
    assert stats.binom.ppf(0.0005, 300, level) <= alarms <= stats.binom.ppf(0.9995, 300, level)
    assert float(stats.binomtest(events, 300, 0.2, alternative="greater").pvalue) > 0.001


class _FailingEmbedder:
    identity = "failing"

    def embed(self, texts: Any) -> Any:
        raise EmbeddingError("endpoint down")


def test_embedding_failures_are_counted_and_logged_once_per_batch(caplog: pytest.LogCaptureFixture) -> None:
    settings = CreateSettings(
        id=ComponentId("drift"),
        kind=Kind.PROCESSOR,
        logger=logging.getLogger(_LOGGER),
        telemetry=SelfTelemetry(),
    )
    processor = DriftProcessor(
        _config(embedding={"batch_size": 10}), settings, embedder=_FailingEmbedder(), clock=FakeClock()
    )
    processor.process(batch([SpanSpec(prompt=f"q{i}") for i in range(25)]))
    with caplog.at_level(logging.WARNING, logger=_LOGGER):
        processor.run_pending()
    assert processor.monitor.snapshot()["skipped"] == {"embed_error": 25}
    assert [r.getMessage() for r in caplog.records] == ["drift embedding failed"] * 3
    metrics = pytest.importorskip("collector.metrics")
    host = Host(telemetry=SelfTelemetry())
    processor._bind_store(host)
    processor.process(batch([SpanSpec(prompt=f"q{i}") for i in range(5)]))
    processor.run_pending()
    assert _skipped(metrics.shared_store(host)) == {"embed_error": 5.0}


def test_answer_embedding_signal() -> None:
    rng = np.random.default_rng(9)
    processor = _processor(_config(signals=["answer_embedding"]))
    _feed(processor, [SpanSpec(prompt=None, answer=p) for p in prompts("billing", 120 + 60, rng)])
    assert _state(processor, Signal.ANSWER_EMBEDDING) == 0.0
    assert processor.monitor.snapshot()["spans_without_content"] == 0  # counted for prompts only


def test_in_a_running_collector(run_service: Any, tmp_path: Path) -> None:
    """OTLP/HTTP in, drift state out through the shared metric store; references written on the way."""
    from tests.collector.conftest import post_traces, receiver_ports, wait_for

    service = run_service(
        f"""
receivers:
  otlp: {{protocols: {{http: {{endpoint: "127.0.0.1:0"}}}}}}
processors:
  drift:
    signals: [prompt_embedding, output_tokens]
    reference: {{size: 60, directory: "{tmp_path}"}}
    window: {{size: 30, min_size: 10}}
    embedding: {{max_per_minute: 100000}}
exporters: {{debug: {{}}}}
service:
  telemetry: {{metrics: {{enabled: false}}, logs: {{level: warning}}}}
  pipelines:
    traces: {{receivers: [otlp], processors: [drift], exporters: [debug]}}
"""
    )
    _, http_port = receiver_ports(service)
    rng = np.random.default_rng(10)

    def send(specs: list[SpanSpec]) -> None:
        post_traces(http_port, request(specs).SerializeToString(), timeout_s=10)

    for topic in ["billing"] * 4 + ["cooking"] * 3:
        send([SpanSpec(prompt=p, output_tokens=int(rng.poisson(50))) for p in prompts(topic, 30, rng)])
        time.sleep(0.05)
    processor = service.component(Kind.PROCESSOR, "drift")
    assert wait_for(lambda: _state(processor, Signal.PROMPT_EMBEDDING) == 1.0, timeout_s=20)
    store = service.host.shared["collector.metrics.store"]
    states = {
        dict(p.attributes)["otel_llm.drift.signal"]: p.value
        for s in store.snapshot()
        if s.name == m.OTEL_LLM_DRIFT_STATE
        for p in s.points
    }
    assert states["prompt_embedding"] == 1.0
    assert wait_for(lambda: len(list(tmp_path.glob("*.npz"))) == 2, timeout_s=5)


def test_a_span_that_breaks_feature_reading_is_counted_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    processor, store = _bound(_config())

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("unexpected attribute shape")

    monkeypatch.setattr("collector.drift.monitor.extract_features", broken)
    given = batch([SpanSpec()] * 3)
    assert processor.process(given) is given
    assert processor.monitor.snapshot()["skipped"] == {"bad_span": 3}
    assert _skipped(store) == {"bad_span": 3.0}
