"""A real Alertmanager receives, groups and resolves our alerts; its webhook receiver is a local server."""

from __future__ import annotations

import json
import logging
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from collector.alerting.notifiers import AlertmanagerNotifier, Delivery, Notification, Route
from tests.collector.alerting._http import Recorder, recording_server

pytestmark = pytest.mark.external

BINARY = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def receiver() -> Iterator[Recorder]:
    with recording_server() as server:
        server.default_status = 200
        yield server


@pytest.fixture
def alertmanager(tmp_path: Path, receiver: Recorder) -> Iterator[str]:
    if BINARY is None:
        pytest.skip("prometheus-alertmanager is not installed (apt-get install prometheus-alertmanager)")
    config = {
        "route": {
            "receiver": "hook",
            "group_by": ["alertname"],
            "group_wait": "1s",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [
            {"name": "hook", "webhook_configs": [{"url": receiver.url + "/am", "send_resolved": True}]}
        ],
    }
    (tmp_path / "am.yml").write_text(json.dumps(config))  # JSON is YAML
    port = _free_port()
    process = subprocess.Popen(
        [
            BINARY,
            f"--config.file={tmp_path / 'am.yml'}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx2.get(url + "/-/ready", timeout=1).status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                stderr = process.stderr.read().decode() if process.stderr else ""
                pytest.fail(f"alertmanager did not start: {stderr[-2000:]}")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        if process.stderr:
            process.stderr.close()


def _note(model: str, status: str, starts: float) -> Notification:
    return Notification(
        fingerprint=f"fp-{model}",
        rule="LLMLatencyP95Step",
        status=status,
        severity="warning",
        labels={
            "alertname": "LLMLatencyP95Step",
            "severity": "warning",
            "service_name": "chat",
            "gen_ai_request_model": model,
        },
        annotations={"summary": f"p95 latency of chat/{model} stepped up"},
        starts_at=starts,
        ends_at=None if status == "firing" else time.time(),
        value=4.2,
        baseline=2.1,
        generator_url="http://grafana.local/d/llm",
    )


def test_alertmanager_groups_and_resolves(alertmanager: str, receiver: Recorder) -> None:
    delivery = Delivery(max_attempts=3, initial_backoff_s=0.1, timeout_s=5)
    route = Route(AlertmanagerNotifier(alertmanager, resend_interval_s=30), delivery, logging.getLogger("t"))
    route.start()
    try:
        starts = time.time() - 5
        assert route.submit(_note("gpt-4o", "firing", starts))
        assert route.submit(_note("claude", "firing", starts))
        assert route.flush(10)

        # Alertmanager holds both alerts, with our labels and annotations.
        held = httpx2.get(alertmanager + "/api/v2/alerts", timeout=5).json()
        assert sorted(a["labels"]["gen_ai_request_model"] for a in held) == ["claude", "gpt-4o"]
        assert {a["status"]["state"] for a in held} == {"active"}
        assert held[0]["generatorURL"] == "http://grafana.local/d/llm"

        # Grouped by alertname: one webhook call carries both alerts.
        (grouped,) = receiver.wait_for(1, timeout_s=20)
        body = grouped.json()
        assert body["status"] == "firing" and body["groupLabels"] == {"alertname": "LLMLatencyP95Step"}
        assert sorted(a["labels"]["gen_ai_request_model"] for a in body["alerts"]) == ["claude", "gpt-4o"]
        assert body["commonAnnotations"] == {} and body["alerts"][0]["annotations"]["summary"].startswith(
            "p95"
        )

        # Resolve both: the receiver is told, with endsAt set.
        route.submit(_note("gpt-4o", "resolved", starts))
        route.submit(_note("claude", "resolved", starts))
        assert route.flush(10)
        deadline = time.monotonic() + 20
        resolved = None
        while time.monotonic() < deadline and resolved is None:
            for request in receiver.wait_for(2, timeout_s=1):
                if request.json()["status"] == "resolved":
                    resolved = request.json()
        assert resolved is not None, [r.json()["status"] for r in receiver.requests]
        assert {a["status"] for a in resolved["alerts"]} == {"resolved"}
        assert len(resolved["alerts"]) == 2
    finally:
        route.shutdown(5)
