"""Find and redact personal data and secrets in text and in GenAI content attributes (stdlib only).

The same rules run in the application (so content that must not leave the process never does) and in
the collector's ``pii`` processor. Regular expressions find candidates; checksums and number-plan rules
confirm them (Luhn for cards, mod-97 for IBANs, the SSA's area/group/serial rules for SSNs, NANP rules
for North American phone numbers), which keeps order numbers, timestamps and version strings out.

Kinds (:class:`Kind`): ``email``, ``phone``, ``credit_card``, ``iban``, ``us_ssn``, ``ip_address``
(IPv4 and IPv6; loopback and unspecified addresses are left alone), ``api_key`` (OpenAI ``sk-``,
``sk-proj-``, Anthropic ``sk-ant-``, AWS ``AKIA``/``ASIA``, GitHub ``ghp_``/``github_pat_``, Google
``AIza``, Slack ``xox?-``, Stripe ``sk_live_``), ``jwt``, ``bearer_token`` (``Bearer <token>``),
``secret`` (``password=...``, ``api_key: ...`` assignments), plus custom patterns named by the user.

Modes (:class:`Mode`):

- ``mask``: ``alice@example.com`` → ``<EMAIL>``.
- ``hash``: → ``<EMAIL:5f0c2a9be1d4>``, a keyed HMAC-SHA256 of the normalised value (lower-cased
  email, digits of a phone or card number), cut to 12 hex digits: the same value maps to the same
  token under the same key, so joins and counts still work, and without the key the token cannot be
  brute-forced from a list of candidates. A key is required.
- ``drop``: a value in which anything was found is removed as a whole (the caller drops the attribute).

Content attributes (:data:`CONTENT_ATTRIBUTES`) hold JSON (``gen_ai.input.messages`` and so on).
Their string leaves are redacted one by one and the JSON is written back in the compact form the
instrumentor uses, so the structure stays valid; keys, numbers and ``blob`` payloads are left alone.
A value that is not valid JSON (cut by ``OTEL_LLM_CONTENT_MAX_LENGTH``) is redacted as plain text.

Nothing here logs or keeps a redacted value; results carry counts by kind only.

Use in code::

    from otel_llm.redaction import Redactor, RedactionConfig, Mode

    redactor = Redactor(RedactionConfig(mode=Mode.HASH, hash_key=b"from-a-secret-store"))
    text, counts = redactor.redact_text("mail bob@example.org or call +1 415 555 0100")
    # text == "mail <EMAIL:...> or call <PHONE:...>", counts == {"email": 1, "phone": 1}

Application-side switch (read once, on the first call of :func:`redact_content_attribute`)::

    OTEL_LLM_REDACT=true               # off by default
    OTEL_LLM_REDACT_MODE=mask          # mask (default) | hash | drop
    OTEL_LLM_REDACT_HASH_KEY=...       # required for hash; without it, mask is used and a warning logged
    OTEL_LLM_REDACT_KINDS=email,phone  # default: every built-in kind

The instrumentor calls :func:`redact_content_attribute` on each content attribute after serialising it
to JSON and before truncating it, and skips the attribute when the result is ``None``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

__all__ = [
    "CONTENT_ATTRIBUTES",
    "ENV_REDACT",
    "ENV_REDACT_HASH_KEY",
    "ENV_REDACT_KINDS",
    "ENV_REDACT_MODE",
    "UNSCANNED",
    "UNSCANNED_MASK",
    "CustomPattern",
    "Finding",
    "Kind",
    "Mode",
    "RedactionConfig",
    "Redactor",
    "config_from_env",
    "configure",
    "redact_content_attribute",
]

_log = logging.getLogger(__name__)

ENV_REDACT: Final = "OTEL_LLM_REDACT"
"""``true``/``1``/``yes``/``on`` switches application-side redaction on. Default: off."""
ENV_REDACT_MODE: Final = "OTEL_LLM_REDACT_MODE"
"""``mask`` (default), ``hash`` or ``drop``; anything else means ``mask``."""
ENV_REDACT_HASH_KEY: Final = "OTEL_LLM_REDACT_HASH_KEY"
"""The HMAC key for ``hash`` mode (UTF-8). Without it ``hash`` falls back to ``mask``."""
ENV_REDACT_KINDS: Final = "OTEL_LLM_REDACT_KINDS"
"""Comma-separated kinds to look for (see :class:`Kind`). Default: all; unknown names are ignored."""

# Attribute names whose values are GenAI JSON documents. The first three are in the generated
# conventions; the tool, retrieval and memory ones are not yet (TODO(#10): use the constants once
# otel_llm.conventions has them), so they are spelt here, as in the semantic conventions.
CONTENT_ATTRIBUTES: Final = frozenset(
    {
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.system_instructions",
        "gen_ai.tool.definitions",
        "gen_ai.tool.call.arguments",
        "gen_ai.tool.call.result",
        "gen_ai.retrieval.query.text",
        "gen_ai.retrieval.documents",
        "gen_ai.memory.query.text",
        "gen_ai.memory.records",
        # Legacy (≤1.28) span attributes and event bodies' field names.
        "gen_ai.prompt",
        "gen_ai.completion",
    }
)


#: Count key and replacement for text over ``max_text_length``.
UNSCANNED: Final = "unscanned"
UNSCANNED_MASK: Final = "<UNSCANNED>"


class Kind(StrEnum):
    """What a finding is; also the label of the redaction counters and the mask's text."""

    EMAIL = "email"
    PHONE = "phone"
    CREDIT_CARD = "credit_card"
    IBAN = "iban"
    US_SSN = "us_ssn"
    IP_ADDRESS = "ip_address"
    API_KEY = "api_key"
    JWT = "jwt"
    BEARER_TOKEN = "bearer_token"
    SECRET = "secret"


