"""``pii`` processor: redacts personal data and secrets before anything is exported, judged or embedded.

Put it first in every traces and logs pipeline (before ``genai_metrics``, drift and quality processors)
so that nothing downstream, and no exporter queue on disk, ever holds the raw values::

    processors:
      pii:
        mode: hash                                  # mask (default) | hash | drop
        hash_key: ${env:OTEL_LLM_PII_HASH_KEY}      # required for hash, at least 16 characters
        kinds: [email, phone, credit_card, iban, us_ssn, ip_address, api_key, jwt, bearer_token, secret]
        custom:
          - {name: employee_id, pattern: '\\bEMP-\\d{6}\\b'}
        deny_attributes: [enduser.id, user.email]   # always removed
        allow_attributes: [server.address]          # never touched

The rules are :mod:`otel_llm.redaction`'s (the application side can run the same ones in-process).
What it looks at:

- span attributes and span events' attributes: the GenAI content attributes as JSON (string leaves
  only, structure kept), the legacy flattened ones (``gen_ai.prompt.0.content``) and OpenInference's
  (``llm.input_messages.*``, ``input.value``) as text; on ``gen_ai.*`` events (the old per-message
  events) every string attribute is content. Other string attributes only with ``all_string_attributes``.
- log records: the body (string, JSON string or structured map) and the attributes, by the same rules;
  on ``gen_ai.*`` log events every string attribute is content.

``drop`` mode removes an attribute (or empties a log body) in which anything was found. Allow-listed
attributes are never touched, deny-listed ones always removed; both take exact names or a trailing
``*`` (``user.*``). Resource attributes are left alone (service identity).

Cost: about 0.25 s per MiB of prose, 1.5 s per MiB of text dense with matches (one core); a 512-span
batch with 2 KiB of content per span takes about 0.5 s, spans without content about 7 µs each. A
string longer than ``max_value_kib``, and every string after ``max_scan_mib_per_batch`` of one batch,
is replaced by ``<UNSCANNED>`` and counted as kind ``unscanned``: the processor fails closed rather
than let a hostile request hold a pipeline thread for minutes or let unscanned text through.

Counts go to the self-telemetry counter ``otel_llm_pii_redactions_total{processor, otel_llm_pii_kind}`` (values are
never logged). The processor also publishes a ``str -> str`` redactor under
``host.shared["collector.pii.redactor"]`` for components that send content elsewhere (the quality
judge): same kinds and mode, except that ``drop`` becomes ``mask`` there, since the judge needs text.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from typing import Any, Literal

from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from prometheus_client import Counter
from pydantic import Field, SecretStr

from collector.component import ComponentConfig, CreateSettings, Factory, Host, Kind, Signal
from collector.data import Batch, LogsBatch, TraceBatch
from collector.logs import event
from collector.telemetry import prom_name
from otel_llm.conventions import attributes as attrs
from otel_llm.conventions import metrics as m
from otel_llm.redaction import (
    CONTENT_ATTRIBUTES,
    UNSCANNED,
    UNSCANNED_MASK,
    CustomPattern,
    Mode,
    RedactionConfig,
    Redactor,
)
from otel_llm.redaction import Kind as PiiKind

__all__ = ["FACTORY", "REDACTOR_KEY", "PiiPatternConfig", "PiiProcessor", "PiiProcessorConfig"]

#: ``host.shared`` key of the ``str -> str`` redactor for components that send content out (the judge).
REDACTOR_KEY = "collector.pii.redactor"


# Legacy flattened content (OpenLLMetry `gen_ai.prompt.0.content`) and OpenInference content names.
_CONTENT_PREFIXES = (
    attrs.GEN_AI_PROMPT + ".",
    attrs.GEN_AI_COMPLETION + ".",
    "llm.input_messages.",
    "llm.output_messages.",
    "llm.prompts.",
    "retrieval.documents.",
)
_CONTENT_NAMES = CONTENT_ATTRIBUTES | {"input.value", "output.value", "llm.prompt_template.variables"}
_GENAI_EVENT_PREFIX = "gen_ai."
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class PiiPatternConfig(ComponentConfig):
    """One custom pattern."""

    name: str = Field(description="Kind name: labels the counter and the mask (`<NAME>`); snake_case.")
    pattern: str = Field(
        description="Python regular expression; a group named `pii` limits what is replaced."
    )


class PiiProcessorConfig(ComponentConfig):
    """The ``pii`` processor."""

    mode: Literal["mask", "hash", "drop"] = Field(
        "mask",
        description="mask: `<EMAIL>`; hash: `<EMAIL:hmac>` (keyed, same value same token); drop: remove the attribute.",
    )
    hash_key: SecretStr | None = Field(
        None,
        description="HMAC key for `hash` mode, at least 16 characters; use `${env:...}`, never a literal.",
    )
    hash_length: int = Field(12, ge=4, le=64, description="Hex digits of the HMAC kept in a hash token.")
    kinds: list[PiiKind] = Field(
        # Strings, validated into kinds, so that the generated reference prints plain names.
        default_factory=lambda: [kind.value for kind in PiiKind],
        validate_default=True,
        description="Built-in kinds to look for: email, phone, credit_card, iban, us_ssn, ip_address, api_key, jwt, bearer_token, secret.",
    )
    custom: list[PiiPatternConfig] = Field(default_factory=list, description="Extra patterns, each a kind.")
    content_attributes: bool = Field(
        True,
        description="Redact the GenAI content attributes (JSON, structure kept) and legacy content names.",
    )
    all_string_attributes: bool = Field(
        False, description="Also redact every other string attribute of spans, span events and log records."
    )
    log_bodies: bool = Field(True, description="Redact log record bodies (text, JSON text or structured).")
    max_value_kib: int = Field(
        1024,
        gt=0,
        description="Longest single string scanned; a longer one is replaced by `<UNSCANNED>` (fail closed) and counted as kind `unscanned`.",
    )
    max_scan_mib_per_batch: float = Field(
        16.0,
        gt=0,
        description="Text scanned per batch; past it, further strings of the batch are replaced by `<UNSCANNED>`. Bounds the CPU one hostile request costs (0.25-1.5 s per MiB).",
    )
    allow_attributes: list[str] = Field(
        default_factory=list, description="Attribute names never touched; exact or with a trailing `*`."
    )
    deny_attributes: list[str] = Field(
        default_factory=list, description="Attribute names always removed; exact or with a trailing `*`."
    )

    def problems(self) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        if self.mode == "hash":
            key = self.hash_key.get_secret_value() if self.hash_key is not None else ""
            if not key:
                found.append(("hash_key", "required when mode is hash"))
            elif len(key) < 16:
                found.append(("hash_key", f"expected at least 16 characters, got {len(key)}"))
        seen: set[str] = {kind.value for kind in PiiKind}
        for index, custom in enumerate(self.custom):
            if not _NAME.match(custom.name):
                found.append((f"custom::{index}::name", f"expected snake_case, got {custom.name!r}"))
            elif custom.name in seen:
                found.append((f"custom::{index}::name", f"{custom.name!r} is already a kind"))
            seen.add(custom.name)
            try:
                compiled = re.compile(custom.pattern)
            except re.error as exc:
                found.append((f"custom::{index}::pattern", f"invalid regular expression: {exc}"))
                continue
            if compiled.match(""):
                found.append((f"custom::{index}::pattern", "matches the empty string"))
        for key, names in (
            ("allow_attributes", self.allow_attributes),
            ("deny_attributes", self.deny_attributes),
        ):
            for index, name in enumerate(names):
                if not name or "*" in name[:-1]:
                    found.append(
                        (f"{key}::{index}", f"expected a name or a prefix ending in *, got {name!r}")
                    )
        return found

    def redaction_config(self, *, for_text: bool = False) -> RedactionConfig:
        """The :mod:`otel_llm.redaction` settings; ``for_text`` turns ``drop`` into ``mask``."""
        mode = Mode(self.mode)
        if for_text and mode is Mode.DROP:
            mode = Mode.MASK
        key = self.hash_key.get_secret_value().encode() if self.hash_key is not None else None
        return RedactionConfig(
            kinds=frozenset(self.kinds),
            mode=mode,
            hash_key=key,
            hash_length=self.hash_length,
            custom=tuple(CustomPattern(c.name, c.pattern) for c in self.custom),
            max_text_length=self.max_value_kib * 1024,
        )


def _matcher(names: Iterable[str]) -> Callable[[str], bool]:
    exact = frozenset(n for n in names if not n.endswith("*"))
    prefixes = tuple(n[:-1] for n in names if n.endswith("*"))
    if not exact and not prefixes:
        return lambda _name: False
    return lambda name: name in exact or (bool(prefixes) and name.startswith(prefixes))


def _is_content(name: str) -> bool:
    return name in _CONTENT_NAMES or name.startswith(_CONTENT_PREFIXES)


class PiiProcessor:
    """Redacts batches in place; thread-safe (the redactors are immutable, counters are atomic)."""

    def __init__(self, config: PiiProcessorConfig, settings: CreateSettings) -> None:
        self._config = config
        self._id = str(settings.id)
        self._logger = settings.logger
        self._redactor = Redactor(config.redaction_config())
        self._text_redactor = (
            self._redactor if config.mode != "drop" else Redactor(config.redaction_config(for_text=True))
        )
        self._drop = config.mode == "drop"
        self._allowed = _matcher(config.allow_attributes)
        self._denied = _matcher(config.deny_attributes)
        self._counter = settings.telemetry.counter(
            m.OTEL_LLM_PII_REDACTIONS,
            m.OTEL_LLM_PII_REDACTIONS_DESCRIPTION,
            (prom_name(attrs.PROCESSOR), prom_name(attrs.OTEL_LLM_PII_KIND)),
        )
        self._children: dict[str, Counter] = {}
        self._host: Host | None = None
        self._batch_chars = int(config.max_scan_mib_per_batch * 1024 * 1024)
        self._max_value = config.max_value_kib * 1024

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self, host: Host) -> None:
        # One pii processor instance per pipeline; the first to start publishes the judge's redactor.
        if REDACTOR_KEY not in host.shared:
            host.shared[REDACTOR_KEY] = self.redact_for_export
            self._host = host
        event(
            self._logger,
            logging.INFO,
            "pii redaction on",
            mode=self._config.mode,
            kinds=",".join(k.value for k in self._config.kinds) or "-",
            custom=len(self._config.custom),
            all_string_attributes=self._config.all_string_attributes,
        )

    def shutdown(self, timeout_s: float) -> None:
        if self._host is not None and self._host.shared.get(REDACTOR_KEY) == self.redact_for_export:
            del self._host.shared[REDACTOR_KEY]
        self._host = None

    # -- the redactor for other components ---------------------------------------------------------

    def redact_for_export(self, text: str) -> str:
        """Redact text (JSON content kept valid) before it leaves the collector; counted like spans."""
        redacted, counts = self._text_redactor.redact_json(text)
        self._count(counts)
        return redacted if redacted is not None else ""

    # -- hot path ----------------------------------------------------------------------------------

    def process(self, batch: Batch) -> Batch | None:
        counts: dict[str, int] = {}
        budget = [self._batch_chars]  # characters left to scan in this batch
        if isinstance(batch, TraceBatch):
            changed = False
            for rs in batch.request.resource_spans:
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        changed |= self._attributes(span.attributes, counts, False, budget)
                        for span_event in span.events:
                            event_attributes = span_event.attributes
                            if (
                                event_attributes
                            ):  # most events have none: skip the call (hostile 1M-event spans)
                                genai = span_event.name.startswith(_GENAI_EVENT_PREFIX)
                                changed |= self._attributes(event_attributes, counts, genai, budget)
            if changed:
                batch.invalidate()
        elif isinstance(batch, LogsBatch):
            for rl in batch.request.resource_logs:
                for sl in rl.scope_logs:
                    for record in sl.log_records:
                        genai = record.event_name.startswith(_GENAI_EVENT_PREFIX)
                        self._attributes(record.attributes, counts, genai, budget)
                        body = self._config.log_bodies and record.HasField("body")
                        if body and self._any_value(record.body, counts, True, budget) and self._drop:
                            record.ClearField("body")
        if counts:
            self._count(counts)
        return batch

    def _attributes(
        self, attributes: Any, counts: dict[str, int], all_content: bool, budget: list[int]
    ) -> bool:
        """Redact a repeated ``KeyValue`` field in place; True when anything changed."""
        remove: list[int] = []
        changed = False
        config = self._config
        for index, kv in enumerate(attributes):
            name = kv.key
            if self._allowed(name):
                continue
            if self._denied(name):
                remove.append(index)
                continue
            content = all_content or (config.content_attributes and _is_content(name))
            if not content and not config.all_string_attributes:
                continue
            if self._any_value(kv.value, counts, content, budget):
                changed = True
                if self._drop:
                    remove.append(index)
        for index in reversed(remove):
            del attributes[index]
        return changed or bool(remove)

    def _any_value(self, value: AnyValue, counts: dict[str, int], content: bool, budget: list[int]) -> bool:
        """Redact the strings of one ``AnyValue`` (arrays and maps walked without recursion)."""
        found = False
        stack = [value]
        while stack:
            current = stack.pop()
            kind = current.WhichOneof("value")
            if kind == "string_value":
                text = current.string_value
                if not text:
                    continue
                if len(text) <= self._max_value:  # longer ones are not scanned (the redactor masks them)
                    budget[0] -= len(text)
                if budget[0] < 0:  # over the batch's scan budget: fail closed
                    counts[UNSCANNED] = counts.get(UNSCANNED, 0) + 1
                    found = True
                    current.string_value = UNSCANNED_MASK
                    continue
                if content:
                    redacted, hits = self._redactor.redact_json(text)
                else:
                    redacted, hits = self._redactor.redact_text(text)
                if hits:
                    found = True
                    for hit_kind, n in hits.items():
                        counts[hit_kind] = counts.get(hit_kind, 0) + n
                    if redacted is not None:
                        current.string_value = redacted
            elif kind == "array_value":
                stack.extend(current.array_value.values)
            elif kind == "kvlist_value":
                stack.extend(kv.value for kv in current.kvlist_value.values if not self._allowed(kv.key))
        return found

    def _count(self, counts: dict[str, int]) -> None:
        for kind, n in counts.items():
            child = self._children.get(kind)
            if child is None:
                child = self._children[kind] = self._counter.labels(self._id, kind)
            child.inc(n)


def _create(config: PiiProcessorConfig, settings: CreateSettings) -> PiiProcessor:
    return PiiProcessor(config, settings)


FACTORY = Factory(
    kind=Kind.PROCESSOR,
    type_name="pii",
    config_type=PiiProcessorConfig,
    create=_create,
    signals=frozenset({Signal.TRACES, Signal.LOGS}),
    description="Redacts personal data and secrets (mask, keyed hash or drop) in span, event and log content.",
)
