"""Access control shared by every endpoint: scoped bearer tokens and the loopback rule for admin endpoints.

Three scopes, one per kind of endpoint, so a leaked ingestion token (it sits in every instrumented
application's environment) can neither post feedback nor read the collector's configuration:

- ``ingest``: the ``otlp`` receiver (gRPC and HTTP).
- ``feedback``: the ``feedback`` extension (``POST /v1/feedback``; often called from browsers' backends).
- ``admin``: endpoints that reveal or change the collector itself (effective config, health detail
  with refusal reasons, state dumps). These are **off or loopback-only by default**.

Tokens are configured once per endpoint or in one shared file; each token lists its scopes::

    auth:
      scope: ingest                                   # what this endpoint requires
      tokens:
        - {name: checkout-app, token: "${env:OTEL_LLM_INGEST_TOKEN}", scopes: [ingest]}
        - {name: ops, token: "${env:OTEL_LLM_ADMIN_TOKEN}", scopes: [admin, feedback]}
        - "${env:OTEL_LLM_OTHER_TOKEN}"               # a plain string: this endpoint's scope
      tokens_file: /etc/otel-llm/tokens               # lines: "<scope>[,<scope>...] <token> [name]"

The receivers' earlier ``auth`` keys keep working: ``tokens`` as plain strings (each gets the
endpoint's scope) and ``token_file`` (one plain token per line, each with the endpoint's scope).

An endpoint answers **401** when the request carries no token or an unknown one, and **403** when the
token is known but lacks the endpoint's scope (the two are counted apart; neither logs the token).
Comparison is constant-time per token and every token is compared, so timing does not tell which
prefix matched. :class:`ScopedAuthenticator` has the ``header`` / ``check(value) -> bool`` interface of
the receivers' current ``Authenticator``, so adopting scopes is a one-line change there.

:func:`admin_endpoint_problem` is the start-up rule for admin endpoints: loopback binds are fine;
anything else needs both ``allow_remote: true`` and an ``admin`` token, or it is a config error.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum, StrEnum
from pathlib import Path
from urllib.parse import unquote

from pydantic import Field, SecretStr

from collector.component import ComponentConfig

__all__ = [
    "AccessConfig",
    "AccessControl",
    "AdminAccessConfig",
    "Decision",
    "FeedbackAccessConfig",
    "Scope",
    "ScopedAuthenticator",
    "TokenConfig",
    "admin_endpoint_problem",
    "is_loopback",
    "parse_tokens_file",
    "peer_is_loopback",
]


class Scope(StrEnum):
    """What a token may do."""

    INGEST = "ingest"
    FEEDBACK = "feedback"
    ADMIN = "admin"


class Decision(Enum):
    """Outcome of one check, with the HTTP status and gRPC code name an endpoint answers."""

    ALLOWED = (200, "OK")
    UNAUTHENTICATED = (401, "UNAUTHENTICATED")
    FORBIDDEN = (403, "PERMISSION_DENIED")

    @property
    def http_status(self) -> int:
        return self.value[0]

    @property
    def grpc_code(self) -> str:
        """Name of the ``grpc.StatusCode`` member to answer with."""
        return self.value[1]


class TokenConfig(ComponentConfig):
    """One accepted token."""

    name: str = Field("", description="Who holds it (counted and logged instead of the token).")
    token: SecretStr = Field(description="The token; use `${env:NAME}`, never a literal in the file.")
    scopes: list[Scope] = Field(
        default_factory=lambda: [Scope.INGEST], description="What it may do: ingest, feedback, admin."
    )


class AccessConfig(ComponentConfig):
    """``auth`` of one endpoint: the scope it requires and the tokens it knows."""

    scope: Scope = Field(Scope.INGEST, description="Scope a request needs here: ingest, feedback or admin.")
    tokens: list[TokenConfig | SecretStr] = Field(
        default_factory=list,
        description="Accepted tokens: `{token, scopes, name}`, or a plain string that gets this endpoint's scope.",
    )
    tokens_file: str | None = Field(
        None,
        description="File of further tokens, one per line: `<scope>[,<scope>...] <token> [name]`; `#` comments. Read at start.",
    )
    token_file: str | None = Field(
        None,
        description="Earlier form of `tokens_file`: one plain token per line, each with this endpoint's "
        "scope. Read at start.",
    )
    header: str = Field("authorization", description="Header (gRPC metadata key) that carries the token.")
    scheme: str = Field("Bearer", description="Scheme word before the token; empty for a bare token.")

    def problems(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if not self.tokens and self.tokens_file is None and self.token_file is None:
            out.append(("tokens", "give at least one token, or tokens_file"))
        for index, entry in enumerate(self.entries()):
            secret = entry.token.get_secret_value()
            where = (
                f"tokens::{index}::token"
                if isinstance(self.tokens[index], TokenConfig)
                else f"tokens::{index}"
            )
            if len(secret) < 16:
                out.append((where, f"expected at least 16 characters, got {len(secret)}"))
            if not entry.scopes:
                out.append((f"tokens::{index}::scopes", "expected at least one scope"))
        if self.tokens_file is not None:
            path = Path(self.tokens_file)
            if not path.is_file():
                out.append(("tokens_file", f"no such file: {self.tokens_file}"))
            else:
                try:
                    parse_tokens_file(path.read_text(encoding="utf-8"))
                except ValueError as exc:
                    out.append(("tokens_file", str(exc)))
        if self.token_file is not None:
            path = Path(self.token_file)
            if not path.is_file():
                out.append(("token_file", f"no such file: {self.token_file}"))
            else:
                for number, token in _plain_token_lines(path.read_text(encoding="utf-8")):
                    if len(token) < 16:
                        out.append(("token_file", f"line {number}: token shorter than 16 characters"))
        return out

    def required_scope_problem(self, required: Scope) -> tuple[str, str] | None:
        """A problem when this ``auth`` is set on an endpoint that requires another scope."""
        if self.scope is required:
            return None
        return ("scope", f"this endpoint requires scope {required.value}, got {self.scope.value}")

    def entries(self) -> list[TokenConfig]:
        """The configured tokens as entries; a plain string token gets this endpoint's scope."""
        return [
            entry if isinstance(entry, TokenConfig) else TokenConfig(token=entry, scopes=[self.scope])
            for entry in self.tokens
        ]