class Mode(StrEnum):
    """What replaces a finding."""

    MASK = "mask"
    HASH = "hash"
    DROP = "drop"


@dataclass(frozen=True)
class CustomPattern:
    """A user-defined kind: ``name`` labels counts and masks; a group named ``pii``, if any, is what is replaced."""

    name: str
    pattern: str

    def compile(self) -> re.Pattern[str]:
        """The compiled pattern; raises ``re.error`` (with the position) when it is invalid."""
        return re.compile(self.pattern)


@dataclass(frozen=True)
class RedactionConfig:
    """Which kinds to look for and what to do with them."""

    # Built-in kinds to look for; default every one.
    kinds: frozenset[Kind] = frozenset(Kind)
    mode: Mode = Mode.MASK
    # HMAC key for Mode.HASH; required there, ignored otherwise.
    hash_key: bytes | None = None
    # Hex digits of the HMAC kept in a hash token: 12 (48 bits) keeps collisions negligible below
    # about ten million distinct values per kind while staying short in a prompt.
    hash_length: int = 12
    custom: tuple[CustomPattern, ...] = ()
    # Longest text scanned, in characters; a longer one is replaced as a whole by `<UNSCANNED>` (or
    # dropped) and counted as `unscanned`: failing closed bounds the time a hostile value can cost
    # (about 0.25 s per MiB of prose, 1.5 s per MiB of text dense with matches, on one core).
    max_text_length: int = 1 << 20


# --- validators ---------------------------------------------------------------------------------------


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def _luhn_ok(number: str) -> bool:
    total = 0
    for index, ch in enumerate(reversed(number)):
        digit = ord(ch) - 48
        if index % 2:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def _card_prefix_ok(number: str) -> bool:
    """Issuer ranges in use (Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay, Maestro)."""
    length = len(number)
    two, four = int(number[:2]), int(number[:4])
    if number[0] == "4":
        return length in (13, 16, 19)
    if 51 <= two <= 55 or 2221 <= four <= 2720:
        return length == 16
    if two in (34, 37):
        return length == 15
    if number.startswith("6011") or two == 65 or 644 <= int(number[:3]) <= 649:
        return 16 <= length <= 19
    if 3528 <= four <= 3589:
        return 16 <= length <= 19
    if two in (36, 38, 39) or 300 <= int(number[:3]) <= 305:
        return 14 <= length <= 19
    if two == 62 or two in (50, 56, 57, 58, 63, 67):
        return 16 <= length <= 19
    return False


def _card(text: str) -> bool:
    number = _digits(text)
    return 13 <= len(number) <= 19 and _card_prefix_ok(number) and _luhn_ok(number)


# Lengths of IBANs by country (ISO 13616 registry) for the countries whose format is stable.
_IBAN_LENGTHS: Final = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
    "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24,
    "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21,
    "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28,
    "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27,
    "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24,
    "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23,
    "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip


def _iban_ok(compact: str) -> bool:
    if _IBAN_LENGTHS.get(compact[:2]) != len(compact):
        return False
    rearranged = compact[4:] + compact[:4]
    try:
        return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1
    except ValueError:
        return False


