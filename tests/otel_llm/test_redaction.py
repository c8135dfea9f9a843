"""otel_llm.redaction: each detector, the three modes, JSON content walking and the environment switch."""

from __future__ import annotations

import ast
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otel_llm import redaction
from otel_llm.redaction import CustomPattern, Kind, Mode, RedactionConfig, Redactor

MASK = Redactor()
HASH = Redactor(RedactionConfig(mode=Mode.HASH, hash_key=b"test-key"))
DROP = Redactor(RedactionConfig(mode=Mode.DROP))


@pytest.fixture(autouse=True)
def _reset_switch() -> Iterator[None]:
    yield
    redaction._configured = False
    redaction._active = None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("write to bob.smith+tag@mail.example.co.uk now", "write to <EMAIL> now", id="email"),
        pytest.param("@team: mail a@b.io", "@team: mail <EMAIL>", id="email-after-a-leading-at"),
        pytest.param("café@x.io and o'neil@x.io", "café@x.io and <EMAIL>", id="email-inside-a-word"),
        pytest.param("call +44 20 7946 0958 today", "call <PHONE> today", id="phone-e164-spaces"),
        pytest.param("(415) 555-2671 or 415.555.2671", "<PHONE> or <PHONE>", id="phone-nanp"),
        pytest.param("tel 06 12 34 56 78", "tel <PHONE>", id="phone-fr-national"),
        pytest.param("phone: 555-0199", "phone: <PHONE>", id="phone-context-7-digits"),
        pytest.param("pay 4111-1111-1111-1111 now", "pay <CREDIT_CARD> now", id="card-visa-dashes"),
        pytest.param("amex 3782 822463 10005.", "amex <CREDIT_CARD>.", id="card-amex"),
        pytest.param("mc 5555555555554444", "mc <CREDIT_CARD>", id="card-mastercard"),
        pytest.param("to DE89 3704 0044 0532 0130 00 NOW", "to <IBAN> NOW", id="iban-spaces-then-word"),
        pytest.param("GB82WEST12345698765432", "<IBAN>", id="iban-compact"),
        pytest.param("ssn 123-45-6789", "ssn <US_SSN>", id="ssn-dashes"),
        pytest.param("SSN: 123456789", "SSN: <US_SSN>", id="ssn-context-bare"),
        pytest.param("from 203.0.113.7:443", "from <IP_ADDRESS>:443", id="ipv4-port"),
        pytest.param("host 2001:db8:85a3::8a2e:370:7334.", "host <IP_ADDRESS>.", id="ipv6"),
        pytest.param("k=sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8t", "k=<API_KEY>", id="openai-project-key"),
        pytest.param("sk-ant-api03-" + "Zx9" * 10, "<API_KEY>", id="anthropic-key"),
        pytest.param("AKIAIOSFODNN7EXAMPLE", "<API_KEY>", id="aws-access-key"),
        pytest.param("ghp_" + "a1B2" * 9, "<API_KEY>", id="github-token"),
        pytest.param("AIza" + "SyD3" * 8 + "abc", "<API_KEY>", id="google-key"),
        pytest.param("xoxb-1234567890-abcdefghij", "<API_KEY>", id="slack-token"),
        pytest.param(
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
            "<JWT>",
            id="jwt",
        ),
        pytest.param(
            "Authorization: Bearer abcDEF0123456789xyz", "Authorization: Bearer <BEARER_TOKEN>", id="bearer"
        ),
        pytest.param('{"password": "correct-horse-9"}', '{"password": "<SECRET>"}', id="secret-assignment"),
    ],
)
def test_each_kind_is_masked(text: str, expected: str) -> None:
    assert MASK.redact_text(text)[0] == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("order ORD-2024-118842 shipped", id="order-number"),
        pytest.param("at 2024-05-01T12:30:45.123Z", id="iso-timestamp"),
        pytest.param("epoch 1714566645123", id="epoch-ms"),
        pytest.param("requires numpy 1.26.4 and v1.2.3.4", id="versions"),
        pytest.param("id 123e4567-e89b-12d3-a456-426614174000", id="uuid"),
        pytest.param("tracking 1Z999AA10123456784", id="ups-tracking"),
        pytest.param("total $1,234.56 or 4,111,111.11", id="prices"),
        pytest.param("customer 5551234567", id="numeric-id"),
        pytest.param("card 4111 1111 1111 1112", id="card-bad-luhn"),
        pytest.param("ssn 666-12-3456 or 900-12-3456 or 123-00-4567", id="ssn-invalid-area-group"),
        pytest.param("DE89 3704 0044 0532 0130 01", id="iban-bad-checksum"),
        pytest.param("localhost 127.0.0.1 and 0.0.0.0 and ::1", id="loopback"),
        pytest.param("use std::vector and a::b", id="cpp-scope"),
        pytest.param("icon@2x.png", id="retina-file-name"),
        pytest.param("sk-learn-is-not-a-key-at-all-here", id="sk-slug"),
        pytest.param("mac 00:1A:2B:3C:4D:5E", id="mac-address"),
    ],
)
def test_look_alikes_are_left_alone(text: str) -> None:
    assert MASK.redact_text(text) == (text, {})


