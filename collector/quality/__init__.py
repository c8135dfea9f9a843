"""Quality of GenAI answers: heuristic and LLM-judge evaluators, user feedback, variant comparison.

- :mod:`collector.quality.heuristics`: cheap checks run on every span with content (``quality`` processor).
- :mod:`collector.quality.judge`: LLM-as-judge templates, verdict parsing, sampling, limits, client
  (``judge`` processor).
- :mod:`collector.quality.variants`: statistical comparison of two variants, and the CLI command.
- :class:`FeedbackIndex` joins user feedback (``feedback`` extension) to recent response spans.

See ``docs/quality.md`` for configuration.
"""

from __future__ import annotations

from collector.quality._content import SpanContent, document_texts, read_content
from collector.quality._feedback import FeedbackIndex, FeedbackKind, FeedbackRequest, SpanRecord, polarity
from collector.quality._labels import FEEDBACK_INDEX_KEY, REDACTOR_KEY, VARIANTS_KEY

__all__ = [
    "FEEDBACK_INDEX_KEY",
    "REDACTOR_KEY",
    "VARIANTS_KEY",
    "FeedbackIndex",
    "FeedbackKind",
    "FeedbackRequest",
    "SpanContent",
    "SpanRecord",
    "document_texts",
    "polarity",
    "read_content",
]