def _iban_span(match: re.Match[str]) -> tuple[int, int] | None:
    """The IBAN at the match's start, cut to its country's length (the regex may run into a next word)."""
    text, start = match.string, match.start()
    expected = _IBAN_LENGTHS.get(text[start : start + 2])
    if expected is None:
        return None
    count, position, end = 0, start, match.end()
    while position < end and count < expected:
        if text[position] != " ":
            count += 1
        position += 1
    if count != expected or (position < len(text) and text[position].isalnum()):
        return None
    return (start, position) if _iban_ok(_compact_upper(text[start:position])) else None


def _ssn_ok(area: str, group: str, serial: str) -> bool:
    area_n = int(area)
    return area_n != 0 and area_n != 666 and area_n < 900 and group != "00" and serial != "0000"


def _nanp_ok(number: str) -> bool:
    """Ten NANP digits: area code and exchange start with 2-9, and neither is an N11 service code."""
    if len(number) == 11 and number[0] == "1":
        number = number[1:]
    if len(number) != 10:
        return False
    area, exchange = number[:3], number[3:6]
    return area[0] not in "01" and exchange[0] not in "01" and area[1:] != "11" and exchange[1:] != "11"


def _ip_ok(text: str) -> bool:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    # Loopback and unspecified addresses say nothing about a person or a host.
    return not (address.is_loopback or address.is_unspecified)


# --- detectors ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Detector:
    kind: str
    pattern: re.Pattern[str]
    # Cheap tests that decide whether the regex is worth running on a text (each tested once per text
    # and shared by the detectors that name it): the regex runs when any substring of `trigger` is in
    # the text, any of `trigger_lower` is in the lower-cased text, or `trigger_regex` is found. None of
    # the three set: always run. Most prose fails all of them, which is where the time goes.
    trigger: tuple[str, ...] = ()
    trigger_lower: tuple[str, ...] = ()
    trigger_regex: re.Pattern[str] | None = None
    # Confirms a match (checksum, number plan); gets the replaced text.
    check: Callable[[re.Match[str], str], bool] | None = None
    # Regex group that is replaced (0: the whole match); context words stay.
    group: int | str = 0
    # Value used for hashing; default the replaced text.
    normalise: Callable[[str], str] | None = None
    # Computes the span itself (instead of group + check); None rejects the match.
    refine: Callable[[re.Match[str]], tuple[int, int] | None] | None = None
    # Yields the candidate matches instead of `pattern.finditer` (anchored searches).
    finder: Callable[[str], Iterable[re.Match[str]]] | None = None

    def matches(self, text: str) -> Iterable[re.Match[str]]:
        return self.finder(text) if self.finder is not None else self.pattern.finditer(text)


_DIGIT = re.compile(r"\d")


def _left_free(match: re.Match[str], start: int, forbidden: str) -> bool:
    """The character before ``start`` is not a word character nor one of ``forbidden``.

    The patterns test their left boundary after their first literal or character class rather than
    with a leading lookbehind, because a pattern that begins with an assertion makes the regex engine
    try every position of the text, while one that begins with a literal lets it skip ahead.
    """
    if start == 0:
        return True
    before = match.string[start - 1]
    return not (before.isalnum() or before == "_" or before in forbidden)


# Image-file names look like addresses (`icon@2x.png`); these "top-level domains" are file types.
_FILE_SUFFIXES: Final = frozenset(
    {"png", "jpg", "jpeg", "gif", "svg", "webp", "bmp", "ico", "pdf", "js", "ts", "css", "html", "txt"}
)

_EMAIL = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9._%+'-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"(?P<tld>[A-Za-z]{2,24})(?![\w-])"
)
_EMAIL_LOCAL: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+'-")


def _email_matches(text: str) -> Iterable[re.Match[str]]:
    """From each ``@``, back to the start of its local part, then the regex from there.

    The local part is the longest run of address characters before the ``@``; a run that starts
    right after another word character (``é``) is part of a word, not an address.
    """
    at = text.find("@")
    while at != -1:
        start = at
        while start > 0 and text[start - 1] in _EMAIL_LOCAL:
            start -= 1
        if start < at and (start == 0 or not text[start - 1].isalnum()):
            match = _EMAIL.match(text, start)
            if match is not None:
                yield match
        at = text.find("@", at + 1)


