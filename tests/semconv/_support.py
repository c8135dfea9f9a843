"""Shared helpers for the semconv tests: load semconv/generate.py by path and find the upstream model.

semconv/ is a folder of tools, not a package, so the generator is imported from its file; the upstream model
lives outside the repository (../shared), so every test that needs it skips with a reason when it is absent.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
GENERATOR_PATH = REPO_ROOT / "semconv" / "generate.py"


def load_generator() -> ModuleType:
    """Import semconv/generate.py once per process under a private module name."""
    name = "_otel_llm_semconv_generate"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, GENERATOR_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses resolve string annotations through sys.modules, so register before executing.
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def upstream_dir_or_skip() -> Path:
    """The upstream model folder (../shared/reference/semconv-genai), or skip the calling test."""
    folder: Path = load_generator().DEFAULT_UPSTREAM
    if not folder.is_dir():
        pytest.skip(f"upstream semantic-convention model not found at {folder}")
    return folder
