"""Canary probes: fixed prompts sent on a schedule to catch a model changed behind an unchanged name.

Each run sends every probe prompt to every configured endpoint at temperature 0 (with a fixed ``seed``
where the API takes one: OpenAI-compatible chat; Anthropic Messages has none) and records the answer,
``system_fingerprint``, the served model name and token counts.

Baseline and change rule. The first ``baseline_runs`` runs of an endpoint form its baseline. Even at
temperature 0 answers vary a little (batching, hardware, mixture-of-experts routing), so each prompt's
**spread** is the largest cosine distance between two of its baseline answers' embeddings. In a later
run a prompt has **moved** when its answer's distance to the nearest baseline answer exceeds that
spread plus ``tolerance``. The run flags a **change** when at least ``min_moved_fraction`` of the prompts
moved: one odd answer is noise, most prompts answering differently is a different model. A changed
``system_fingerprint`` is reported but does not flag a change by itself (providers rotate it for
infrastructure updates that keep answers).

Spend is capped like the judge's (:class:`SpendLimiter`): probes per hour and per day, and US dollars
per day from the reported token counts × the endpoint's configured prices. A probe that would break a
limit is skipped and counted by reason (``probes_per_hour``, ``probes_per_day``, ``budget``: the values of
``otel_llm.canary.skip.reason``), never sent.

Thread safety: :class:`Canary` is driven by one thread (the canary extension's scheduler or a test).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import urllib.error
import urllib.request
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from collector.component import ComponentConfig
from collector.drift.embedders import Embedder, EmbedderConfig, EmbeddingError
from collector.durations import Duration
from otel_llm.conventions import attributes as attrs

__all__ = [
    "DEFAULT_PROBES",
    "Canary",
    "CanaryConfig",
    "EndpointConfig",
    "EndpointReport",
    "ProbeAnswer",
    "ProbeError",
    "SpendLimiter",
    "send_probe",
]

# Short prompts with one expected answer each, in areas where model versions tend to differ in wording,
# format and facts; answers are capped by max_tokens, so a run stays cheap.
DEFAULT_PROBES: tuple[str, ...] = (
    "In one sentence, what is the capital of Australia and why was it chosen?",
    "List the first eight prime numbers, comma separated, nothing else.",
    "Translate to French: 'The meeting is moved to Thursday afternoon.'",
    "Write a Python one-liner that reverses the words of a string s.",
    "What is 17 multiplied by 23? Answer with the number only.",
    "Name three noble gases, lowest atomic number first.",
    "Summarise the plot of Romeo and Juliet in exactly two sentences.",
    "Is 1001 a prime number? Answer yes or no, then give one factorisation if not.",
)


_Refusal = attrs.OtelLlmCanarySkipReasonValues


class ProbeError(Exception):
    """A probe request failed (connection, HTTP status, unexpected answer)."""


class EndpointConfig(ComponentConfig):
    """One model endpoint to probe."""

    name: str = Field(min_length=1, description="Label of the endpoint in metrics and logs.")
    api: Literal["openai", "anthropic"] = Field(
        "openai", description="`openai`: POST {url}/chat/completions; `anthropic`: POST {url}/v1/messages."
    )
    url: str = Field(description="Base URL, e.g. https://api.openai.com/v1 or https://api.anthropic.com.")
    model: str = Field(min_length=1, description="Model name sent in each probe.")
    api_key: str | None = Field(None, description="Credential; use ${env:NAME}.")
    seed: int = Field(1234, description="Sent as `seed` where the API supports it (OpenAI-compatible).")
    max_tokens: int = Field(128, ge=1, le=4096, description="Answer length cap of each probe.")
    input_usd_per_mtok: float = Field(
        0.0, ge=0, description="Price of a million input tokens, for the budget."
    )
    output_usd_per_mtok: float = Field(
        0.0, ge=0, description="Price of a million output tokens, for the budget."
    )
    timeout: Duration = Field(30.0, gt=0, description="Per-probe timeout.")


class CanaryConfig(ComponentConfig):
    """Probes, schedule, change rule and spend limits (the ``canary`` extension's config)."""

    endpoints: list[EndpointConfig] = Field(default_factory=list, description="Endpoints to probe.")
    prompts: list[str] = Field(
        default_factory=lambda: list(DEFAULT_PROBES), min_length=1, description="Probe prompts, sent as is."
    )
    interval: Duration = Field(3600.0, gt=0, description="Time between runs.")
    baseline_runs: int = Field(3, ge=1, le=50, description="Runs that form the baseline spread.")
    tolerance: float = Field(
        0.05,
        ge=0,
        le=2,
        description="Cosine distance allowed beyond the baseline spread before a prompt moved.",
    )
    min_moved_fraction: float = Field(
        0.5, gt=0, le=1, description="Share of moved prompts that flags a change."
    )
    max_probes_per_hour: int = Field(100, ge=0, description="Probe requests per rolling hour, all endpoints.")
    max_probes_per_day: int = Field(1000, ge=0, description="Probe requests per rolling day, all endpoints.")
    budget_usd_per_day: float = Field(
        1.0, ge=0, description="Spend per rolling day from token counts × prices."
    )
    embedder: EmbedderConfig = Field(default_factory=EmbedderConfig)
    directory: str | None = Field(
        None,
        description="Where baselines are saved (one JSON file per endpoint) and reloaded after a restart.",
    )

    def problems(self) -> list[tuple[str, str]]:
        names = [endpoint.name for endpoint in self.endpoints]
        duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
        if duplicates:
            return [("endpoints", f"expected unique names, got {', '.join(duplicates)} more than once")]
        return []


@dataclass(frozen=True)
class ProbeAnswer:
    """What one probe returned."""

    text: str
    model: str
    system_fingerprint: str
    input_tokens: int
    output_tokens: int


def _post(url: str, body: dict[str, Any], headers: dict[str, str], timeout_s: float) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode("utf-8"), headers={"Content-Type": "application/json", **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise ProbeError(f"{url}: HTTP {exc.code}") from exc
    except (OSError, ValueError) as exc:
        raise ProbeError(f"{url}: {exc}") from exc


def send_probe(endpoint: EndpointConfig, prompt: str) -> ProbeAnswer:
    """Send one probe with the stdlib HTTP client; raises :class:`ProbeError`."""
    messages = [{"role": "user", "content": prompt}]
    try:
        if endpoint.api == "anthropic":
            headers = {"anthropic-version": "2023-06-01"}
            if endpoint.api_key:
                headers["x-api-key"] = endpoint.api_key
            body = {
                "model": endpoint.model,
                "max_tokens": endpoint.max_tokens,
                "temperature": 0,
                "messages": messages,
            }
            answer = _post(endpoint.url.rstrip("/") + "/v1/messages", body, headers, endpoint.timeout)
            text = "".join(part.get("text", "") for part in answer["content"] if part.get("type") == "text")
            usage = answer.get("usage") or {}
            return ProbeAnswer(
                text=text,
                model=str(answer.get("model", "")),
                system_fingerprint="",
                input_tokens=int(usage.get("input_tokens", 0)),
                output_tokens=int(usage.get("output_tokens", 0)),
            )
        headers = {"Authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {}
        body = {
            "model": endpoint.model,
            "messages": messages,
            "temperature": 0,
            "seed": endpoint.seed,
            "max_tokens": endpoint.max_tokens,
        }
        answer = _post(endpoint.url.rstrip("/") + "/chat/completions", body, headers, endpoint.timeout)
        usage = answer.get("usage") or {}
        return ProbeAnswer(
            text=str(answer["choices"][0]["message"].get("content") or ""),
            model=str(answer.get("model", "")),
            system_fingerprint=str(answer.get("system_fingerprint") or ""),
            input_tokens=int(usage.get("prompt_tokens", 0)),
            output_tokens=int(usage.get("completion_tokens", 0)),
        )
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
        raise ProbeError(f"{endpoint.url}: unexpected answer shape: {exc}") from exc


class SpendLimiter:
    """Rolling hour and day limits on probe count and US dollars; ``allow`` before, ``record`` after."""

    def __init__(self, per_hour: int, per_day: int, usd_per_day: float, clock: Callable[[], float]) -> None:
        self.per_hour = per_hour
        self.per_day = per_day
        self.usd_per_day = usd_per_day
        self.clock = clock
        self._probes: deque[float] = deque()
        self._spend: deque[tuple[float, float]] = deque()
        self.skipped: Counter[str] = Counter()

    def _trim(self, now: float) -> None:
        while self._probes and now - self._probes[0] >= 86_400.0:
            self._probes.popleft()
        while self._spend and now - self._spend[0][0] >= 86_400.0:
            self._spend.popleft()

    def spent_today(self) -> float:
        self._trim(self.clock())
        return sum(usd for _, usd in self._spend)

    def allow(self, estimate_usd: float) -> bool:
        """True when one more probe costing about ``estimate_usd`` keeps every limit; counts refusals."""
        return not self.refusal(estimate_usd)

    def refusal(self, estimate_usd: float) -> str:
        """Why one more probe costing about ``estimate_usd`` would break a limit (counted), or ``""``
        when it keeps every limit (then it counts as sent)."""
        now = self.clock()
        self._trim(now)
        last_hour = sum(1 for t in self._probes if now - t < 3600.0)
        reason = ""
        if last_hour >= self.per_hour:
            reason = _Refusal.PROBES_PER_HOUR
        elif len(self._probes) >= self.per_day:
            reason = _Refusal.PROBES_PER_DAY
        elif self.spent_today() + estimate_usd > self.usd_per_day:
            reason = _Refusal.BUDGET
        if reason:
            self.skipped[reason] += 1
            return reason
        self._probes.append(now)
        return ""

    def record(self, usd: float) -> None:
        self._spend.append((self.clock(), usd))


def _cost(endpoint: EndpointConfig, input_tokens: int, output_tokens: int) -> float:
    return (input_tokens * endpoint.input_usd_per_mtok + output_tokens * endpoint.output_usd_per_mtok) / 1e6


@dataclass
class EndpointReport:
    """The outcome of one run against one endpoint.

    ``answered`` and ``failed`` count the probe requests sent (``failed``: :class:`ProbeError`);
    ``errors`` counts those failures plus embedding and baseline-saving faults; ``skipped`` the probes not
    sent, by reason in ``skip_reasons``; ``cost_usd`` the answered probes' cost.
    """

    endpoint: str
    phase: Literal["baseline", "compared", "incomplete"]
    changed: bool = False
    moved: list[str] = field(default_factory=list)
    moved_fraction: float = 0.0
    distances: dict[str, float] = field(default_factory=dict)
    spreads: dict[str, float] = field(default_factory=dict)
    fingerprints: list[str] = field(default_factory=list)
    fingerprint_changed: bool = False
    models: list[str] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    errors: int = 0
    skipped: int = 0
    answered: int = 0
    failed: int = 0
    skip_reasons: dict[str, int] = field(default_factory=dict)


@dataclass
class _Baseline:
    answers: dict[str, list[str]] = field(default_factory=dict)
    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    fingerprints: set[str] = field(default_factory=set)
    runs: int = 0


class Canary:
    """Runs probes, keeps each endpoint's baseline and applies the change rule (module docstring)."""

    def __init__(
        self,
        config: CanaryConfig,
        embedder: Embedder,
        *,
        clock: Callable[[], float] = time.time,
        send: Callable[[EndpointConfig, str], ProbeAnswer] = send_probe,
    ) -> None:
        self.config = config
        self.embedder = embedder
        self.send = send
        self.limiter = SpendLimiter(
            config.max_probes_per_hour, config.max_probes_per_day, config.budget_usd_per_day, clock
        )
        self.baselines: dict[str, _Baseline] = {endpoint.name: _Baseline() for endpoint in config.endpoints}
        self.directory = Path(config.directory) if config.directory else None
        self._loaded = False

    def reset_baseline(self, endpoint: str) -> None:
        """Forget an endpoint's baseline (after an intended model change); the next runs rebuild it."""
        self.baselines[endpoint] = _Baseline()
        for candidate in self.config.endpoints:
            if candidate.name == endpoint and self.directory is not None:
                self._baseline_path(candidate).unlink(missing_ok=True)

    def run_once(self) -> list[EndpointReport]:
        """One run over every endpoint; never raises for probe failures (counted in the report)."""
        if not self._loaded:
            self._loaded = True
            self._load_baselines()
        return [self._run_endpoint(endpoint) for endpoint in self.config.endpoints]

    # -- baseline files ----------------------------------------------------------------------------

    def _baseline_path(self, endpoint: EndpointConfig) -> Path:
        assert self.directory is not None
        key = json.dumps([endpoint.name, endpoint.api, endpoint.url, endpoint.model])
        return self.directory / f"canary-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"

    def _save_baseline(self, endpoint: EndpointConfig, baseline: _Baseline) -> None:
        if self.directory is None:
            return
        payload = {
            "format": 1,
            "endpoint": endpoint.name,
            "model": endpoint.model,
            "embedder": self.embedder.identity,
            "prompts": list(self.config.prompts),
            "answers": baseline.answers,
            "fingerprints": sorted(baseline.fingerprints),
            "runs": baseline.runs,
        }
        self.directory.mkdir(parents=True, exist_ok=True)
        target = self._baseline_path(endpoint)
        temporary = target.with_suffix(".tmp")
        temporary.write_text(json.dumps(payload, ensure_ascii=False), encoding="utf-8")
        os.replace(temporary, target)

    def _load_baselines(self) -> None:
        """Baselines saved by an earlier run with the same prompts and embedder; others are ignored.
        The answers are embedded again (vectors are not stored), on the scheduler's thread."""
        if self.directory is None:
            return
        for endpoint in self.config.endpoints:
            try:
                payload = json.loads(self._baseline_path(endpoint).read_text(encoding="utf-8"))
                if (
                    payload.get("format") != 1
                    or payload.get("prompts") != list(self.config.prompts)
                    or payload.get("embedder") != self.embedder.identity
                ):
                    continue
                baseline = _Baseline(
                    answers={p: [str(a) for a in payload["answers"][p]] for p in self.config.prompts},
                    fingerprints=set(payload.get("fingerprints", [])),
                    runs=int(payload["runs"]),
                )
                for prompt, texts in baseline.answers.items():
                    baseline.vectors[prompt] = self.embedder.embed(texts)
            except (OSError, ValueError, KeyError, TypeError, EmbeddingError):
                continue
            self.baselines[endpoint.name] = baseline

    def _run_endpoint(self, endpoint: EndpointConfig) -> EndpointReport:
        answers: dict[str, ProbeAnswer] = {}
        report = EndpointReport(endpoint=endpoint.name, phase="incomplete")
        estimate = _cost(
            endpoint, 2 * max(len(p) for p in self.config.prompts) // 3 + 16, endpoint.max_tokens
        )
        for prompt in self.config.prompts:
            refusal = self.limiter.refusal(estimate)
            if refusal:
                report.skipped += 1
                report.skip_reasons[refusal] = report.skip_reasons.get(refusal, 0) + 1
                continue
            try:
                answer = self.send(endpoint, prompt)
            except ProbeError:
                report.errors += 1
                report.failed += 1
                continue
            report.answered += 1
            answers[prompt] = answer
            usd = _cost(endpoint, answer.input_tokens, answer.output_tokens)
            self.limiter.record(usd)
            report.cost_usd += usd
            report.input_tokens += answer.input_tokens
            report.output_tokens += answer.output_tokens
        report.fingerprints = sorted({a.system_fingerprint for a in answers.values() if a.system_fingerprint})
        report.models = sorted({a.model for a in answers.values() if a.model})
        if len(answers) < len(self.config.prompts):
            return report  # a partial run neither builds the baseline nor judges it
        texts = [answers[p].text for p in self.config.prompts]
        try:
            vectors = self.embedder.embed(texts)
        except EmbeddingError:
            report.errors += 1
            return report
        baseline = self.baselines[endpoint.name]
        if baseline.runs < self.config.baseline_runs:
            for prompt, text, vector in zip(self.config.prompts, texts, vectors, strict=True):
                baseline.answers.setdefault(prompt, []).append(text)
                previous = baseline.vectors.get(prompt)
                row = vector[None, :]
                baseline.vectors[prompt] = row if previous is None else np.vstack((previous, row))
            baseline.fingerprints.update(report.fingerprints)
            baseline.runs += 1
            report.phase = "baseline"
            try:
                self._save_baseline(endpoint, baseline)
            except OSError:
                report.errors += 1  # the baseline still works in memory; saving is retried next run
            return report
        report.phase = "compared"
        for prompt, text, vector in zip(self.config.prompts, texts, vectors, strict=True):
            known = baseline.vectors[prompt]
            spread = _spread(known)
            distance = 0.0 if text in baseline.answers[prompt] else float(np.min(1.0 - known @ vector))
            report.spreads[prompt] = spread
            report.distances[prompt] = distance
            if distance > spread + self.config.tolerance:
                report.moved.append(prompt)
        report.moved_fraction = len(report.moved) / len(self.config.prompts)
        needed = max(1, math.ceil(self.config.min_moved_fraction * len(self.config.prompts) - 1e-9))
        report.changed = len(report.moved) >= needed
        report.fingerprint_changed = bool(set(report.fingerprints) - baseline.fingerprints)
        return report


def _spread(vectors: np.ndarray) -> float:
    """Largest cosine distance between two rows (0 for one row); rows are L2-normalised."""
    if len(vectors) < 2:
        return 0.0
    return float(np.max(1.0 - vectors @ vectors.T))