def _email_ok(match: re.Match[str], _text: str) -> bool:
    local = match.group(0).partition("@")[0]
    return (
        match.group("tld").lower() not in _FILE_SUFFIXES
        and ".." not in local
        and not local.endswith(".")
        and not local.isdigit()
    )


# Digit boundaries: no digit, letter, dash, dot-digit or slash on either side, so parts of ids, dates,
# versions and paths never match.
_LEFT = r"(?<![\w/.+-])"
_RIGHT = r"(?![\w/-]|[.,]\d)"

_PHONE_INTERNATIONAL = re.compile(r"\+(?<![\w/.+-]\+)(?:\d[ .-]?(?:\(\d{1,4}\)[ .-]?)?){7,14}\d" + _RIGHT)
_PHONE_NANP = re.compile(_LEFT + r"(?:1[ .-]?)?(?:\(\d{3}\)[ ]?|\d{3}[ .-])\d{3}[ .-]\d{4}" + _RIGHT)
_PHONE_NATIONAL = re.compile(r"0(?<![\w/.+-]0)\d{1,4}(?:(?:[ ]\d{2,4}){2,4}|[ /-]\d{5,8})" + _RIGHT)
# Every NANP number ends in 3 digits, a separator, 4 digits.
_NANP_HINT = re.compile(r"\d{3}[ .-]\d{4}")
_PHONE_CONTEXT = re.compile(
    r"(?i:\b(?:phone|tel|telephone|mobile|cell|call|fax|whatsapp|sms)\b(?:\s*(?:no\.?|number|#))?[\s:.]{0,3})"
    r"(?P<number>\+?\d[\d ().-]{5,18}\d)" + _RIGHT
)


# A signed decimal (`+37.774929`, a latitude) is not a number in a phone plan.
_DECIMAL = re.compile(r"\+\d{1,3}\.\d+")
# Dates after a context word (`call 2024-05-01`).
_DATE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}")


def _phone_international_ok(match: re.Match[str], text: str) -> bool:
    return 8 <= len(_digits(text)) <= 15 and not _DECIMAL.fullmatch(text)


def _phone_nanp_ok(match: re.Match[str], text: str) -> bool:
    return _nanp_ok(_digits(text))


def _phone_national_ok(match: re.Match[str], text: str) -> bool:
    return 10 <= len(_digits(text)) <= 11


def _phone_context_ok(match: re.Match[str], text: str) -> bool:
    return 7 <= len(_digits(text)) <= 15 and not _DATE.fullmatch(text)


_CARD = re.compile(
    r"\d(?<![\w/.+-]\d)"
    r"(?:\d{12,18}"
    r"|\d{3}(?P<s1>[ -])\d{4}(?P=s1)\d{4}(?P=s1)\d{1,7}"
    r"|\d{3}(?P<s2>[ -])\d{6}(?P=s2)\d{4,5})" + _RIGHT
)
_FOUR_DIGITS = re.compile(r"\d{4}")

_IBAN = re.compile(r"[A-Z](?<![A-Za-z0-9][A-Z])[A-Z]\d{2}(?:[ ]?[A-Z0-9]{1,4}){3,8}(?![A-Za-z0-9])")

_SSN = re.compile(r"(?P<a>\d(?<![\w/.+-]\d)\d\d)(?P<sep>[- ])(?P<g>\d{2})(?P=sep)(?P<s>\d{4})" + _RIGHT)
_SSN_CONTEXT = re.compile(
    r"(?i:\b(?:ssn|social security(?: number| no\.?)?|ss#)\W{0,4})(?P<number>(?P<a>\d{3})(?P<g>\d{2})(?P<s>\d{4}))"
    + _RIGHT
)


def _ssn_check(match: re.Match[str], _text: str) -> bool:
    return _ssn_ok(match.group("a"), match.group("g"), match.group("s"))


_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4_HINT = re.compile(r"\d\.\d{1,3}\.\d")
_IPV4 = re.compile(r"(?<![\w./])(?:" + _OCTET + r"\.){3}" + _OCTET + r"(?!\w|\.\d)")
# A version like `v1.2.3.4` or `version 10.0.0.1`, or a section number, is not an address.
_VERSION_BEFORE = re.compile(r"(?i:(?:\bv|version|ver\.?|release|build|section|chapter|clause|step|§)\s*)$")


def _ipv4_ok(match: re.Match[str], text: str) -> bool:
    before = match.string[max(0, match.start() - 12) : match.start()]
    return _ip_ok(text) and not _VERSION_BEFORE.search(before)


