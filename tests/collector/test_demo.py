"""The README's main job: `otel-llm demo` shows numbers the collector derived, and exits cleanly."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.external
def test_demo_prints_derived_numbers_per_model(tmp_path: Path) -> None:
    # The default config on other ports, so the test never collides with a collector a developer runs.
    config = (ROOT / "config" / "collector.yaml").read_text()
    for old, new in (
        ("4317", "24317"),
        ("4318", "24318"),
        ("9464", "29464"),
        ("13133", "23133"),
        ("8888", "28888"),
    ):
        config = config.replace(f"127.0.0.1:{old}", f"127.0.0.1:{new}")
    path = tmp_path / "collector.yaml"
    path.write_text(config)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "collector.cli",
            "demo",
            "--config",
            str(path),
            "--duration",
            "8",
            "--rate",
            "8",
            "--no-prometheus",
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "http://127.0.0.1:29464/metrics" in result.stdout
    final = result.stdout.rsplit("the collector derived, per model:", 1)[1]
    rows = re.findall(r"^\s+(gpt-4o-mini|claude-\S+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", final, re.MULTILINE)
    assert rows, final
    requests = sum(int(row[1]) for row in rows)
    input_tokens = sum(int(row[3]) for row in rows)
    assert requests > 0 and input_tokens > 0
