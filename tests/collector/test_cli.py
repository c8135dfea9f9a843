"""The otel-llm command: one clear line and exit code 2 for every user mistake, never a traceback."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from collector.cli import main

ROOT = Path(__file__).resolve().parents[2]
TESTDATA = Path(__file__).parent / "testdata" / "config"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert capsys.readouterr().out.startswith("otel-llm ")


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["--bogus"], id="unknown-flag"),
        pytest.param([], id="no-command"),
        pytest.param(["collector"], id="missing-required-flag"),
        pytest.param(["demo", "--duration", "soon"], id="bad-number"),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("otel-llm") and "error:" in err[0]


def test_validate_config_missing_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate-config", "nowhere.yaml"]) == 2
    assert capsys.readouterr().err == "nowhere.yaml: no such file\n"


def test_collector_with_missing_config_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["collector", "--config", "nowhere.yaml"]) == 2
    assert capsys.readouterr().err == "nowhere.yaml: no such file\n"


def test_validate_config_lists_every_problem(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "receivers: {otlp: {protocols: {grpc: {endpoint: 1}}}}\n"
        "exporters: {debug: {verbosity: loud}}\n"
        "bogus: 1\n"
        "service: {pipelines: {traces: {receivers: [otlp], processors: [batch], exporters: [debug]}}}\n"
    )
    assert main(["validate-config", str(bad)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert (
        f"{bad}: bogus: unknown key (expected one of: receivers, processors, exporters, extensions, service)"
        in lines
    )
    assert (
        f"{bad}: service::pipelines::traces::processors::0: 'batch' is not defined under `processors`"
        in lines
    )
    assert any(line.startswith(f"{bad}: exporters::debug::verbosity: expected one of") for line in lines)
    assert all(line.startswith(f"{bad}: ") for line in lines)


def test_default_config_is_valid(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate-config", str(ROOT / "config" / "collector.yaml")]) == 0
    assert "valid" in capsys.readouterr().out


def test_console_script_without_traceback() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "collector.cli", "validate-config", str(TESTDATA / "negative_size.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_commented_opt_in_processors_of_the_default_config_are_valid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The opt-in examples in config/collector.yaml stay valid when uncommented and put in the pipeline."""
    lines = []
    for line in (ROOT / "config" / "collector.yaml").read_text().splitlines():
        if match := re.match(r"^  # (pii|quality|judge|drift|anomaly)(:.*)$", line):
            line = f"  {match.group(1)}{match.group(2)}"
        elif match := re.match(r"^  #   (.*)$", line):
            line = f"    {match.group(1)}"
        lines.append(line)
    text = "\n".join(lines)
    old = "processors: [memory_limiter, genai_metrics, cost]"
    assert old in text
    text = text.replace(
        old, "processors: [memory_limiter, pii, genai_metrics, cost, quality, judge, drift, anomaly]"
    )
    full = tmp_path / "full.yaml"
    full.write_text(text)
    monkeypatch.setenv("OTEL_LLM_PII_HASH_KEY", "0123456789abcdef0123")
    monkeypatch.chdir(ROOT)  # rules_dir is relative to the repository
    assert main(["validate-config", str(full)]) == 0, capsys.readouterr().err
