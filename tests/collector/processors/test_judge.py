"""``judge`` processor against a scripted OpenAI-compatible judge on loopback.

Covers sampling (determinism, nested subsets), settle delay, retrieved context, redaction, budget
stops, request-rate limits, retries and back-off, malformed verdicts, and that ``process`` stays fast
while the judge is slow or down.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from collector.component import Host
from collector.errors import ComponentError
from collector.metrics import MetricStore, shared_store
from collector.processors.judge import FACTORY as JUDGE
from collector.processors.judge import JudgeProcessor
from collector.quality.judge import sample_point
from tests.collector.quality._judge_server import JudgeServer, Step, verdict
from tests.collector.quality._spans import batch, build, chat_span, make_host, retrieval_span, trace_id, value

PRICE = {"input_usd_per_mtok": 1.0, "output_usd_per_mtok": 2.0}  # 1000 in + 100 out = $0.0012 a call
CALL_USD = 0.0012


@pytest.fixture
def server() -> Iterator[JudgeServer]:
    judge = JudgeServer()
    yield judge
    judge.stop()


@pytest.fixture
def host() -> Host:
    return make_host()


@pytest.fixture
def judge(host: Host, server: JudgeServer) -> Iterator[Callable[..., JudgeProcessor]]:
    started: list[JudgeProcessor] = []

    def make(**overrides: Any) -> JudgeProcessor:
        config: dict[str, Any] = {
            "endpoint": server.url,
            "model": "judge-model",
            "api_key_env": "OTEL_LLM_TEST_JUDGE_KEY",
            "price": PRICE,
            "sample_rate": 1.0,
            "settle_delay": 0,
            "evaluators": [{"name": "relevance"}],
            "timeout": "500ms",
            "retry_backoff": "10ms",
            "max_retry_backoff": "50ms",
            "requests_per_minute": 0,
        }
        config.update(overrides)
        processor: JudgeProcessor = build(JUDGE, host, **config)
        started.append(processor)
        processor.start(host)
        return processor

    yield make
    for processor in started:
        processor.shutdown(2)


def wait_until(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def skipped(store: MetricStore, reason: str, evaluator: str | None = None) -> float:
    where: dict[str, object] = {"otel_llm.judge.skip.reason": reason}
    if evaluator is not None:
        where["gen_ai.evaluation.name"] = evaluator
    return value(store, "otel_llm.judge.skipped", **where)


def test_judges_and_records_score_calls_and_cost(
    host: Host, server: JudgeServer, judge: Callable[..., JudgeProcessor]
) -> None:
    server.set_script([verdict("partially_relevant", 0.5, "half")])
    processor = judge()
    processor.process(batch(chat_span(1, prompt_version="v7", model="gpt-4o"), service="shop"))
    store = shared_store(host)
    wait_until(lambda: value(store, "otel_llm.evaluation.score") == 1)
    labels = {
        "gen_ai.evaluation.name": "relevance",
        "gen_ai.evaluation.score.label": "partially_relevant",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.prompt.version": "v7",
    }
    assert value(store, "otel_llm.evaluation.score", **labels) == 1
    calls = {"gen_ai.evaluation.name": "relevance", "gen_ai.request.model": "judge-model"}
    assert value(store, "otel_llm.judge.calls", **calls) == 1
    wait_until(lambda: value(store, "otel_llm.judge.cost") > 0)
    assert value(store, "otel_llm.judge.cost") == pytest.approx(CALL_USD)
    request = server.requests[0]
    assert request["model"] == "judge-model"
    assert "What is the capital of France?" in request["messages"][1]["content"]


def test_sampling_is_deterministic_nested_and_shared(
    host: Host, server: JudgeServer, judge: Callable[..., JudgeProcessor]
) -> None:
    processor = judge(
        evaluators=[{"name": "relevance", "sample_rate": 0.3}, {"name": "toxicity", "sample_rate": 0.1}],
        concurrency=4,
    )
    traces = range(1, 201)
    processor.process(batch(*(chat_span(n, answer=f"Answer number {n}.") for n in traces)))
    expected = {rate: {n for n in traces if sample_point(trace_id(n)) < rate} for rate in (0.3, 0.1)}
    wait_until(lambda: server.count == len(expected[0.3]) + len(expected[0.1]))
    judged: dict[str, set[int]] = {"relevance": set(), "toxicity": set()}
    for request in server.requests:
        name = "relevance" if "QUESTION" in request["messages"][1]["content"] else "toxicity"
        judged[name].add(int(re.search(r"Answer number (\d+)", request["messages"][1]["content"]).group(1)))  # type: ignore[union-attr]
    assert judged["relevance"] == expected[0.3] and judged["toxicity"] == expected[0.1]
    assert judged["toxicity"] <= judged["relevance"]
    store = shared_store(host)
    assert skipped(store, "sampled_out", "relevance") == 200 - len(expected[0.3])
    assert skipped(store, "sampled_out", "toxicity") == 200 - len(expected[0.1])


def test_settle_delay_waits_for_retrieval_spans_of_the_trace(
    server: JudgeServer, judge: Callable[..., JudgeProcessor]
) -> None:
    server.set_script([verdict("faithful", 1.0)])
    processor = judge(evaluators=[{"name": "faithfulness"}], settle_delay="300ms")
    processor.process(batch(chat_span(3, 2)))
    time.sleep(0.05)
    assert server.count == 0 and processor.pending == 1
    processor.process(
        batch(retrieval_span(3, 1, [{"id": "d1", "content": "Paris is the capital of France."}]))
    )
    assert server.wait_for(1)
    assert "CONTEXT:\nParis is the capital of France." in server.requests[0]["messages"][1]["content"]


def test_faithfulness_without_context_and_spans_without_content_are_skipped(
    host: Host, server: JudgeServer, judge: Callable[..., JudgeProcessor]
) -> None:
    processor = judge(evaluators=[{"name": "faithfulness"}])
    processor.process(batch(chat_span(1), chat_span(2, question=None, answer=None)))
    store = shared_store(host)
    wait_until(lambda: skipped(store, "no_content") == 2)
    assert server.count == 0


def test_judges_own_service_is_never_judged(
    host: Host, server: JudgeServer, judge: Callable[..., JudgeProcessor]
) -> None:
    processor = judge()
    processor.process(batch(chat_span(1), service="otel-llm-judge"))
    time.sleep(0.1)
    assert server.count == 0
    assert value(shared_store(host), "otel_llm.judge.skipped") == 0


def test_content_is_redacted_before_it_leaves(
    host: Host, server: JudgeServer, judge: Callable[..., JudgeProcessor]
) -> None:
    host.shared["collector.pii.redactor"] = lambda text: text.replace("France", "<LOCATION>")
    processor = judge()
    processor.process(batch(chat_span(1)))
    assert server.wait_for(1)
    assert "France" not in str(server.requests[0]) and "<LOCATION>" in str(server.requests[0])

    def broken(text: str) -> str:
        raise RuntimeError("redactor down")

    host.shared["collector.pii.redactor"] = broken
    processor.process(batch(chat_span(2)))
    wait_until(lambda: skipped(shared_store(host), "redaction_failed") == 1)
    assert server.count == 1


def test_malformed_verdicts_are_counted(
    host: Host, server: JudgeServer, judge: Callable[..., JudgeProcessor]
) -> None:
    server.set_script(
        [
            Step(text="I would say it is relevant"),
            Step(text='{"label": "weird", "score": "high"}'),
            verdict("relevant", 1.0),
        ]
    )
    processor = judge()
    processor.process(batch(chat_span(1), chat_span(2), chat_span(3)))
    store = shared_store(host)
    wait_until(lambda: value(store, "otel_llm.judge.calls") == 3)
    assert value(store, "otel_llm.judge.calls", **{"error.type": "malformed_verdict"}) == 2
    assert value(store, "otel_llm.evaluation.score") == 1
    assert value(store, "otel_llm.judge.cost") == pytest.approx(3 * CALL_USD)  # malformed calls still cost


def test_429_is_retried_with_backoff_and_sampling_backs_off(
    host: Host, server: JudgeServer, judge: Callable[..., JudgeProcessor]
) -> None:
    server.set_script(
        [Step(status=429, headers={"Retry-After": "0"}), Step(status=503), verdict("relevant", 1.0)]
    )
    processor = judge()
    processor.process(batch(chat_span(1)))
    store = shared_store(host)
    wait_until(lambda: value(store, "otel_llm.evaluation.score") == 1)
    assert value(store, "otel_llm.judge.calls", **{"error.type": "429"}) == 1
    assert value(store, "otel_llm.judge.calls", **{"error.type": "503"}) == 1
    assert server.count == 3
    assert processor.backoff.current(processor.clock()) == 0.5
    assert processor.backoff.reason == "rate_limited"


def test_persistent_429_gives_up_and_counts_rate_limited(
    host: Host, server: JudgeServer, judge: Callable[..., JudgeProcessor]
) -> None:
    server.set_script([Step(status=429)])
    processor = judge(max_retries=2)
    processor.process(batch(chat_span(1)))
    store = shared_store(host)
    wait_until(lambda: skipped(store, "rate_limited") == 1)
    assert server.count == 3  # first try and two retries
    # Backed off: with the multiplier at 1/2 or less, only traces below that point are judged now.
    multiplier = processor.backoff.current(processor.clock())
    assert multiplier <= 0.5
    processor.process(batch(*(chat_span(n) for n in range(10, 60))))
    backed_off = sum(1 for n in range(10, 60) if multiplier <= sample_point(trace_id(n)))
    assert skipped(store, "rate_limited") == 1 + backed_off


def test_timeouts_are_counted_and_retried(
    host: Host, server: JudgeServer, judge: Callable[..., JudgeProcessor]
) -> None:
    server.set_script([Step(delay_s=1.0), verdict("relevant", 1.0)])
    processor = judge(timeout="200ms", max_retries=1)
    processor.process(batch(chat_span(1)))
    store = shared_store(host)
    wait_until(lambda: value(store, "otel_llm.evaluation.score") == 1)
    assert value(store, "otel_llm.judge.calls", **{"error.type": "timeout"}) == 1


def test_budget_stops_calls_until_the_window_passes(
    host: Host, server: JudgeServer, judge: Callable[..., JudgeProcessor]
) -> None:
    offset = [0.0]
    processor = judge(budget_usd_per_hour=0.002, budget_usd_per_day=0.1, concurrency=1)
    processor.clock = lambda: time.monotonic() + offset[0]
    store = shared_store(host)
    processor.process(batch(chat_span(1)))
    processor.process(batch(chat_span(2)))
    wait_until(lambda: value(store, "otel_llm.judge.cost") == pytest.approx(2 * CALL_USD))
    processor.process(batch(chat_span(3), chat_span(4)))  # $0.0024 spent > $0.002 an hour
    assert skipped(store, "budget_exhausted") == 2
    assert server.count == 2
    offset[0] = 3700.0  # an hour later the hourly budget is free again (back-off recovered too)
    processor.process(batch(chat_span(5)))
    assert server.wait_for(3)
    offset[0] = 3700.0 + 86_400.0
    assert processor.backoff.current(processor.clock()) == 1.0


def test_daily_budget_and_request_rate(
    host: Host, server: JudgeServer, judge: Callable[..., JudgeProcessor]
) -> None:
    processor = judge(requests_per_minute=2, concurrency=1, budget_usd_per_day=1.0)
    processor.process(batch(*(chat_span(n) for n in range(1, 6))))
    store = shared_store(host)
    wait_until(lambda: skipped(store, "rate_limited") == 3)
    assert server.count == 2
    processor.ledger.add(1.0, processor.clock())
    processor.process(batch(chat_span(7)))
    assert skipped(store, "budget_exhausted") == 1


def test_ingestion_is_unaffected_while_the_judge_is_slow_or_down(
    host: Host, server: JudgeServer, judge: Callable[..., JudgeProcessor]
) -> None:
    server.set_script([Step(delay_s=5.0)])  # slow: every call hangs until its timeout
    slow = judge(max_pending=50, queue_size=5, concurrency=2, timeout="1s", max_retries=0)
    down = judge(
        endpoint="http://127.0.0.1:9/v1", max_pending=50, queue_size=5, max_retries=3, retry_backoff="1s"
    )
    spans = [chat_span(n) for n in range(1, 101)]
    worst = 0.0
    started = time.perf_counter()
    for _ in range(20):
        for processor in (slow, down):
            t0 = time.perf_counter()
            assert processor.process(batch(*spans)) is not None
            worst = max(worst, time.perf_counter() - t0)
    elapsed = time.perf_counter() - started
    assert worst < 0.5 and elapsed < 5  # 4,000 spans; no call to the judge ever on this path
    assert slow.pending <= 50 and down.pending <= 50
    store = shared_store(host)
    assert skipped(store, "queue_full") > 0  # drops are counted, memory stays bounded


def test_shutdown_stops_threads_and_counts_waiting_spans(
    host: Host, server: JudgeServer, judge: Callable[..., JudgeProcessor]
) -> None:
    processor = judge(settle_delay="1h")
    processor.process(batch(chat_span(1), chat_span(2)))
    threads = list(processor._threads)
    processor.shutdown(2)
    assert not any(thread.is_alive() for thread in threads)
    assert skipped(shared_store(host), "shutdown") == 2
    assert processor.process(batch(chat_span(3))) is not None  # after shutdown: passes through
    processor.shutdown(1)


def test_unpriceable_judge_model_fails_at_start(host: Host, server: JudgeServer) -> None:
    processor = build(JUDGE, host, endpoint=server.url, model="no-such-model-xyz", provider="openai")
    with pytest.raises(ComponentError, match="cannot price model 'no-such-model-xyz'"):
        processor.start(host)
    processor.shutdown(1)


def test_default_judge_model_is_priced_from_the_price_book(host: Host) -> None:
    processor = build(JUDGE, host)
    processor.start(host)
    try:
        assert processor.prices is not None and processor.client is not None
        assert processor.client.url == "https://api.openai.com/v1"
    finally:
        processor.shutdown(1)
    assert not any(t.is_alive() for t in threading.enumerate() if t.name.startswith("judge-"))


def test_config_problems() -> None:
    from collector.processors.judge import JudgeProcessorConfig

    config = JudgeProcessorConfig.model_validate(
        {
            "endpoint": "ftp://x",
            "evaluators": [{"name": "tone"}, {"name": "relevance"}, {"name": "relevance"}],
        }
    )
    assert config.problems() == [
        ("endpoint", "expected an http:// or https:// URL, got 'ftp://x'"),
        (
            "evaluators::0::rubric",
            "'tone' is not built in (relevance, faithfulness, toxicity): give a rubric",
        ),
        ("evaluators::2::name", "duplicate evaluator 'relevance'"),
    ]


def test_price_overrides_price_an_unknown_judge_model(host: Host, server: JudgeServer, tmp_path: Any) -> None:
    overrides = tmp_path / "prices.yaml"
    overrides.write_text("overrides:\n  - model: my-judge\n    prices: {input: 1.0, output: 2.0}\n")
    processor = build(
        JUDGE,
        host,
        endpoint=server.url,
        model="my-judge",
        price_overrides=str(overrides),
        settle_delay=0,
        sample_rate=1.0,
        evaluators=[{"name": "toxicity"}],
    )
    processor.start(host)
    try:
        processor.process(batch(chat_span(1)))
        store = shared_store(host)
        wait_until(lambda: value(store, "otel_llm.judge.cost") > 0)
        assert value(store, "otel_llm.judge.cost") == pytest.approx(CALL_USD)
    finally:
        processor.shutdown(2)
    broken = tmp_path / "broken.yaml"
    broken.write_text("overrides: [{model: x, prices: {input: -1}}]\n")
    processor = build(JUDGE, host, endpoint=server.url, price_overrides=str(broken))
    with pytest.raises(ComponentError, match="price_overrides"):
        processor.start(host)
