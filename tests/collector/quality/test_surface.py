"""The public surface of collector.quality and its modules, pinned (changing it is a decision)."""

from __future__ import annotations

import collector.quality
import collector.quality.heuristics
import collector.quality.judge
import collector.quality.variants


def test_package_surface() -> None:
    assert set(collector.quality.__all__) == {
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
    }
    for module in (
        collector.quality,
        collector.quality.heuristics,
        collector.quality.judge,
        collector.quality.variants,
    ):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def test_shared_keys_match_their_owners() -> None:
    from collector.metrics import STORE_KEY
    from collector.processors.pii import REDACTOR_KEY

    assert collector.quality.REDACTOR_KEY == REDACTOR_KEY
    assert STORE_KEY == "collector.metrics.store"
