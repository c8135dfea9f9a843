"""Where the shared harness and the repository are."""

from __future__ import annotations

import os
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def _harness() -> Path:
    env = os.environ.get("OTEL_LLM_BENCH_HARNESS")
    if env:
        return Path(env)
    for shared in (REPO.parent / "shared", REPO / "shared"):
        if (shared / "bench" / "instrumentation_overhead").is_dir():
            return shared / "bench" / "instrumentation_overhead"
    return REPO.parent / "shared" / "bench" / "instrumentation_overhead"


HARNESS = _harness()
