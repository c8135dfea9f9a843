"""No made-up gen_ai.* names: every one we use exists upstream or is declared in an allow-listed model file.

"Used" means named anywhere in semconv/model/*.yaml, or written as a string literal in the Python sources of
otel_llm/ and collector/. The allowed set is the upstream model (current and deprecated files) plus exactly two
model files: upstream-later.yaml (upstream work after our snapshot) and field-aliases.yaml (non-standard
names seen in the field, accepted on input only). A literal ending in "." is a prefix and passes when some
allowed name starts with it (e.g. "gen_ai.usage."); template attributes such as gen_ai.prompt.variable.<key>
allow any suffix.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ._support import REPO_ROOT, load_generator, upstream_dir_or_skip

MODEL_DIR = REPO_ROOT / "semconv" / "model"
SOURCE_DIRS = ("otel_llm", "collector")
NAME = re.compile(r"gen_ai\.[A-Za-z0-9_.]*")


def _model_names(data: Any) -> Iterator[str]:
    """Every gen_ai.* name a model file mentions: attribute ids and refs, metric and event names, rename targets."""
    for group in data.get("groups", []) or []:
        for key in ("metric_name", "name"):
            if key in group:
                yield str(group[key])
        for spec in group.get("attributes", []) or []:
            for key in ("id", "ref"):
                if key in spec:
                    yield str(spec[key])
            yield from _renamed_to(spec)
        yield from _renamed_to(group)


def _renamed_to(spec: Any) -> Iterator[str]:
    deprecated = spec.get("deprecated")
    if isinstance(deprecated, dict) and deprecated.get("renamed_to"):
        yield str(deprecated["renamed_to"])


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


@pytest.fixture(scope="module")
def upstream_names() -> set[str]:
    generator = load_generator()
    names: set[str] = generator.load_upstream(upstream_dir_or_skip()).names()
    return names


@pytest.fixture(scope="module")
def allow_listed_names() -> set[str]:
    generator = load_generator()
    names: set[str] = set()
    for filename in (generator.LATER_UPSTREAM_FILE, generator.FIELD_ALIASES_FILE):
        names.update(n for n in _model_names(_load(MODEL_DIR / filename)) if n.startswith("gen_ai."))
    return names


@pytest.fixture(scope="module")
def template_prefixes() -> tuple[str, ...]:
    """`template[...]` attributes (gen_ai.prompt.variable.<key>) as prefixes."""
    generator = load_generator()
    upstream = generator.load_upstream(upstream_dir_or_skip())
    return tuple(f"{a.name}." for a in upstream.attributes.values() if a.type.startswith("template["))


def _allowed(name: str, known: set[str], templates: tuple[str, ...]) -> bool:
    if name in known or name.startswith(templates):
        return True
    return name.endswith(".") and any(k.startswith(name) for k in known)


def test_model_uses_only_upstream_gen_ai_names(
    upstream_names: set[str], allow_listed_names: set[str], template_prefixes: tuple[str, ...]
) -> None:
    generator = load_generator()
    allow_listed_files = {generator.LATER_UPSTREAM_FILE, generator.FIELD_ALIASES_FILE}
    known = upstream_names | allow_listed_names
    problems = [
        f"{path.name}: {name}"
        for path in sorted(MODEL_DIR.glob("*.yaml"))
        if path.name not in allow_listed_files
        for name in _model_names(_load(path))
        if name.startswith("gen_ai.") and not _allowed(name, known, template_prefixes)
    ]
    assert not problems, "gen_ai.* names that are neither upstream nor allow-listed:\n" + "\n".join(problems)


def test_allow_listed_files_do_not_shadow_upstream(upstream_names: set[str]) -> None:
    """A name that upstream (our snapshot) defines must be a `ref:`, not a definition in the allow-listed files."""
    generator = load_generator()
    shadowed = []
    for filename in (generator.LATER_UPSTREAM_FILE, generator.FIELD_ALIASES_FILE):
        data = _load(MODEL_DIR / filename)
        defined = [
            str(s["id"]) for g in data.get("groups", []) for s in g.get("attributes", []) or [] if "id" in s
        ]
        defined += [str(g[k]) for g in data.get("groups", []) for k in ("metric_name", "name") if k in g]
        shadowed += [f"{filename}: {n}" for n in defined if n in upstream_names]
    assert not shadowed, "defined upstream, use `ref:` instead:\n" + "\n".join(shadowed)


def _source_literals() -> Iterator[tuple[str, int, str]]:
    for folder in SOURCE_DIRS:
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    match = NAME.match(node.value)
                    if match:
                        yield str(path.relative_to(REPO_ROOT)), node.lineno, match.group(0)


def test_source_literals_use_only_known_gen_ai_names(
    upstream_names: set[str], allow_listed_names: set[str], template_prefixes: tuple[str, ...]
) -> None:
    known = upstream_names | allow_listed_names
    problems = [
        f"{where}:{line}: {name}"
        for where, line, name in _source_literals()
        if not _allowed(name, known, template_prefixes)
    ]
    assert not problems, (
        "gen_ai.* string literals that are not upstream names (use otel_llm.conventions constants, "
        "or declare later-upstream names in semconv/model/upstream-later.yaml):\n" + "\n".join(problems)
    )


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("gen_ai.usage.input_tokens", True),
        ("gen_ai.usage.", True),
        ("gen_ai.prompt.variable.user_name", True),
        ("gen_ai.usage.cache_write.input_tokens", True),
        ("gen_ai.usage.made_up_tokens", False),
        ("gen_ai.nothing.", False),
    ],
    ids=lambda v: str(v),
)
def test_allowed_rule(
    upstream_names: set[str],
    allow_listed_names: set[str],
    template_prefixes: tuple[str, ...],
    name: str,
    ok: bool,
) -> None:
    assert _allowed(name, upstream_names | allow_listed_names, template_prefixes) is ok