class FeedbackAccessConfig(AccessConfig):
    """``auth`` of the feedback endpoint: as :class:`AccessConfig`, plain string tokens get ``feedback``."""

    scope: Scope = Field(Scope.FEEDBACK, description="Scope a request needs here: feedback.")


class AdminAccessConfig(AccessConfig):
    """``auth`` of an admin endpoint: as :class:`AccessConfig`, plain string tokens get ``admin``."""

    scope: Scope = Field(Scope.ADMIN, description="Scope a request needs here: admin.")


@dataclass(frozen=True, slots=True)
class _Token:
    name: str
    secret: bytes
    scopes: frozenset[Scope]


def _plain_token_lines(text: str) -> list[tuple[int, str]]:
    """(line number, token) of each non-empty line of a ``token_file`` (the earlier, scope-less form)."""
    return [(number, line.strip()) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]


def parse_tokens_file(text: str) -> list[TokenConfig]:
    """Parse ``<scope>[,<scope>...] <token> [name]`` lines; raise ``ValueError`` naming the bad line.

    The message never contains the token.
    """
    known = {scope.value for scope in Scope}
    entries: list[TokenConfig] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) not in (2, 3):
            raise ValueError(f"line {number}: expected `<scopes> <token> [name]`, got {len(fields)} fields")
        scopes = [part for part in fields[0].split(",") if part]
        unknown = [scope for scope in scopes if scope not in known]
        if unknown or not scopes:
            raise ValueError(
                f"line {number}: unknown scope {', '.join(unknown) or '(none)'} (expected ingest, feedback, admin)"
            )
        if len(fields[1]) < 16:
            raise ValueError(f"line {number}: token shorter than 16 characters")
        entries.append(
            TokenConfig(
                name=fields[2] if len(fields) == 3 else f"line{number}",
                token=SecretStr(fields[1]),
                scopes=[Scope(scope) for scope in scopes],
            )
        )
    return entries


