"""Fuzzing the receivers and the feedback API: generated OTLP/JSON, random bytes, mutated real payloads.

Properties: every request gets an answer from the allowed set (never a 500 or a dropped connection),
the service keeps taking valid requests, and memory stays flat once warm. Default mode runs a few
hundred requests per property (~30 s); ``OTEL_LLM_SLOW_TESTS=1`` runs ten times more.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.collector.hostile._support import (
    LOGS,
    SLOW,
    TRACES,
    Endpoints,
    genai_json,
    genai_request,
    logs_request,
    mutate,
    rss_bytes,
    running_service,
)

SCALE = 10 if SLOW else 1
JSON = {"Content-Type": "application/json"}
PROTO = {"Content-Type": "application/x-protobuf"}
# OK, or the request's own fault. Never INTERNAL/500 (our fault) or no answer (0).
HTTP_OK = {200, 400, 413}
GRPC_OK = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED}
# Known open bugs (see test_hostile_cases.py): generated input may hit them, so they are excluded
# from generation instead of hiding them in the allowed sets.
MAX_JSON_DEPTH = 12

FUZZ = settings(
    max_examples=60 * SCALE,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)


@pytest.fixture(scope="module")
def endpoints() -> Iterator[Endpoints]:
    with running_service() as running:
        yield running
        assert running.alive()


# -- generated OTLP/JSON: the right shape with wrong, odd or extreme values --------------------------

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "", "0x10", "1e400", "\u0000", "\ud7ff", "a" * 5000]),
    st.text(max_size=50),
)
_json_values = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=25,
)
_any_value = st.recursive(
    st.one_of(
        st.fixed_dictionaries({"stringValue": st.one_of(st.text(max_size=200), _scalars)}),
        st.fixed_dictionaries({"intValue": st.one_of(st.integers(), st.text(max_size=25), _scalars)}),
        st.fixed_dictionaries(
            {"doubleValue": st.one_of(st.floats(allow_nan=False, allow_infinity=False), _scalars)}
        ),
        st.fixed_dictionaries({"boolValue": _scalars}),
        st.fixed_dictionaries({"bytesValue": st.one_of(st.text(max_size=20), _scalars)}),
        _json_values,
    ),
    lambda children: st.one_of(
        st.fixed_dictionaries(
            {"arrayValue": st.fixed_dictionaries({"values": st.lists(children, max_size=3)})}
        ),
        st.fixed_dictionaries(
            {
                "kvlistValue": st.fixed_dictionaries(
                    {
                        "values": st.lists(
                            st.fixed_dictionaries({"key": st.text(max_size=10), "value": children}),
                            max_size=3,
                        )
                    }
                )
            }
        ),
    ),
    max_leaves=10,
)
_keys = st.one_of(
    st.sampled_from(
        [
            "gen_ai.operation.name",
            "gen_ai.provider.name",
            "gen_ai.request.model",
            "gen_ai.response.model",
            "gen_ai.usage.input_tokens",
            "gen_ai.usage.output_tokens",
            "gen_ai.input.messages",
            "gen_ai.output.messages",
            "gen_ai.system",
            "gen_ai.usage.prompt_tokens",
            "error.type",
            "server.address",
            "openinference.span.kind",
            "llm.token_count.prompt",
        ]
    ),
    st.text(max_size=20),
)
_attributes = st.lists(st.fixed_dictionaries({"key": _keys, "value": _any_value}), max_size=12)


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


@FUZZ
@given(attributes=_attributes, noise=_json_values)
def test_generated_otlp_json_spans(
    endpoints: Endpoints, attributes: list[dict[str, Any]], noise: Any
) -> None:
    base = [a for a in genai_json()["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["attributes"][:3]]
    tree = genai_json(base + attributes)
    tree["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["events"] = [
        {"name": "gen_ai.user.message", "attributes": attributes[:3]}
    ]
    tree["noise"] = noise  # unknown fields must be ignored
    if _depth(tree) > MAX_JSON_DEPTH + 10:
        return
    body = json.dumps(tree, allow_nan=False).encode()
    assert endpoints.http("/v1/traces", body, JSON) in HTTP_OK


@FUZZ
@given(tree=_json_values, wrapped=st.booleans())
def test_generated_json_of_any_shape(endpoints: Endpoints, tree: Any, wrapped: bool) -> None:
    body = json.dumps({"resourceSpans": tree} if wrapped else tree, allow_nan=False).encode()
    assert endpoints.http("/v1/traces", body, JSON) in HTTP_OK
    assert endpoints.http("/v1/logs", json.dumps({"resourceLogs": tree}).encode(), JSON) in HTTP_OK


@FUZZ
@given(data=st.binary(max_size=2048))
def test_random_bytes_on_both_transports(endpoints: Endpoints, data: bytes) -> None:
    assert endpoints.grpc(TRACES, data) in GRPC_OK
    assert endpoints.http("/v1/traces", data, PROTO) in HTTP_OK
    assert endpoints.http("/v1/logs", data, JSON) in HTTP_OK


# -- mutation of real payloads -------------------------------------------------------------------------


def _seeds() -> list[tuple[str, bytes]]:
    return [
        (TRACES, genai_request(5).SerializeToString()),
        (LOGS, logs_request().SerializeToString()),
    ]


@pytest.mark.parametrize("seed", range(3))
def test_mutated_protobuf_on_both_transports(endpoints: Endpoints, seed: int) -> None:
    rng = random.Random(seed)
    failures: list[str] = []
    for _ in range(100 * SCALE):
        method, original = rng.choice(_seeds())
        body = mutate(original, rng)
        code = endpoints.grpc(method, body, gzip_it=rng.random() < 0.3)
        path = "/v1/traces" if method == TRACES else "/v1/logs"
        status = endpoints.http(path, body, PROTO)
        if code not in GRPC_OK or status not in HTTP_OK:
            failures.append(f"{method} {code} {status} {body[:80]!r}")
    assert failures == []


@pytest.mark.parametrize("seed", range(2))
def test_mutated_json(endpoints: Endpoints, seed: int) -> None:
    rng = random.Random(100 + seed)
    original = json.dumps(genai_json()).encode()
    failures: list[str] = []
    for _ in range(100 * SCALE):
        body = mutate(original, rng)
        status = endpoints.http("/v1/traces", body, JSON)
        if status not in HTTP_OK:
            failures.append(f"{status} {body[:120]!r}")
    assert failures == []


@FUZZ
@given(
    item=st.dictionaries(
        st.sampled_from(["trace_id", "span_id", "response_id", "kind", "value", "comment", "x"]),
        _json_values,
        max_size=6,
    )
)
def test_feedback_api_generated(endpoints: Endpoints, item: dict[str, Any]) -> None:
    if _depth(item) > MAX_JSON_DEPTH:
        return
    for body in (item, [item, item]):
        assert endpoints.feedback(json.dumps(body, allow_nan=False).encode()) in {202, 400, 413}


def test_feedback_api_mutated(endpoints: Endpoints) -> None:
    rng = random.Random(7)
    original = json.dumps(
        [{"trace_id": "ab" * 16, "kind": "thumbs", "value": "up", "comment": "mail a@b.io"}]
    ).encode()
    statuses = set()
    for _ in range(150 * SCALE):
        body = mutate(original, rng)
        if body.count(b"[") > 200:
            continue
        statuses.add(endpoints.feedback(body))
    assert statuses <= {202, 400, 413}, statuses


# -- memory ------------------------------------------------------------------------------------------


def test_memory_flat_under_hostile_load(endpoints: Endpoints) -> None:
    """After a warm-up, 1500 mostly-bad requests (5x more when slow) grow RSS by less than 40 MiB."""
    rng = random.Random(11)
    seeds = _seeds()

    def burst(count: int) -> None:
        for index in range(count):
            method, original = seeds[index % len(seeds)]
            body = mutate(original, rng) if index % 4 else original
            endpoints.grpc(method, body)
            if index % 3 == 0:
                endpoints.http("/v1/traces" if method == TRACES else "/v1/logs", body, PROTO)

    burst(400)
    before = rss_bytes()
    burst(1500 * (5 if SLOW else 1))
    grown = rss_bytes() - before
    assert grown < 40 << 20, f"RSS grew by {grown / (1 << 20):.1f} MiB"
    assert endpoints.alive()