# Every IPv6 address has two colons with at most four hex digits between them.
_IPV6_HINT = re.compile(r":[0-9A-Fa-f]{0,4}:")
_IPV6 = re.compile(
    r"(?<![\w:./])[0-9A-Fa-f:]{2,39}(?:(?<=:)(?:\d{1,3}\.){3}\d{1,3})?(?:%[0-9A-Za-z]+)?(?![\w:]|\.\d)"
)


def _ipv6_ok(match: re.Match[str], text: str) -> bool:
    address = text.partition("%")[0]
    # Two non-empty groups at least: `a::b`-like tokens in code (`std::cout`) are not addresses.
    groups = [part for part in address.replace(".", ":").split(":") if part]
    return len(groups) >= 3 and ":" in address and _ip_ok(address)


_API_KEY_PREFIXES: Final = (
    "sk-", "AKIA", "ASIA", "ABIA", "ACCA", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "AIza",
    "xox", "_live_", "_test_", "hf_",
)  # fmt: skip
_API_KEY = re.compile(
    r"(?:"
    r"sk-(?:ant-|proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}"
    r"|(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}"
    r"|gh[pousr]_[A-Za-z0-9]{36,255}"
    r"|github_pat_[A-Za-z0-9_]{22,255}"
    r"|AIza[0-9A-Za-z_-]{35}"
    r"|xox[abposr]-[A-Za-z0-9-]{10,}"
    r"|(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}"
    r"|hf_[A-Za-z0-9]{30,}"
    r")(?![\w-])"
)


def _api_key_ok(match: re.Match[str], text: str) -> bool:
    # Real keys are random: a digit somewhere. `sk-a-long-hyphenated-slug-of-words` is not a key.
    return _left_free(match, match.start(), "-") and any(ch.isdigit() for ch in text)


_JWT = re.compile(r"eyJ(?<![\w-]eyJ)[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{8,}(?![\w-])")
_BEARER = re.compile(r"(?i:\bbearer\s+)(?P<token>[A-Za-z0-9._~+/-]{12,}=*)(?![\w.~+/-])")
# `(?<!<)`: a hash token of our own (`<API_KEY:5f0c...>`) reads like `api_key: value`.
_SECRET = re.compile(
    r"(?i:(?<!<)\b(?:password|passwd|pwd|secret|client_secret|api[_-]?key|access[_-]?token|auth[_-]?token"
    r"|aws_secret_access_key)\b[\"']?\s*[:=]\s*[\"']?)(?P<value>[^\s\"',;]{6,})"
)


def _token_ok(match: re.Match[str], text: str) -> bool:
    # Masks from an earlier pass (`<API_KEY>`) and placeholders (`${TOKEN}`, `***`) are not secrets.
    return not (text.startswith(("<", "${", "{{", "***")) or set(text) <= {"*", "x", "X", "."})


def _lower(text: str) -> str:
    return text.lower()


def _compact_upper(text: str) -> str:
    return text.replace(" ", "").upper()


_BUILTIN: Final[tuple[_Detector, ...]] = (
    # Order matters only for ties (same start, same length): earlier wins.
    _Detector(Kind.API_KEY, _API_KEY, trigger=_API_KEY_PREFIXES, check=_api_key_ok),
    _Detector(Kind.JWT, _JWT, trigger=("eyJ",)),
    _Detector(Kind.BEARER_TOKEN, _BEARER, trigger_lower=("bearer",), check=_token_ok, group="token"),
    _Detector(
        Kind.SECRET,
        _SECRET,
        trigger_lower=("pass", "pwd", "secret", "key", "token"),
        check=_token_ok,
        group="value",
    ),
    _Detector(Kind.EMAIL, _EMAIL, trigger=("@",), check=_email_ok, normalise=_lower, finder=_email_matches),
    _Detector(
        Kind.CREDIT_CARD, _CARD, trigger_regex=_FOUR_DIGITS, check=lambda m, t: _card(t), normalise=_digits
    ),
    _Detector(Kind.IBAN, _IBAN, trigger_regex=_DIGIT, normalise=_compact_upper, refine=_iban_span),
    _Detector(Kind.US_SSN, _SSN, trigger_regex=_FOUR_DIGITS, check=_ssn_check, normalise=_digits),
    _Detector(
        Kind.US_SSN,
        _SSN_CONTEXT,
        trigger_lower=("ssn", "social security", "ss#"),
        check=_ssn_check,
        group="number",
    ),
    _Detector(
        Kind.PHONE,
        _PHONE_INTERNATIONAL,
        trigger=("+",),
        check=_phone_international_ok,
        normalise=_digits,
    ),
    _Detector(Kind.PHONE, _PHONE_NANP, trigger_regex=_NANP_HINT, check=_phone_nanp_ok, normalise=_digits),
    _Detector(Kind.PHONE, _PHONE_NATIONAL, trigger=("0",), check=_phone_national_ok, normalise=_digits),
    _Detector(
        Kind.PHONE,
        _PHONE_CONTEXT,
        trigger_lower=("phone", "tel", "mobile", "cell", "call", "fax", "whatsapp", "sms"),
        check=_phone_context_ok,
        group="number",
        normalise=_digits,
    ),
    _Detector(Kind.IP_ADDRESS, _IPV4, trigger_regex=_IPV4_HINT, check=_ipv4_ok),
    _Detector(Kind.IP_ADDRESS, _IPV6, trigger_regex=_IPV6_HINT, check=_ipv6_ok),
)


