"""collector.auth: scoped tokens (401 vs 403), token files, the loopback rule for admin endpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from collector.auth import (
    AccessConfig,
    AccessControl,
    Decision,
    Scope,
    TokenConfig,
    admin_endpoint_problem,
    is_loopback,
    parse_tokens_file,
    peer_is_loopback,
)

INGEST = "ingest-token-0123456789"
FEEDBACK = "feedback-token-0123456789"
ADMIN = "admin-token-0123456789ab"

ACCESS = AccessControl(
    [
        TokenConfig(name="app", token=SecretStr(INGEST), scopes=[Scope.INGEST]),
        TokenConfig(name="web", token=SecretStr(FEEDBACK), scopes=[Scope.FEEDBACK]),
        TokenConfig(name="ops", token=SecretStr(ADMIN), scopes=[Scope.ADMIN, Scope.FEEDBACK]),
    ]
)


@pytest.mark.parametrize(
    ("header", "scope", "expected"),
    [
        pytest.param(f"Bearer {INGEST}", Scope.INGEST, Decision.ALLOWED, id="ingest-ok"),
        pytest.param(f"bearer {INGEST}", Scope.INGEST, Decision.ALLOWED, id="scheme-case-insensitive"),
        pytest.param(f"Bearer {INGEST}", Scope.FEEDBACK, Decision.FORBIDDEN, id="ingest-token-on-feedback"),
        pytest.param(f"Bearer {INGEST}", Scope.ADMIN, Decision.FORBIDDEN, id="ingest-token-on-admin"),
        pytest.param(f"Bearer {FEEDBACK}", Scope.INGEST, Decision.FORBIDDEN, id="feedback-token-on-ingest"),
        pytest.param(f"Bearer {ADMIN}", Scope.FEEDBACK, Decision.ALLOWED, id="admin-with-feedback"),
        pytest.param(None, Scope.INGEST, Decision.UNAUTHENTICATED, id="missing"),
        pytest.param("", Scope.INGEST, Decision.UNAUTHENTICATED, id="empty"),
        pytest.param(INGEST, Scope.INGEST, Decision.UNAUTHENTICATED, id="no-scheme"),
        pytest.param(f"Basic {INGEST}", Scope.INGEST, Decision.UNAUTHENTICATED, id="wrong-scheme"),
        pytest.param(f"Bearer {INGEST[:-1]}", Scope.INGEST, Decision.UNAUTHENTICATED, id="prefix-of-token"),
        pytest.param(f"Bearer {INGEST}x", Scope.INGEST, Decision.UNAUTHENTICATED, id="token-plus-char"),
    ],
)
def test_decisions(header: str | None, scope: Scope, expected: Decision) -> None:
    assert ACCESS.decide(header, scope) is expected


def test_status_codes() -> None:
    assert (Decision.UNAUTHENTICATED.http_status, Decision.UNAUTHENTICATED.grpc_code) == (
        401,
        "UNAUTHENTICATED",
    )
    assert (Decision.FORBIDDEN.http_status, Decision.FORBIDDEN.grpc_code) == (403, "PERMISSION_DENIED")


def test_scoped_authenticator_is_a_drop_in() -> None:
    auth = ACCESS.authenticator(Scope.INGEST)
    assert auth.header == "authorization"
    assert auth.check(f"Bearer {INGEST}".encode())
    assert not auth.check(f"Bearer {FEEDBACK}")
    assert auth.decide(f"Bearer {FEEDBACK}") is Decision.FORBIDDEN


@settings(max_examples=200, deadline=None)
@given(header=st.one_of(st.none(), st.text(max_size=80), st.binary(max_size=80)))
def test_garbage_headers_never_authenticate(header: str | bytes | None) -> None:
    for scope in Scope:
        assert ACCESS.decide(header, scope) is Decision.UNAUTHENTICATED


def test_tokens_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"# comment\n\ningest {INGEST} app\nadmin,feedback {ADMIN}\n", encoding="utf-8")
    config = AccessConfig(scope=Scope.ADMIN, tokens_file=str(path))
    assert config.problems() == []
    access = AccessControl.from_config(config)
    assert access.decide(f"Bearer {ADMIN}", Scope.ADMIN) is Decision.ALLOWED
    assert access.identify(f"Bearer {INGEST}") == ("app", frozenset({Scope.INGEST}))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            f"root {INGEST}", "line 1: unknown scope root (expected ingest, feedback, admin)", id="scope"
        ),
        pytest.param("ingest short", "line 1: token shorter than 16 characters", id="short"),
        pytest.param(
            f"\ningest {INGEST} a b", "line 2: expected `<scopes> <token> [name]`, got 4 fields", id="fields"
        ),
    ],
)
def test_tokens_file_errors_never_echo_the_token(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_tokens_file(text)
    assert str(info.value) == message
    assert INGEST not in str(info.value)


def test_config_problems() -> None:
    assert AccessConfig().problems() == [("tokens", "give at least one token, or tokens_file")]
    short = AccessConfig(tokens=[TokenConfig(token=SecretStr("abc"))])
    assert short.problems() == [("tokens::0::token", "expected at least 16 characters, got 3")]
    assert "abc" not in repr(short)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("127.9.9.9", True),
        ("localhost", True),
        ("[::1]", True),
        ("::1", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.1", False),
        ("example.com", False),
        ("", False),
    ],
)
def test_is_loopback(host: str, expected: bool) -> None:
    assert is_loopback(host) is expected


@pytest.mark.parametrize(
    ("peer", "expected"),
    [
        (("127.0.0.1", 5000), True),
        (("10.1.2.3", 5000), False),
        ("ipv4:127.0.0.1:5000", True),
        ("ipv6:[::1]:5000", True),
        ("ipv6:%5B::1%5D:5000", True),
        ("ipv4:192.0.2.1:5000", False),
        ("unix:/tmp/sock", True),
        (None, False),
    ],
)
def test_peer_is_loopback(peer: object, expected: bool) -> None:
    assert peer_is_loopback(peer) is expected  # type: ignore[arg-type]


def test_admin_endpoint_rule() -> None:
    admin = AccessConfig(
        scope=Scope.ADMIN, tokens=[TokenConfig(token=SecretStr(ADMIN), scopes=[Scope.ADMIN])]
    )
    ingest = AccessConfig(scope=Scope.INGEST, tokens=[TokenConfig(token=SecretStr(INGEST))])
    assert admin_endpoint_problem("127.0.0.1:13133", allow_remote=False, access=None) is None
    assert admin_endpoint_problem("0.0.0.0:13133", allow_remote=False, access=admin) == (
        "endpoint",
        "admin endpoints listen on loopback only unless allow_remote is true, got '0.0.0.0:13133'",
    )
    assert admin_endpoint_problem("0.0.0.0:13133", allow_remote=True, access=ingest) == (
        "auth",
        "a remote admin endpoint needs auth with scope admin",
    )
    assert admin_endpoint_problem("[::]:13133", allow_remote=True, access=admin) is None


def test_plain_string_tokens_get_the_endpoint_scope() -> None:
    """`tokens: ["${env:X}"]`, as the receivers take them today, keeps working after adopting scopes."""
    config = AccessConfig.model_validate(
        {"scope": "feedback", "tokens": [FEEDBACK, {"token": ADMIN, "scopes": ["admin"]}]}
    )
    access = AccessControl.from_config(config)
    assert access.decide(f"Bearer {FEEDBACK}", Scope.FEEDBACK) is Decision.ALLOWED
    assert access.decide(f"Bearer {FEEDBACK}", Scope.INGEST) is Decision.FORBIDDEN
    assert access.decide(f"Bearer {ADMIN}", Scope.FEEDBACK) is Decision.FORBIDDEN
    assert AccessConfig.model_validate({"tokens": ["short"]}).problems() == [
        ("tokens::0", "expected at least 16 characters, got 5")
    ]
