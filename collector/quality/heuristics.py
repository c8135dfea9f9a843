"""Heuristic evaluators: cheap checks that run on every GenAI span that carries content.

Each evaluator is a pure function of a :class:`~collector.quality.SpanContent` and returns an
:class:`Evaluation` (score 0..1, where 1 is good, and a short label) or ``None`` when it does not apply
(no JSON was asked for, no context was retrieved). None of them raises on odd content::

    from collector.quality import read_content
    from collector.quality.heuristics import HeuristicSettings, evaluate

    results = evaluate(read_content(span), HeuristicSettings())
    # [Evaluation(name='completeness', score=1.0, label='complete', ...), ...]

Evaluators (names are the ``gen_ai.evaluation.name`` values):

- ``completeness``: 0 for an empty answer (``empty``) or one cut off by the token limit (finish reason
  ``length``, ``truncated``); 1 otherwise (``complete``).
- ``refusal``: 0 when the answer opens with, or is mostly, a refusal phrase (``refusal``), else 1
  (``answered``). Phrases are configurable; matching is case-insensitive.
- ``json_validity``: only when ``gen_ai.output.type`` is ``json``: 1 when the answer parses as JSON
  (code fences allowed), else 0.
- ``answer_length``: 1 within ``[min_chars, max_chars]``, else 0 (``too_short`` / ``too_long``).
- ``context_overlap``: only when context was retrieved: the share of the answer's content words
  (lower-cased, stop words dropped) that occur in the context; low values hint at an answer not
  grounded in what was retrieved. The label is ``grounded`` at or above ``overlap_threshold``, else
  ``ungrounded``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from collector.quality._content import SpanContent

__all__ = [
    "DEFAULT_REFUSAL_PHRASES",
    "HEURISTIC_EVALUATORS",
    "Evaluation",
    "HeuristicSettings",
    "content_words",
    "evaluate",
    "parse_json_answer",
    "token_overlap",
]


@dataclass(frozen=True, slots=True)
class Evaluation:
    """One evaluator's verdict on one span: score in 0..1 (1 is good), label, short explanation."""

    name: str
    score: float
    label: str
    explanation: str = ""


DEFAULT_REFUSAL_PHRASES: tuple[str, ...] = (
    "i can't help with",
    "i cannot help with",
    "i can't assist with",
    "i cannot assist with",
    "i'm sorry, but i can't",
    "i'm sorry, but i cannot",
    "i am sorry, but i cannot",
    "i'm unable to",
    "i am unable to",
    "i won't be able to",
    "i can't provide",
    "i cannot provide",
    "i'm not able to",
    "as an ai language model",
    "i must decline",
    "i can't comply",
    "i cannot comply",
)

# Small English stop-word list: function words carry no evidence of grounding.
_STOP_WORDS = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "against",
        "all",
        "am",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "few",
        "for",
        "from",
        "further",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "him",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "itself",
        "just",
        "me",
        "more",
        "most",
        "my",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "on",
        "once",
        "only",
        "or",
        "other",
        "our",
        "ours",
        "out",
        "over",
        "own",
        "same",
        "she",
        "should",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "theirs",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "very",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "yours",
    ]
)
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_FENCE = re.compile(r"^\s*```[a-zA-Z0-9_-]*\s*\n(.*?)\n?```\s*$", re.DOTALL)


@dataclass(frozen=True, slots=True)
class HeuristicSettings:
    """Parameters of the heuristic evaluators (the ``quality`` processor builds this from its config)."""

    refusal_phrases: tuple[str, ...] = DEFAULT_REFUSAL_PHRASES
    #: A refusal phrase counts when it starts within this many characters of the answer's start, or
    #: when the answer is shorter than ``refusal_max_chars`` (a short answer that is only a refusal).
    refusal_window_chars: int = 80
    refusal_max_chars: int = 300
    min_chars: int = 1
    max_chars: int = 20_000
    overlap_threshold: float = 0.5