def test_counts_by_kind() -> None:
    _, counts = MASK.redact_text("a@b.io, c@d.io, 4111111111111111, 10.1.2.3")
    assert counts == {"email": 2, "credit_card": 1, "ip_address": 1}


def test_hash_is_keyed_stable_and_normalised() -> None:
    first, _ = HASH.redact_text("Bob@Example.org")
    second, _ = HASH.redact_text("bob@example.org")
    other_key, _ = Redactor(RedactionConfig(mode=Mode.HASH, hash_key=b"other")).redact_text("bob@example.org")
    assert first == second
    assert first is not None and first.startswith("<EMAIL:") and len(first) == len("<EMAIL:>") + 12
    assert other_key != first
    card_a, _ = HASH.redact_text("4111 1111 1111 1111")
    card_b, _ = HASH.redact_text("4111111111111111")
    assert card_a == card_b


def test_hash_needs_a_key() -> None:
    with pytest.raises(ValueError, match="hash key"):
        Redactor(RedactionConfig(mode=Mode.HASH))


def test_drop_returns_none_only_when_found() -> None:
    assert DROP.redact_text("nothing here") == ("nothing here", {})
    assert DROP.redact_text("mail a@b.io") == (None, {"email": 1})


def test_kinds_can_be_switched_off() -> None:
    only_email = Redactor(RedactionConfig(kinds=frozenset({Kind.EMAIL})))
    assert only_email.redact_text("a@b.io 10.1.2.3") == ("<EMAIL> 10.1.2.3", {"email": 1})


def test_custom_pattern_whole_match_and_named_group() -> None:
    redactor = Redactor(
        RedactionConfig(
            kinds=frozenset(),
            custom=(
                CustomPattern("employee_id", r"\bEMP-\d{6}\b"),
                CustomPattern("patient", r"patient (?P<pii>[A-Z][a-z]+)"),
            ),
        )
    )
    assert redactor.redact_text("EMP-123456 saw patient Alice") == (
        "<EMPLOYEE_ID> saw patient <PATIENT>",
        {"employee_id": 1, "patient": 1},
    )


def test_invalid_custom_pattern_raises() -> None:
    with pytest.raises(ValueError):
        Redactor(RedactionConfig(custom=(CustomPattern("bad", "(unclosed"),)))