class AccessControl:
    """The tokens of one endpoint (or of several sharing a config); immutable and thread-safe."""

    def __init__(
        self, tokens: Iterable[TokenConfig], header: str = "authorization", scheme: str = "Bearer"
    ) -> None:
        self.header = header.lower()
        self._prefix = f"{scheme} ".encode() if scheme else b""
        self._tokens = tuple(
            _Token(entry.name, entry.token.get_secret_value().encode(), frozenset(entry.scopes))
            for entry in tokens
        )

    @classmethod
    def from_config(cls, config: AccessConfig) -> AccessControl:
        """Tokens from the config and its ``tokens_file`` (read now: call at start, not per request)."""
        tokens = config.entries()
        if config.tokens_file is not None:
            tokens.extend(parse_tokens_file(Path(config.tokens_file).read_text(encoding="utf-8")))
        if config.token_file is not None:
            text = Path(config.token_file).read_text(encoding="utf-8")
            tokens.extend(
                TokenConfig(name=f"token_file:{number}", token=SecretStr(token), scopes=[config.scope])
                for number, token in _plain_token_lines(text)
            )
        return cls(tokens, config.header, config.scheme)

    def identify(self, value: str | bytes | None) -> tuple[str, frozenset[Scope]] | None:
        """(name, scopes) of the token in a header value, or ``None``; compares against every token."""
        if not value:
            return None
        given = value.encode() if isinstance(value, str) else value
        if self._prefix:
            # The scheme word is case-insensitive (RFC 9110); the token is not.
            if given[: len(self._prefix)].lower() != self._prefix.lower():
                return None
            given = given[len(self._prefix) :].strip()
        found: _Token | None = None
        for token in self._tokens:
            if hmac.compare_digest(given, token.secret) and found is None:
                found = token
        return (found.name, found.scopes) if found is not None else None

    def decide(self, value: str | bytes | None, scope: Scope) -> Decision:
        """401 for no or unknown token, 403 for a known token without ``scope``, else allowed."""
        identity = self.identify(value)
        if identity is None:
            return Decision.UNAUTHENTICATED
        return Decision.ALLOWED if scope in identity[1] else Decision.FORBIDDEN

    def authenticator(self, scope: Scope) -> ScopedAuthenticator:
        """A drop-in for the receivers' ``Authenticator`` that requires ``scope``."""
        return ScopedAuthenticator(self, scope)


class ScopedAuthenticator:
    """``header`` and ``check(value) -> bool`` (the receivers' interface), plus :meth:`decide`."""

    __slots__ = ("_access", "header", "scope")

    def __init__(self, access: AccessControl, scope: Scope) -> None:
        self._access = access
        self.scope = scope
        self.header = access.header

    def check(self, value: str | bytes | None) -> bool:
        return self._access.decide(value, self.scope) is Decision.ALLOWED

    def decide(self, value: str | bytes | None) -> Decision:
        return self._access.decide(value, self.scope)


def is_loopback(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ``::1`` (brackets allowed); False for wildcards and names."""
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def admin_endpoint_problem(
    endpoint: str, *, allow_remote: bool, access: AccessConfig | None
) -> tuple[str, str] | None:
    """The start-up rule for an admin endpoint, as a ``(key, message)`` problem or ``None``.

    Loopback: fine (tokens optional). Any other address (``0.0.0.0`` included) needs
    ``allow_remote: true`` *and* an ``auth`` whose scope is ``admin``.
    """
    host = endpoint.rpartition(":")[0]
    if is_loopback(host):
        return None
    if not allow_remote:
        return (
            "endpoint",
            f"admin endpoints listen on loopback only unless allow_remote is true, got {endpoint!r}",
        )
    if access is None or access.scope is not Scope.ADMIN:
        return ("auth", "a remote admin endpoint needs auth with scope admin")
    return None


def peer_is_loopback(peer: Sequence[object] | str | None) -> bool:
    """Whether a client address is loopback: ``(host, port)`` from ``http.server``, or a gRPC peer
    string (``ipv4:127.0.0.1:5000``, ``ipv6:[::1]:5000``, ``ipv6:%5B::1%5D:5000``, ``unix:...``)."""
    if not peer:
        return False
    if not isinstance(peer, str):
        return is_loopback(str(peer[0]))
    if peer.startswith("unix:"):
        return True
    if peer.startswith(("ipv4:", "ipv6:")):
        return is_loopback(unquote(peer[5:]).rpartition(":")[0])
    return is_loopback(peer)
