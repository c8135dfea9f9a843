"""The generator rejects a model that breaks the rules, with a message that names the file and the fault."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ._support import load_generator, upstream_dir_or_skip

CASES = {
    "made-up gen_ai ref": (
        "groups: [{id: g, type: attribute_group, attributes: [{ref: gen_ai.usage.made_up}]}]",
        "gen_ai.usage.made_up is not in the upstream model",
    ),
    "gen_ai definition outside the allow-listed files": (
        "groups: [{id: g, type: attribute_group, attributes: [{id: gen_ai.mine, type: int, brief: x}]}]",
        "new gen_ai.* names may only be declared",
    ),
    "redefining an upstream attribute": (
        "groups: [{id: g, type: attribute_group, attributes: [{id: otel_llm.x, type: int, brief: x},"
        " {id: gen_ai.request.model, type: string, brief: x}]}]",
        "is defined upstream",
    ),
    "core resource attribute without a type": (
        "groups: [{id: g, type: attribute_group, attributes: [{ref: service.version, brief: x}]}]",
        "only core-registry names",
    ),
    "enum value upstream lacks": (
        "groups: [{id: g, type: attribute_group, attributes: [{ref: gen_ai.operation.name,"
        " annotations: {otel_llm: {values: [chat, dance]}}}]}]",
        "['dance'] are not upstream members",
    ),
    "unit differs from upstream": (
        "groups: [{id: m, type: metric, metric_name: gen_ai.client.operation.duration, instrument: histogram,"
        " unit: ms, annotations: {otel_llm: {upstream: true}}}]",
        "upstream is histogram in 's'",
    ),
    "buckets not increasing": (
        "groups: [{id: m, type: metric, metric_name: otel_llm.x, instrument: histogram, unit: s, brief: x,"
        " annotations: {otel_llm: {buckets: [1, 1]}}}]",
        "strictly increasing",
    ),
    "metric attribute not declared": (
        "groups: [{id: m, type: metric, metric_name: otel_llm.x, instrument: counter, unit: '1', brief: x,"
        " attributes: [{ref: otel_llm.undeclared}]}]",
        "otel_llm.undeclared is in no attribute_group",
    ),
    "rename to an undeclared attribute": (
        "groups: [{id: g, type: attribute_group, attributes: [{ref: gen_ai.system,"
        " deprecated: {reason: renamed, renamed_to: gen_ai.provider.name}}]}]",
        "renamed to undeclared gen_ai.provider.name",
    ),
}


@pytest.mark.parametrize(("text", "expected"), list(CASES.values()), ids=list(CASES))
def test_bad_model_is_rejected(tmp_path: Path, text: str, expected: str) -> None:
    generator = load_generator()
    upstream = generator.load_upstream(upstream_dir_or_skip())
    (tmp_path / "bad.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
    with pytest.raises(generator.ModelError, match=r"bad\.yaml") as caught:
        generator.load_model(tmp_path, upstream)
    assert expected in str(caught.value)


def test_missing_upstream_is_reported(tmp_path: Path) -> None:
    generator = load_generator()
    with pytest.raises(generator.ModelError, match="--upstream"):
        generator.load_upstream(tmp_path / "absent")