MESSAGES = [
    {"role": "system", "parts": [{"type": "text", "content": "Agent for acme.example"}]},
    {
        "role": "user",
        "parts": [
            {"type": "text", "content": "I'm jane@corp.example, card 4111 1111 1111 1111"},
            {"type": "blob", "modality": "image", "content": "AKIAIOSFODNN7EXAMPLE"},
        ],
    },
    {
        "role": "assistant",
        "parts": [
            {
                "type": "tool_call",
                "id": "call_1",
                "name": "lookup",
                "arguments": json.dumps({"email": "jane@corp.example", "limit": 3}),
            }
        ],
    },
    {
        "role": "tool",
        "parts": [{"type": "tool_call_response", "id": "call_1", "response": {"phone": "+1 415 555 2671"}}],
    },
]


def test_json_content_keeps_structure_and_redacts_string_leaves() -> None:
    text = json.dumps(MESSAGES)
    redacted, counts = MASK.redact_json(text)
    assert redacted is not None
    document = json.loads(redacted)
    assert counts == {"email": 2, "credit_card": 1, "phone": 1}
    user = document[1]["parts"]
    assert user[0]["content"] == "I'm <EMAIL>, card <CREDIT_CARD>"
    assert user[1]["content"] == "AKIAIOSFODNN7EXAMPLE"  # blob payloads are media, not text
    assert json.loads(document[2]["parts"][0]["arguments"]) == {"email": "<EMAIL>", "limit": 3}
    assert document[3]["parts"][0]["response"] == {"phone": "<PHONE>"}
    assert [m["role"] for m in document] == ["system", "user", "assistant", "tool"]
    assert MESSAGES[1]["parts"][0]["content"].startswith("I'm jane")  # input not mutated


def test_json_without_findings_is_returned_byte_for_byte() -> None:
    text = '[ {"role": "user", "parts": [ {"type": "text", "content": "hello"} ] } ]'
    assert MASK.redact_json(text) == (text, {})


def test_truncated_json_falls_back_to_text() -> None:
    text = json.dumps(MESSAGES)[:160]
    redacted, counts = MASK.redact_json(text)
    assert redacted is not None and "jane@corp.example" not in redacted
    assert counts["email"] == 1


def test_drop_mode_on_json() -> None:
    assert DROP.redact_json(json.dumps(MESSAGES))[0] is None
    clean = json.dumps([{"role": "user", "parts": [{"type": "text", "content": "hi"}]}])
    assert DROP.redact_json(clean)[0] == clean


def test_deep_nesting_does_not_overflow() -> None:
    value: Any = "mail a@b.io"
    for _ in range(100_000):
        value = [value]
    _, counts = MASK.redact_value(value)
    assert counts == {"email": 1}
    text = "[" * 100_000 + '"a@b.io"' + "]" * 100_000
    out, counts = MASK.redact_json(text)  # json.loads gives up (RecursionError): text fallback
    assert out is not None and "a@b.io" not in out and counts == {"email": 1}


def test_redact_attribute_types() -> None:
    assert MASK.redact_attribute("user.note", "a@b.io")[0] == "<EMAIL>"
    assert MASK.redact_attribute("tags", ["a@b.io", 3])[0] == ["<EMAIL>", 3]
    assert MASK.redact_attribute("count", 42) == (42, {})
    assert MASK.redact_attribute("gen_ai.input.messages", json.dumps(["a@b.io"]))[0] == '["<EMAIL>"]'


def test_switch_is_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(redaction.ENV_REDACT, raising=False)
    value = json.dumps(MESSAGES)
    assert redaction.redact_content_attribute("gen_ai.input.messages", value) is value


