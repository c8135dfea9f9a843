"""docs/configuration.md is generated from the config models and must be current."""

from __future__ import annotations

from collector.reference import OUTPUT, render_reference


def test_configuration_reference_is_current() -> None:
    assert OUTPUT.read_text() == render_reference(), (
        "docs/configuration.md is stale: run python -m collector.reference"
    )


def test_every_component_key_has_a_description() -> None:
    text = render_reference()
    undocumented = [line for line in text.splitlines() if line.startswith("| `") and line.endswith("|  |")]
    # Nested sections ("see below") may stay without a sentence of their own; leaf keys may not.
    leaves = [line for line in undocumented if "see below" not in line]
    assert leaves == []