# --- the redactor -------------------------------------------------------------------------------------


class _Hints:
    """The triggers of one text, each tested at most once however many detectors name it."""

    __slots__ = ("_lower", "_seen", "_text")

    def __init__(self, text: str) -> None:
        self._text = text
        self._lower: str | None = None
        self._seen: dict[object, bool] = {}

    def worth_running(self, detector: _Detector) -> bool:
        if not (detector.trigger or detector.trigger_lower or detector.trigger_regex is not None):
            return True
        seen = self._seen
        for needle in detector.trigger:
            found = seen.get(needle)
            if found is None:
                found = seen[needle] = needle in self._text
            if found:
                return True
        for needle in detector.trigger_lower:
            key = ("lower", needle)
            found = seen.get(key)
            if found is None:
                if self._lower is None:
                    self._lower = self._text.lower()
                found = seen[key] = needle in self._lower
            if found:
                return True
        regex = detector.trigger_regex
        if regex is None:
            return False
        found = seen.get(regex)
        if found is None:
            found = seen[regex] = regex.search(self._text) is not None
        return found


@dataclass(frozen=True, slots=True)
class Finding:
    """One confirmed match: where it is and what kind (the value itself is not kept)."""

    start: int
    end: int
    kind: str
    priority: int


@dataclass
class _Walk:
    counts: dict[str, int] = field(default_factory=dict)