@pytest.mark.parametrize(
    ("environ", "expected_mode", "expected_kinds"),
    [
        pytest.param({"OTEL_LLM_REDACT": "true"}, Mode.MASK, frozenset(Kind), id="on"),
        pytest.param(
            {"OTEL_LLM_REDACT": "1", "OTEL_LLM_REDACT_MODE": "DROP"}, Mode.DROP, frozenset(Kind), id="drop"
        ),
        pytest.param(
            {"OTEL_LLM_REDACT": "on", "OTEL_LLM_REDACT_MODE": "hash"},
            Mode.MASK,
            frozenset(Kind),
            id="hash-without-key",
        ),
        pytest.param(
            {"OTEL_LLM_REDACT": "yes", "OTEL_LLM_REDACT_MODE": "weird"},
            Mode.MASK,
            frozenset(Kind),
            id="bad-mode",
        ),
        pytest.param(
            {"OTEL_LLM_REDACT": "1", "OTEL_LLM_REDACT_KINDS": "email, phone,nope"},
            Mode.MASK,
            frozenset({Kind.EMAIL, Kind.PHONE}),
            id="kinds",
        ),
    ],
)
def test_config_from_env(
    environ: dict[str, str], expected_mode: Mode, expected_kinds: frozenset[Kind]
) -> None:
    config = redaction.config_from_env(environ)
    assert config is not None
    assert (config.mode, config.kinds) == (expected_mode, expected_kinds)


def test_config_from_env_off_values() -> None:
    assert redaction.config_from_env({}) is None
    assert redaction.config_from_env({"OTEL_LLM_REDACT": "false"}) is None


def test_switch_from_env_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_LLM_REDACT", "1")
    monkeypatch.setenv("OTEL_LLM_REDACT_MODE", "hash")
    monkeypatch.setenv("OTEL_LLM_REDACT_HASH_KEY", "k")
    out = redaction.redact_content_attribute("gen_ai.input.messages", json.dumps(MESSAGES))
    assert isinstance(out, str) and "jane@corp.example" not in out and "<EMAIL:" in out
    json.loads(out)


def test_switch_fails_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken(Redactor):
        def redact_attribute(self, name: str, value: Any) -> tuple[Any, dict[str, int]]:
            raise RuntimeError("boom")

    redaction.configure(Broken())
    assert redaction.redact_content_attribute("gen_ai.input.messages", "[]") is None


def test_never_logs_values(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_LLM_REDACT", "1")
    monkeypatch.setenv("OTEL_LLM_REDACT_MODE", "hash")  # no key: warns
    with caplog.at_level("DEBUG"):
        redaction.redact_content_attribute("gen_ai.input.messages", '["secret jane@corp.example"]')
    assert "jane" not in caplog.text


def test_imports_only_the_standard_library() -> None:
    tree = ast.parse(Path(redaction.__file__).read_text(encoding="utf-8"))
    modules = {
        (node.module or "").split(".")[0] if isinstance(node, ast.ImportFrom) else alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    modules.discard("__future__")
    assert modules <= sys.stdlib_module_names, modules - sys.stdlib_module_names


_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=40))
_json = st.recursive(
    _json_leaf,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
_pii = st.sampled_from(
    ["a@b.io", "4111 1111 1111 1111", "+44 20 7946 0958", "10.1.2.3", "AKIAIOSFODNN7EXAMPLE"]
)


def _shape(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shape(item) for item in value]
    return type(value).__name__


@settings(max_examples=150, deadline=None)
@given(document=_json, secret=_pii)
def test_structure_is_preserved_for_any_document(document: Any, secret: str) -> None:
    wrapped = {"parts": [{"type": "text", "content": f"x {secret} y"}], "rest": document}
    redacted, counts = MASK.redact_json(json.dumps(wrapped))
    assert redacted is not None
    out = json.loads(redacted)
    assert _shape(out) == _shape(wrapped)
    assert secret not in out["parts"][0]["content"]
    assert sum(counts.values()) >= 1


def test_text_over_the_limit_is_not_scanned_but_masked() -> None:
    small = Redactor(RedactionConfig(max_text_length=10))
    assert small.redact_text("a@b.io and more") == ("<UNSCANNED>", {"unscanned": 1})
    drop = Redactor(RedactionConfig(mode=Mode.DROP, max_text_length=10))
    assert drop.redact_text("hello world!") == (None, {"unscanned": 1})
