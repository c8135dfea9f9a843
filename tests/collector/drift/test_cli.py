"""``otel-llm drift save-reference``, through the main command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from google.protobuf import json_format

from collector.cli import main
from tests.collector.drift._helpers import SpanSpec, prompts, request

CONFIG = """
receivers: {{otlp: {{}}}}
processors:
  drift: {{signals: [prompt_embedding, input_tokens], reference: {{mode: file, directory: "{directory}"}}}}
exporters: {{debug: {{}}}}
service:
  pipelines:
    traces: {{receivers: [otlp], processors: [drift], exporters: [debug]}}
"""


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    traces = tmp_path / "traces.jsonl"
    lines = [
        json_format.MessageToJson(
            request([SpanSpec(prompt=p) for p in prompts("travel", 30, rng)]), indent=None
        )
        for _ in range(2)
    ]
    traces.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = tmp_path / "collector.yaml"
    config.write_text(CONFIG.format(directory=tmp_path / "refs"), encoding="utf-8")
    return config, traces


def test_save_reference_writes_one_file_per_group_and_signal(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config, traces = files
    assert main(["drift", "save-reference", "--config", str(config), str(traces)]) == 0
    written = capsys.readouterr().out.split()
    assert len(written) == 2 and all(Path(p).exists() and Path(p).parent.name == "refs" for p in written)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--processor", "drift/other"], "processors::drift/other is not defined"),
        (["--config", "missing.yaml"], "missing.yaml: no such file"),
    ],
    ids=["unknown-processor", "missing-config"],
)
def test_mistakes_are_one_line_and_exit_2(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    config, traces = files
    argv = ["drift", "save-reference", "--config", str(config), *extra, str(traces)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["drift", "save-reference"])
    assert exit_info.value.code == 2
    assert "otel-llm drift save-reference: error:" in capsys.readouterr().err
