"""`opentelemetry-instrument python app.py` turns otel-llm on with no code change (OTLP/HTTP to a local receiver)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.fakes.cassette_server import CassetteServer
from tests.fakes.otlp_receiver import OtlpReceiver

REPO = Path(__file__).resolve().parents[2]

APP = """
import os, openai
client = openai.OpenAI(base_url=os.environ["APP_BASE_URL"], api_key="k", max_retries=0,
                       default_headers={"x-cassette": os.environ["APP_CASSETTE"]})
stream = client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "hi"}],
                                        stream=True, stream_options={"include_usage": True})
print("".join(c.choices[0].delta.content or "" for c in stream if c.choices))
client.close()
"""


def _entry_point_path(tmp_path: Path) -> list[str]:
    """Extra sys.path entries so that the `otel_llm` entry point is found even when the project is not installed."""
    if any(
        ep.name == "otel_llm" for ep in importlib.metadata.entry_points(group="opentelemetry_instrumentor")
    ):
        return []
    dist = tmp_path / "site" / "otel_llm_entrypoint-0.0.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: otel-llm-entrypoint\nVersion: 0.0.0\n")
    (dist / "entry_points.txt").write_text(
        "[opentelemetry_instrumentor]\notel_llm = otel_llm.instrumentor:LLMInstrumentor\n"
    )
    return [str(tmp_path / "site")]


@pytest.mark.external
def test_opentelemetry_instrument(tmp_path: Path, server: CassetteServer) -> None:
    bin_dir = Path(sys.executable).parent
    launcher = bin_dir / "opentelemetry-instrument"
    if not launcher.exists():
        pytest.skip("opentelemetry-instrument is not installed")
    try:
        exporter = importlib.util.find_spec("opentelemetry.exporter.otlp.proto.http")
    except ModuleNotFoundError:  # a parent package is missing
        exporter = None
    if exporter is None:
        pytest.skip("opentelemetry-exporter-otlp-proto-http is not installed")
    app = tmp_path / "app.py"
    app.write_text(textwrap.dedent(APP))
    with OtlpReceiver() as receiver:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "ANTHROPIC_"))},
            "PYTHONPATH": os.pathsep.join([*_entry_point_path(tmp_path), str(REPO)]),
            "APP_BASE_URL": server.url + "/v1",
            "APP_CASSETTE": "opentelemetry-python-contrib/openai_chat_completion_streaming_with_usage",
            "OTEL_SERVICE_NAME": "zero-code-app",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "otlp",
            "OTEL_LOGS_EXPORTER": "none",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }
        done = subprocess.run(
            [str(launcher), sys.executable, str(app)],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert '"This is a test."' in done.stdout
        spans = receiver.spans()
    genai = [span for scope, span in spans if scope == "otel_llm"]
    assert [s.name for s in genai] == ["chat gpt-4"]
    attrs = {kv.key: kv.value for kv in genai[0].attributes}
    assert attrs["gen_ai.usage.output_tokens"].int_value == 5
    assert attrs["gen_ai.provider.name"].string_value == "openai"
    # opentelemetry-instrumentation-httpx is installed too: its span must nest under ours.
    http = [span for scope, span in spans if scope != "otel_llm"]
    assert http, [scope for scope, _ in spans]
    for span in http:
        assert span.parent_span_id == genai[0].span_id
    assert "gen_ai.client.operation.duration" in receiver.metric_names()