class Redactor:
    """Applies one :class:`RedactionConfig`; immutable and safe to share between threads.

    Raises ``ValueError`` from the constructor when ``hash`` mode has no key or a custom pattern is
    invalid (the message names the pattern and the position).
    """

    def __init__(self, config: RedactionConfig | None = None) -> None:
        self.config = config = config or RedactionConfig()
        if config.mode is Mode.HASH and not config.hash_key:
            raise ValueError("redaction mode 'hash' needs a hash key")
        if not 4 <= config.hash_length <= 64:
            raise ValueError(f"hash_length must be between 4 and 64, got {config.hash_length}")
        detectors = [d for d in _BUILTIN if d.kind in config.kinds]
        for custom in config.custom:
            try:
                compiled = custom.compile()
            except re.error as exc:
                raise ValueError(f"custom pattern {custom.name!r}: {exc}") from None
            group: int | str = "pii" if "pii" in compiled.groupindex else 0
            detectors.append(_Detector(custom.name, compiled, group=group))
        self._detectors = tuple(detectors)
        self._normalise = {d.kind: d.normalise for d in reversed(detectors) if d.normalise is not None}
        self._key = config.hash_key or b""

    # -- plain text --------------------------------------------------------------------------------

    def find(self, text: str) -> list[Finding]:
        """Non-overlapping findings in ``text``, in order; the earliest, then longest, match wins."""
        found: list[Finding] = []
        hints = _Hints(text)
        for priority, detector in enumerate(self._detectors):
            if not hints.worth_running(detector):
                continue
            for match in detector.matches(text):
                if detector.refine is not None:
                    span = detector.refine(match)
                    if span is None:
                        continue
                    start, end = span
                else:
                    start, end = match.span(detector.group)
                    if start == end:
                        continue
                    if detector.check is not None and not detector.check(match, text[start:end]):
                        continue
                found.append(Finding(start, end, str(detector.kind), priority))
        if len(found) < 2:
            return found
        found.sort(key=lambda f: (f.start, f.start - f.end, f.priority))
        kept: list[Finding] = []
        last_end = -1
        for finding in found:
            if finding.start >= last_end:
                kept.append(finding)
                last_end = finding.end
        return kept

    def redact_text(self, text: str) -> tuple[str | None, dict[str, int]]:
        """``text`` with every finding replaced, and counts by kind.

        In ``drop`` mode the text is ``None`` when anything was found.
        """
        walk = _Walk()
        return self._text(text, walk), walk.counts

    def _text(self, text: str, walk: _Walk) -> str | None:
        if len(text) > self.config.max_text_length:
            walk.counts[UNSCANNED] = walk.counts.get(UNSCANNED, 0) + 1
            return None if self.config.mode is Mode.DROP else UNSCANNED_MASK
        findings = self.find(text)
        if not findings:
            return text
        for finding in findings:
            walk.counts[finding.kind] = walk.counts.get(finding.kind, 0) + 1
        if self.config.mode is Mode.DROP:
            return None
        parts: list[str] = []
        position = 0
        for finding in findings:
            parts.append(text[position : finding.start])
            parts.append(self._token(finding.kind, text[finding.start : finding.end]))
            position = finding.end
        parts.append(text[position:])
        return "".join(parts)

    def _token(self, kind: str, value: str) -> str:
        label = kind.upper()
        if self.config.mode is not Mode.HASH:
            return f"<{label}>"
        normalise = self._normalise.get(kind)
        material = f"{kind}\x00{normalise(value) if normalise else value}".encode()
        digest = hmac.new(self._key, material, hashlib.sha256).hexdigest()
        return f"<{label}:{digest[: self.config.hash_length]}>"

    # -- JSON content ------------------------------------------------------------------------------

    def redact_json(self, text: str) -> tuple[str | None, dict[str, int]]:
        """Redact the string leaves of a JSON document, keeping its structure.

        Returns the compact re-serialised JSON when something changed, the original text when
        nothing did, and ``None`` in ``drop`` mode when anything was found. Text that is not JSON is
        redacted as plain text.
        """
        walk = _Walk()
        stripped = text.lstrip()
        if not stripped.startswith(("{", "[", '"')):
            return self._text(text, walk), walk.counts
        try:
            document = json.loads(text)
        except (ValueError, RecursionError):
            return self._text(text, walk), walk.counts
        redacted, changed = self._walk(document, walk)
        if self.config.mode is Mode.DROP and walk.counts:
            return None, walk.counts
        if not changed:
            return text, walk.counts
        return json.dumps(redacted, ensure_ascii=False, separators=(",", ":")), walk.counts

    def redact_value(self, value: Any) -> tuple[Any, dict[str, int]]:
        """Redact the string leaves of a decoded JSON-like value (dicts, lists, strings, numbers).

        For the instrumentor, before it serialises content: saves a parse. In ``drop`` mode the
        value is ``None`` when anything was found.
        """
        walk = _Walk()
        redacted, _ = self._walk(value, walk)
        if self.config.mode is Mode.DROP and walk.counts:
            return None, walk.counts
        return redacted, walk.counts

    def _walk(self, root: Any, walk: _Walk) -> tuple[Any, bool]:
        """Copy-on-write walk without recursion (hostile nesting depth cannot overflow the stack)."""
        if isinstance(root, str):
            leaf = self._leaf(root, walk)
            return leaf, leaf is not root
        if not isinstance(root, dict | list):
            return root, False
        copy: dict[str, Any] | list[Any] = dict(root) if isinstance(root, dict) else list(root)
        changed = False
        stack: list[dict[str, Any] | list[Any]] = [copy]
        while stack:
            node: Any = stack.pop()
            items: Iterable[tuple[Any, Any]]
            if isinstance(node, dict):
                # A blob part's content is base64 media, not text.
                skip = "content" if node.get("type") == "blob" else None
                items = [(k, v) for k, v in node.items() if k != skip]
            else:
                items = enumerate(node)
            for key, value in items:
                if isinstance(value, str):
                    leaf = self._leaf(value, walk)
                    if leaf is not value:
                        node[key] = leaf
                        changed = True
                elif isinstance(value, dict):
                    child: dict[str, Any] | list[Any] = dict(value)
                    node[key] = child
                    stack.append(child)
                elif isinstance(value, list):
                    child = list(value)
                    node[key] = child
                    stack.append(child)
        return copy, changed

    def _leaf(self, value: str, walk: _Walk) -> Any:
        """One string leaf; a leaf that is itself a JSON document (tool arguments) is walked too."""
        if value[:1] in ("{", "[") and value[-1:] in ("}", "]"):
            try:
                inner = json.loads(value)
            except (ValueError, RecursionError):
                inner = None
            if isinstance(inner, dict | list):
                before = sum(walk.counts.values())
                redacted, changed = self._walk(inner, walk)
                if not changed and sum(walk.counts.values()) == before:
                    return value
                if self.config.mode is Mode.DROP:
                    return value  # the caller drops the whole attribute
                return json.dumps(redacted, ensure_ascii=False, separators=(",", ":"))
        result = self._text(value, walk)
        if result is None:  # drop mode: keep walking to count, the caller drops the attribute
            return value
        return result

    def redact_attribute(self, name: str, value: Any) -> tuple[Any, dict[str, int]]:
        """A span/event attribute value: JSON for content attributes, text for other strings.

        Lists of strings are redacted element-wise; other types pass unchanged. ``None`` in ``drop``
        mode means remove the attribute.
        """
        if isinstance(value, str):
            if name in CONTENT_ATTRIBUTES:
                return self.redact_json(value)
            return self.redact_text(value)
        if isinstance(value, list | tuple) and any(isinstance(item, str) for item in value):
            walk = _Walk()
            out = [self._text(item, walk) if isinstance(item, str) else item for item in value]
            if self.config.mode is Mode.DROP and walk.counts:
                return None, walk.counts
            return (type(value)(out) if walk.counts else value), walk.counts
        if isinstance(value, dict):
            return self.redact_value(value)
        return value, {}


