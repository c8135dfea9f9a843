"""User feedback: validation, the join index (each id kind, late and early feedback, floods) and the endpoint."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any, get_args

import pytest
from pydantic import ValidationError

from collector.extensions.feedback import FACTORY as FEEDBACK
from collector.extensions.feedback import FeedbackExtension
from collector.metrics import MetricStore, shared_store
from collector.processors.quality import FACTORY as QUALITY
from collector.quality import FeedbackIndex, FeedbackRequest, SpanRecord, polarity
from collector.quality._feedback import FeedbackKind, Polarity
from otel_llm.conventions import attributes as attrs
from tests.collector.quality._spans import batch, build, chat_span, make_host, value

TRACE = "0" * 31 + "1"
SPAN = "0" * 15 + "1"
TOKEN = "s3cret-feedback-token-01"  # a plain string: gets the endpoint's scope, feedback
INGEST_TOKEN = "ingest-only-token-0123456"
ADMIN_TOKEN = "admin-only-token-01234567"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def record(n: int = 1, model: str = "gpt-4o-mini", version: str = "v1", response_id: str = "") -> SpanRecord:
    return SpanRecord(
        trace_id=f"{n:032x}",
        span_id=f"{n:016x}",
        response_id=response_id or f"chatcmpl-{n}",
        resource=("chat-app",),
        resource_attributes=(("service.name", "chat-app"),),
        dimensions=("chat", "openai", model, version),
    )


def item(**fields: Any) -> FeedbackRequest:
    return FeedbackRequest.model_validate({"kind": "thumbs", "value": "up", **fields})


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        pytest.param({"kind": "thumbs", "value": "up"}, "give at least one of", id="no-id"),
        pytest.param(
            {"trace_id": "xyz", "kind": "thumbs", "value": "up"}, "trace_id: expected 32", id="bad-trace"
        ),
        pytest.param({"trace_id": "0" * 32, "kind": "copy"}, "not all zero", id="zero-trace"),
        pytest.param(
            {"span_id": "ABCDEF0123456789", "kind": "copy"}, "span_id: expected 16", id="upper-span"
        ),
        pytest.param({"span_id": SPAN, "kind": "thumbs", "value": "maybe"}, "up or down", id="thumbs-value"),
        pytest.param({"span_id": SPAN, "kind": "rating", "value": 9}, "from 1 to 5", id="rating-range"),
        pytest.param({"span_id": SPAN, "kind": "rating", "value": "5"}, "from 1 to 5", id="rating-string"),
        pytest.param({"span_id": SPAN, "kind": "correction"}, "needs the corrected text", id="no-correction"),
        pytest.param(
            {"span_id": SPAN, "kind": "copy", "value": 1}, "not used with kind copy", id="stray-value"
        ),
        pytest.param({"span_id": SPAN, "kind": "like"}, "kind", id="unknown-kind"),
        pytest.param({"span_id": SPAN, "kind": "copy", "user": "x"}, "Extra inputs", id="unknown-field"),
    ],
)
def test_invalid_requests(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        FeedbackRequest.model_validate(fields)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"kind": "thumbs", "value": "up"}, "positive"),
        ({"kind": "thumbs", "value": "down"}, "negative"),
        ({"kind": "rating", "value": 5}, "positive"),
        ({"kind": "rating", "value": 3}, "neutral"),
        ({"kind": "rating", "value": 2, "scale": 10}, "negative"),
        ({"kind": "correction", "text": "Canberra"}, "negative"),
        ({"kind": "regenerate"}, "negative"),
        ({"kind": "abandoned"}, "negative"),
        ({"kind": "copy"}, "positive"),
        ({"kind": "follow_up"}, "neutral"),
        ({"kind": "comment", "comment": "meh"}, "neutral"),
    ],
)
def test_polarity(fields: dict[str, Any], expected: str) -> None:
    assert polarity(FeedbackRequest.model_validate({"span_id": SPAN, **fields})) == expected


@pytest.fixture
def store() -> MetricStore:
    return MetricStore("test")


@pytest.mark.parametrize(
    "key",
    [
        pytest.param({"trace_id": f"{7:032x}"}, id="trace"),
        pytest.param({"span_id": f"{7:016x}"}, id="span"),
        pytest.param({"response_id": "chatcmpl-7"}, id="response"),
    ],
)
def test_join_by_each_id_kind_after_and_before_the_span(store: MetricStore, key: dict[str, str]) -> None:
    clock = Clock()
    index = FeedbackIndex(store, join_window_s=60, clock=clock)
    index.add_span(record(7, model="gpt-4o"))
    assert index.submit(item(**key)).status == "joined"
    # Feedback before its span waits, then joins when the span arrives within the window.
    early = item(**{k: v.replace("7", "8") for k, v in key.items()})
    assert index.submit(early).status == "pending"
    clock.now += 30
    index.add_span(record(8, model="gpt-4o"))
    assert index.pending == 0
    labels = {
        "otel_llm.feedback.kind": "thumbs",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.prompt.version": "v1",
    }
    assert value(store, "otel_llm.feedback", **labels) == 2
    index.export_gauges()
    assert value(store, "otel_llm.feedback.coverage", **{"gen_ai.request.model": "gpt-4o"}) == 1.0


def test_late_feedback_minutes_after_the_span(store: MetricStore) -> None:
    clock = Clock()
    index = FeedbackIndex(store, join_window_s=60, retention_s=1800, clock=clock)
    index.add_span(record(1))
    index.add_span(record(2))
    clock.now += 15 * 60
    index.sweep()
    assert index.submit(item(trace_id=f"{1:032x}", kind="thumbs", value="down")).status == "joined"
    index.export_gauges()
    assert value(store, "otel_llm.feedback.coverage") == 0.5
    assert value(store, "otel_llm.feedback.positive") == 0.0
    clock.now += 20 * 60
    index.sweep()  # past retention: the span is forgotten
    assert len(index) == 0
    assert index.submit(item(trace_id=f"{1:032x}")).status == "pending"


def test_unknown_ids_are_counted_as_unjoined_after_the_window(store: MetricStore) -> None:
    clock = Clock()
    index = FeedbackIndex(store, join_window_s=60, clock=clock)
    for n in range(5):
        index.submit(item(response_id=f"nope-{n}", kind="regenerate", value=None))
    clock.now += 59
    assert index.sweep() == 0
    clock.now += 2
    assert index.sweep() == 5
    assert index.pending == 0
    assert value(store, "otel_llm.feedback.unjoined", **{"otel_llm.feedback.unjoined_reason": "expired"}) == 5
    assert value(store, "otel_llm.feedback") == 0


def test_flood_of_feedback_and_spans_stays_bounded(store: MetricStore) -> None:
    index = FeedbackIndex(store, max_spans=1000, max_pending=500)
    for n in range(1, 20_001):
        index.add_span(record(n))
        index.submit(item(span_id=f"{n + 10**9:016x}"))
    assert len(index) == 1000 and index.pending == 500
    assert len(index._by_trace) == 1000 and len(index._by_response) == 1000
    assert sum(len(ids) for ids in index._pending_keys.values()) == 500
    assert (
        value(store, "otel_llm.feedback.unjoined", **{"otel_llm.feedback.unjoined_reason": "overflow"})
        == 19_500
    )
    # Every feedback item is accounted for: joined + unjoined (overflow) + pending.
    assert index.joined_total + index.unjoined_total + index.pending == 20_000


# -- the HTTP endpoint, fed by the quality processor ---------------------------------------------------


@pytest.fixture
def stack() -> Iterator[tuple[FeedbackExtension, Any, MetricStore]]:
    host = make_host()
    extension = build(
        FEEDBACK,
        host,
        endpoint="127.0.0.1:0",
        auth={
            "tokens": [
                TOKEN,
                {"name": "app", "token": INGEST_TOKEN, "scopes": ["ingest"]},
                {"name": "ops", "token": ADMIN_TOKEN, "scopes": ["admin"]},
            ]
        },
        join_window="1m",
        refresh_interval="1h",
    )
    quality = build(QUALITY, host)
    extension.start(host)
    quality.start(host)
    yield extension, quality, shared_store(host)
    quality.shutdown(1)
    extension.shutdown(1)


def post(
    extension: FeedbackExtension,
    body: Any,
    token: str | None = TOKEN,
    path: str = "/v1/feedback",
    method: str = "POST",
) -> tuple[int, dict[str, Any]]:
    assert extension.address is not None
    conn = http.client.HTTPConnection(*extension.address, timeout=5)
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    try:
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


def test_endpoint_joins_feedback_to_span_dimensions(
    stack: tuple[FeedbackExtension, Any, MetricStore],
) -> None:
    extension, quality, store = stack
    quality.process(batch(chat_span(5, response_id="chatcmpl-5", prompt_version="v2", model="gpt-4o")))
    status, reply = post(
        extension,
        [
            {"trace_id": f"{5:032x}", "kind": "thumbs", "value": "up", "comment": "nice"},
            {"response_id": "chatcmpl-5", "kind": "rating", "value": 4},
            {"span_id": f"{6:016x}", "kind": "copy"},
        ],
    )
    assert (status, reply) == (202, {"accepted": 3, "joined": 2, "pending": 1})
    labels = {
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.prompt.version": "v2",
        "otel_llm.feedback.polarity": "positive",
    }
    assert value(store, "otel_llm.feedback", **labels) == 2
    quality.process(batch(chat_span(6, prompt_version="v2")))  # the span the copy was about, arriving late
    assert value(store, "otel_llm.feedback", **{"otel_llm.feedback.kind": "copy"}) == 1
    extension.refresh()
    assert value(store, "otel_llm.feedback.coverage", **{"gen_ai.request.model": "gpt-4o"}) == 1.0


@pytest.mark.parametrize(
    ("body", "token", "status", "error"),
    [
        pytest.param({"trace_id": TRACE, "kind": "copy"}, None, 401, "bearer token", id="no-token"),
        pytest.param({"trace_id": TRACE, "kind": "copy"}, "wrong", 401, "bearer token", id="bad-token"),
        pytest.param(
            {"trace_id": TRACE, "kind": "copy"}, INGEST_TOKEN, 403, "feedback scope", id="ingest-token"
        ),
        pytest.param(
            {"trace_id": TRACE, "kind": "copy"}, ADMIN_TOKEN, 403, "feedback scope", id="admin-token"
        ),
        pytest.param(b"{nope", TOKEN, 400, "not JSON", id="bad-json"),
        pytest.param(b"[" * 60_000, TOKEN, 400, "nested too deeply", id="deep-json"),
        pytest.param(
            {"trace_id": TRACE, "kind": "copy", "extra": 1},
            TOKEN,
            400,
            "unknown field 'extra'",
            id="unknown-field",
        ),
        pytest.param({"trace_id": "123", "kind": "copy"}, TOKEN, 400, "trace_id: expected 32", id="bad-id"),
        pytest.param(
            [{"trace_id": TRACE, "kind": "copy"}, 5],
            TOKEN,
            400,
            "item 1: expected a JSON object",
            id="bad-item",
        ),
        pytest.param([], TOKEN, 400, "empty array", id="empty"),
        pytest.param(b"x" * 70_000, TOKEN, 413, "larger than", id="too-large"),
    ],
)
def test_endpoint_rejections(
    stack: tuple[FeedbackExtension, Any, MetricStore], body: Any, token: str | None, status: int, error: str
) -> None:
    extension, _, store = stack
    got_status, reply = post(extension, body, token=token)
    assert got_status == status and error in reply["error"]
    assert (
        extension.index is not None and extension.index.pending == 0
    )  # nothing of a rejected request is kept
    assert value(store, "otel_llm.feedback.rejected") == 1
    if status in (401, 403):
        reason = "unauthenticated" if status == 401 else "forbidden"
        assert value(store, "otel_llm.feedback.rejected", **{"otel_llm.feedback.reject_reason": reason}) == 1


def test_endpoint_other_paths_and_methods(stack: tuple[FeedbackExtension, Any, MetricStore]) -> None:
    extension, _, _ = stack
    assert post(extension, {}, path="/v1/traces")[0] == 404
    assert post(extension, b"", method="GET")[0] == 405


def test_listen_failure_is_a_component_error() -> None:
    from collector.errors import ComponentError

    host = make_host()
    first = build(FEEDBACK, host, endpoint="127.0.0.1:0")
    first.start(host)
    try:
        assert first.address is not None
        second = build(FEEDBACK, make_host(), endpoint=f"127.0.0.1:{first.address[1]}")
        with pytest.raises(ComponentError, match="cannot listen"):
            second.start(make_host())
    finally:
        first.shutdown(1)


def test_an_unknown_span_id_falls_back_to_the_response_id(store: MetricStore) -> None:
    index = FeedbackIndex(store)
    index.add_span(record(3))
    assert index.submit(item(span_id=f"{99:016x}", response_id="chatcmpl-3")).status == "joined"
    assert index.submit(item(span_id=f"{99:016x}", trace_id=f"{3:032x}")).status == "joined"


def test_kinds_and_polarities_are_the_conventions_values() -> None:
    """What lands in otel_llm.feedback.kind / .polarity is declared in semconv/model/otel-llm.yaml."""
    assert {kind.value for kind in FeedbackKind} <= attrs.OtelLlmFeedbackKindValues.ALL
    assert set(get_args(Polarity)) == attrs.OtelLlmFeedbackPolarityValues.ALL