def content_words(text: str) -> set[str]:
    """Lower-cased words of ``text`` without stop words and one-letter tokens."""
    return {w for w in _WORD.findall(text.lower()) if len(w) > 1 and w not in _STOP_WORDS}


def token_overlap(answer: str, context: Sequence[str]) -> float | None:
    """Share of the answer's content words found in the context; ``None`` when either is empty."""
    words = content_words(answer)
    if not words:
        return None
    known: set[str] = set()
    for text in context:
        known |= content_words(text)
    if not known:
        return None
    return len(words & known) / len(words)


def parse_json_answer(answer: str) -> object:
    """Parse an answer that should be JSON, allowing one surrounding code fence; raises ``ValueError``."""
    match = _FENCE.match(answer)
    return json.loads(match.group(1) if match else answer)


def _completeness(content: SpanContent, settings: HeuristicSettings) -> Evaluation | None:
    if not content.answer.strip():
        # A tool-call-only answer has no text but is not empty.
        if content.finish_reasons and all(r in ("tool_call", "tool_calls") for r in content.finish_reasons):
            return None
        return Evaluation("completeness", 0.0, "empty", "the answer has no text")
    if "length" in content.finish_reasons or "max_tokens" in content.finish_reasons:
        return Evaluation("completeness", 0.0, "truncated", "the answer stopped at the token limit")
    return Evaluation("completeness", 1.0, "complete")


def _refusal(content: SpanContent, settings: HeuristicSettings) -> Evaluation | None:
    answer = content.answer.strip().lower().replace("’", "'")
    if not answer:
        return None
    for phrase in settings.refusal_phrases:
        at = answer.find(phrase)
        if at < 0:
            continue
        if at <= settings.refusal_window_chars or len(answer) <= settings.refusal_max_chars:
            return Evaluation("refusal", 0.0, "refusal", f"matched {phrase!r}")
    return Evaluation("refusal", 1.0, "answered")


def _json_validity(content: SpanContent, settings: HeuristicSettings) -> Evaluation | None:
    if content.output_type != "json" or not content.answer.strip():
        return None
    try:
        parse_json_answer(content.answer.strip())
    except ValueError as exc:
        return Evaluation("json_validity", 0.0, "invalid", f"not JSON: {exc}")
    return Evaluation("json_validity", 1.0, "valid")


def _answer_length(content: SpanContent, settings: HeuristicSettings) -> Evaluation | None:
    size = len(content.answer.strip())
    if size < settings.min_chars:
        return Evaluation("answer_length", 0.0, "too_short", f"{size} characters")
    if size > settings.max_chars:
        return Evaluation("answer_length", 0.0, "too_long", f"{size} characters")
    return Evaluation("answer_length", 1.0, "ok", f"{size} characters")


def _context_overlap(content: SpanContent, settings: HeuristicSettings) -> Evaluation | None:
    if not content.context:
        return None
    overlap = token_overlap(content.answer, content.context)
    if overlap is None:
        return None
    label = "grounded" if overlap >= settings.overlap_threshold else "ungrounded"
    return Evaluation("context_overlap", overlap, label, f"{overlap:.0%} of answer words in context")


#: Every heuristic evaluator by name, in the order they run.
HEURISTIC_EVALUATORS: dict[str, Callable[[SpanContent, HeuristicSettings], Evaluation | None]] = {
    "completeness": _completeness,
    "refusal": _refusal,
    "json_validity": _json_validity,
    "answer_length": _answer_length,
    "context_overlap": _context_overlap,
}


def evaluate(
    content: SpanContent, settings: HeuristicSettings, names: Sequence[str] | None = None
) -> list[Evaluation]:
    """Run the named evaluators (all by default) on a span's content; skips those that do not apply."""
    out: list[Evaluation] = []
    for name in names if names is not None else HEURISTIC_EVALUATORS:
        result = HEURISTIC_EVALUATORS[name](content, settings)
        if result is not None:
            out.append(result)
    return out
