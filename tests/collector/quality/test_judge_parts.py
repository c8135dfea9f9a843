"""Judge building blocks: verdict parsing, sampling, limits, prompt building and the HTTP client."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from collector.quality import SpanContent
from collector.quality.judge import (
    BUILTIN_TEMPLATES,
    JUDGE_HEADER,
    Backoff,
    JudgeClient,
    JudgeError,
    MalformedVerdict,
    RequestRate,
    SpendLedger,
    build_messages,
    parse_verdict,
    retry_delay,
    rubric_template,
    sample_point,
)
from tests.collector.quality._judge_server import JudgeServer, Step


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            '{"label": "relevant", "score": 0.9, "explanation": "x"}', ("relevant", 0.9), id="plain"
        ),
        pytest.param(
            'Sure!\n```json\n{"label": "Irrelevant", "score": "0"}\n```', ("irrelevant", 0.0), id="fenced"
        ),
        pytest.param(
            'Verdict: {"label": "partially relevant"} done', ("partially_relevant", 0.5), id="label-only"
        ),
        pytest.param('{"score": 85}', ("pass", 0.85), id="percent"),
        pytest.param('{"Label": "relevant", "Score": "1.0"}', ("relevant", 1.0), id="case"),
    ],
)
def test_parse_verdict(text: str, expected: tuple[str, float]) -> None:
    verdict = parse_verdict(text, BUILTIN_TEMPLATES["relevance"].labels)
    assert (verdict.label, verdict.score) == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("I think it is relevant.", id="no-json"),
        pytest.param('{"label": "relevant", "score": 0.9', id="truncated"),
        pytest.param('{"label": "weird"}', id="unknown-label-no-score"),
        pytest.param('{"score": -3}', id="out-of-range"),
        pytest.param('{"score": "high"}', id="non-numeric"),
        pytest.param("[1, 2]", id="array"),
    ],
)
def test_malformed_verdicts_raise(text: str) -> None:
    with pytest.raises(MalformedVerdict):
        parse_verdict(text, BUILTIN_TEMPLATES["relevance"].labels)


def test_sampling_is_deterministic_uniform_and_nested() -> None:
    ids = [os.urandom(16) for _ in range(20_000)]
    points = [sample_point(t) for t in ids]
    assert points == [sample_point(t) for t in ids]
    assert all(0 <= p < 1 for p in points)
    picked = {rate: {t for t, p in zip(ids, points, strict=True) if p < rate} for rate in (0.01, 0.05, 0.2)}
    assert picked[0.01] <= picked[0.05] <= picked[0.2]
    assert 0.04 < len(picked[0.05]) / len(ids) < 0.06
    # Known value: pins the hash so that every collector version samples the same traces.
    assert sample_point(bytes(16)) == pytest.approx(int("374708fff7719dd5", 16) / 2**64)


def test_backoff_halves_on_hits_and_recovers_per_quiet_period() -> None:
    backoff = Backoff(recovery_s=10)
    assert backoff.current(0) == 1.0
    backoff.hit("rate_limited", 100.0)
    backoff.hit("rate_limited", 100.5)  # same burst: halves once
    assert backoff.current(100.6) == 0.5
    backoff.hit("budget_exhausted", 102.0)
    assert backoff.current(102.0) == 0.25 and backoff.reason == "budget_exhausted"
    assert backoff.current(112.0) == 0.5
    assert backoff.current(200.0) == 1.0
    for i in range(20):
        backoff.hit("queue_full", 300.0 + 2 * i)
    assert backoff.current(340.0) == backoff.floor


def test_spend_ledger_windows() -> None:
    ledger = SpendLedger()
    ledger.add(0.5, now=0.0)
    ledger.add(0.25, now=1800.0)
    assert ledger.spent(1800.0, 3600) == 0.75
    assert ledger.spent(3700.0, 3600) == 0.25
    assert ledger.spent(3700.0, 86_400) == 0.75
    ledger.add(0.1, now=90_000.0)
    assert ledger.spent(90_000.0, 86_400) == pytest.approx(0.1)


def test_request_rate_sliding_minute() -> None:
    rate = RequestRate(2)
    assert rate.try_take(0.0) and rate.try_take(1.0)
    assert not rate.try_take(30.0)
    assert rate.try_take(60.5)
    assert RequestRate(0).try_take(0.0)


def test_retry_delay() -> None:
    assert retry_delay(1, 1.0, 30.0, None, 0.0) == 1.0
    assert retry_delay(3, 1.0, 30.0, None, 0.5) == 6.0
    assert retry_delay(9, 1.0, 30.0, None, 0.0) == 30.0
    assert retry_delay(1, 1.0, 30.0, 120.0, 0.0) == 30.0  # Retry-After capped


def test_messages_are_redacted_and_clipped() -> None:
    content = SpanContent(question="Mail bob@example.com", answer="x" * 50, context=["doc"], has_output=True)
    messages = build_messages(
        BUILTIN_TEMPLATES["faithfulness"],
        content,
        max_chars=20,
        redact=lambda t: t.replace("bob@example.com", "<EMAIL>"),
    )
    user = messages[1]["content"]
    assert "<EMAIL>" in user and "bob@" not in user
    assert "CONTEXT:\ndoc" in user and "[... truncated]" in user
    assert "faithful, partially_faithful, hallucinated" in messages[0]["content"]
    toxicity = build_messages(BUILTIN_TEMPLATES["toxicity"], content)
    assert "QUESTION" not in toxicity[1]["content"]
    custom = rubric_template("tone", "Polite?", None)
    assert "Polite?" in custom.system_prompt() and dict(custom.labels) == {"pass": 1.0, "fail": 0.0}


@pytest.fixture
def server() -> Iterator[JudgeServer]:
    judge = JudgeServer()
    yield judge
    judge.stop()


def test_client_sends_a_chat_request_and_reads_usage(server: JudgeServer) -> None:
    client = JudgeClient(server.url, "gpt-4o-mini", api_key="sk-test", timeout_s=2)
    reply = client.call([{"role": "user", "content": "hi"}])
    assert reply.text.startswith('{"label"') and (reply.input_tokens, reply.output_tokens) == (1000, 100)
    body, headers = server.requests[0], server.headers[0]
    assert body["model"] == "gpt-4o-mini" and body["response_format"] == {"type": "json_object"}
    assert headers["authorization"] == "Bearer sk-test" and headers[JUDGE_HEADER.lower()] == "1"


@pytest.mark.parametrize(
    ("step", "kind", "retryable", "retry_after"),
    [
        pytest.param(Step(status=429, headers={"Retry-After": "3"}), "429", True, 3.0, id="429"),
        pytest.param(Step(status=503), "503", True, None, id="503"),
        pytest.param(Step(status=400), "400", False, None, id="400"),
        pytest.param(Step(raw=b"<html>"), "malformed_response", False, None, id="not-json"),
        pytest.param(Step(delay_s=2.0), "timeout", True, None, id="timeout"),
    ],
)
def test_client_errors(
    server: JudgeServer, step: Step, kind: str, retryable: bool, retry_after: float | None
) -> None:
    server.set_script([step])
    client = JudgeClient(server.url + "/chat/completions", "m", timeout_s=0.3)
    with pytest.raises(JudgeError) as caught:
        client.call([{"role": "user", "content": "hi"}])
    assert (caught.value.kind, caught.value.retryable, caught.value.retry_after_s) == (
        kind,
        retryable,
        retry_after,
    )


def test_client_connection_refused() -> None:
    judge = JudgeServer()
    url = judge.url
    judge.stop()
    with pytest.raises(JudgeError) as caught:
        JudgeClient(url, "m", timeout_s=0.5).call([{"role": "user", "content": "hi"}])
    assert caught.value.kind == "connection" and caught.value.retryable
