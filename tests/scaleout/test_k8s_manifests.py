"""config/k8s: the manifests parse, fit together, and otel-llm's embedded config loads with the real factories."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from collector.component import Kind
from collector.configuration import parse_config

K8S = Path(__file__).resolve().parents[2] / "config" / "k8s"
ENV = {
    "OTEL_LLM_INGEST_TOKEN": "i" * 32,
    "OTEL_LLM_FEEDBACK_TOKEN": "f" * 32,
    "OTEL_LLM_PII_HASH_KEY": "k" * 32,
}


def _documents() -> dict[tuple[str, str], dict[str, Any]]:
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if document:
                found[(document["kind"], document["metadata"]["name"])] = document
    return found


def test_otel_llm_config_loads_with_pii_first() -> None:
    docs = _documents()
    text = docs[("ConfigMap", "otel-llm-config")]["data"]["collector.yaml"]
    config = parse_config(text, "config/k8s/otel-llm.yaml", environ=ENV)
    traces = next(p for p in config.pipelines if p.id == "traces")
    assert traces.processors[:2] == ("memory_limiter", "pii")
    assert config.components[Kind.PROCESSOR]["pii"].config.mode == "hash"  # type: ignore[attr-defined]


def test_statefulset_headless_service_and_gateway_fit_together() -> None:
    docs = _documents()
    headless = docs[("Service", "otel-llm")]["spec"]
    statefulset = docs[("StatefulSet", "otel-llm")]["spec"]
    assert headless["clusterIP"] == "None"
    assert statefulset["serviceName"] == "otel-llm"
    assert headless["selector"] == statefulset["selector"]["matchLabels"]
    gateway = yaml.safe_load(docs[("ConfigMap", "otelcol-gateway-config")]["data"]["config.yaml"])
    exporter = gateway["exporters"]["loadbalancing"]
    assert exporter["routing_key"] == "service"
    resolver = exporter["resolver"]["k8s"]
    assert resolver["service"] == f"otel-llm.{docs[('Service', 'otel-llm')]['metadata']['namespace']}"
    assert resolver["ports"] == [p["port"] for p in headless["ports"] if p["name"] == "otlp-grpc"]
    assert resolver["return_hostnames"] is True
    for pipeline in gateway["service"]["pipelines"].values():
        assert pipeline["exporters"] == ["loadbalancing"]


def test_secrets_are_placeholders_and_referenced_keys_exist() -> None:
    docs = _documents()
    secret = docs[("Secret", "otel-llm-secrets")]["stringData"]
    assert all(value.startswith("REPLACE") for value in secret.values())
    for kind, name in (("StatefulSet", "otel-llm"), ("Deployment", "otelcol-gateway")):
        for container in docs[(kind, name)]["spec"]["template"]["spec"]["containers"]:
            for variable in container.get("env", []):
                reference = variable["valueFrom"]["secretKeyRef"]
                assert reference["name"] == "otel-llm-secrets" and reference["key"] in secret