# --- application-side switch --------------------------------------------------------------------------

_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_lock = threading.Lock()
_configured = False
_active: Redactor | None = None


def config_from_env(environ: Mapping[str, str] | None = None) -> RedactionConfig | None:
    """The application-side config from ``OTEL_LLM_REDACT*``; ``None`` when redaction is off.

    Never raises: a bad mode means ``mask``, unknown kinds are ignored, ``hash`` without a key means
    ``mask`` (with one warning, which names the variable, never a value).
    """
    env = os.environ if environ is None else environ
    if env.get(ENV_REDACT, "").strip().lower() not in _TRUE:
        return None
    try:
        mode = Mode(env.get(ENV_REDACT_MODE, "mask").strip().lower())
    except ValueError:
        mode = Mode.MASK
    key = env.get(ENV_REDACT_HASH_KEY, "").encode()
    if mode is Mode.HASH and not key:
        _log.warning("%s=hash needs %s; masking instead", ENV_REDACT_MODE, ENV_REDACT_HASH_KEY)
        mode = Mode.MASK
    kinds: frozenset[Kind] = frozenset(Kind)
    listed = env.get(ENV_REDACT_KINDS, "").strip()
    if listed:
        known = {k.value: k for k in Kind}
        kinds = frozenset(known[n] for n in (p.strip().lower() for p in listed.split(",")) if n in known)
    return RedactionConfig(kinds=kinds, mode=mode, hash_key=key or None)


def configure(redactor: Redactor | None) -> None:
    """Set (or, with ``None``, switch off) the redactor :func:`redact_content_attribute` uses.

    Overrides the environment; tests and applications with their own settings call this.
    """
    global _configured, _active
    with _lock:
        _active = redactor
        _configured = True


def _current() -> Redactor | None:
    global _configured, _active
    if not _configured:
        with _lock:
            if not _configured:
                config = config_from_env()
                _active = Redactor(config) if config is not None else None
                _configured = True
    return _active


def redact_content_attribute(name: str, value: Any) -> Any:
    """The value to put on a span or event for attribute ``name``; ``None`` means leave it off.

    Off (the default) returns ``value`` itself. On, content attributes (:data:`CONTENT_ATTRIBUTES`)
    are redacted as JSON and other strings as text; other values pass unchanged. Never raises: an
    internal failure drops the value rather than let unredacted content out.
    """
    redactor = _current()
    if redactor is None:
        return value
    try:
        return redactor.redact_attribute(name, value)[0]
    except Exception:  # fail closed: never emit content we could not check
        _log.debug("redaction failed for attribute %s; value dropped", name, exc_info=False)
        return None
