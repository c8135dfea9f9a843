"""The config loader: every mistake reported with file, key path and expectation; env expansion."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import Field

from collector.component import ComponentConfig, Factory, Kind, Signal
from collector.configuration import load_config, parse_config
from collector.durations import Duration
from collector.errors import ConfigError

TESTDATA = Path(__file__).parent / "testdata" / "config"


class FakeReceiverConfig(ComponentConfig):
    endpoint: str = "127.0.0.1:4317"
    max_recv_msg_size_mib: int = Field(4, gt=0)


class FakeLimiterConfig(ComponentConfig):
    limit_mib: int = Field(gt=0)
    spike_limit_mib: int | None = Field(None, gt=0)
    check_interval: Duration = 1.0

    def problems(self) -> list[tuple[str, str]]:
        if self.spike_limit_mib is not None and self.spike_limit_mib >= self.limit_mib:
            return [
                (
                    "spike_limit_mib",
                    f"must be less than limit_mib ({self.limit_mib}), got {self.spike_limit_mib}",
                )
            ]
        return []


class FakeExporterConfig(ComponentConfig):
    pass


def _create(config: Any, settings: Any) -> object:
    return object()


REGISTRY = {
    Kind.RECEIVER: {
        "fake": Factory(Kind.RECEIVER, "fake", FakeReceiverConfig, _create, frozenset({Signal.TRACES}))
    },
    Kind.PROCESSOR: {"limiter": Factory(Kind.PROCESSOR, "limiter", FakeLimiterConfig, _create)},
    Kind.EXPORTER: {"sink": Factory(Kind.EXPORTER, "sink", FakeExporterConfig, _create)},
    Kind.EXTENSION: {},
}


def _problems(name: str, environ: dict[str, str] | None = None) -> list[str]:
    path = TESTDATA / f"{name}.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={} if environ is None else environ, registry=REGISTRY)
    return caught.value.problems


def test_valid_config_loads_with_defaults_and_env_default() -> None:
    config = load_config(TESTDATA / "valid.yaml", environ={}, registry=REGISTRY)
    receivers = config.components[Kind.RECEIVER]
    assert receivers["fake"].config == FakeReceiverConfig()
    assert receivers["fake/second"].config.endpoint == "127.0.0.1:5000"  # type: ignore[attr-defined]
    limiter = config.components[Kind.PROCESSOR]["limiter"].config
    assert limiter.check_interval == pytest.approx(0.25)  # type: ignore[attr-defined]
    (pipeline,) = config.pipelines
    assert pipeline.signal is Signal.TRACES
    assert pipeline.receivers == ("fake", "fake/second")


def test_env_variable_is_expanded() -> None:
    config = load_config(
        TESTDATA / "valid.yaml", environ={"FAKE_ENDPOINT": "0.0.0.0:7000"}, registry=REGISTRY
    )
    assert config.components[Kind.RECEIVER]["fake/second"].config.endpoint == "0.0.0.0:7000"  # type: ignore[attr-defined]


def test_dollar_dollar_is_a_literal_dollar() -> None:
    text = "receivers: {fake: {endpoint: 'a$$b'}}\nexporters: {sink: }\nservice: {pipelines: {traces: {receivers: [fake], exporters: [sink]}}}"
    config = parse_config(text, environ={}, registry=REGISTRY)
    assert config.components[Kind.RECEIVER]["fake"].config.endpoint == "a$b"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param(
            "unknown_top_level",
            [
                "connectors: unknown key (expected one of: receivers, processors, exporters, extensions, service)"
            ],
            id="unknown-top-level-key",
        ),
        pytest.param(
            "undefined_processor",
            ["service::pipelines::traces::processors::0: 'batch' is not defined under `processors`"],
            id="undefined-processor",
        ),
        pytest.param(
            "wrong_type",
            ["receivers::fake::max_recv_msg_size_mib: expected an integer, got 'lots'"],
            id="wrong-type",
        ),
        pytest.param(
            "negative_size",
            ["processors::limiter::limit_mib: expected a value > 0, got -5"],
            id="negative-size",
        ),
        pytest.param(
            "unknown_key",
            ["receivers::fake::endpiont: unknown key (expected one of: endpoint, max_recv_msg_size_mib)"],
            id="unknown-component-key",
        ),
        pytest.param(
            "unknown_type",
            ["receivers::zipkin: unknown receiver type 'zipkin' (known: fake)"],
            id="unknown-component-type",
        ),
        pytest.param(
            "cross_field",
            ["processors::limiter::spike_limit_mib: must be less than limit_mib (100), got 200"],
            id="cross-field-check",
        ),
        pytest.param(
            "wrong_signal",
            [
                "service::pipelines::metrics::receivers::0: 'fake' cannot be used in a metrics pipeline (supports: traces)",
                "service::pipelines::profiles: unknown signal 'profiles' (expected traces, metrics or logs)",
            ],
            id="wrong-signal",
        ),
        pytest.param(
            "bad_duration",
            [
                "processors::limiter::check_interval: expected a duration such as 5s, 250ms or 1m30s, got 'soon'"
            ],
            id="bad-duration",
        ),
        pytest.param(
            "missing_env",
            [
                "receivers::fake::endpoint: environment variable OTEL_LLM_TEST_UNSET_VARIABLE is not set and has no default"
            ],
            id="unset-env-variable",
        ),
    ],
)
def test_each_mistake_names_file_key_path_and_expectation(name: str, expected: list[str]) -> None:
    source = str(TESTDATA / f"{name}.yaml")
    assert _problems(name) == [f"{source}: {line}" for line in expected]


def test_invalid_yaml_names_line_and_column() -> None:
    (problem,) = _problems("invalid_yaml")
    assert problem.startswith(f"{TESTDATA / 'invalid_yaml.yaml'}:3:1: invalid YAML:")


def test_all_problems_are_reported_at_once() -> None:
    source = TESTDATA / "many_errors.yaml"
    assert _problems("many_errors") == [
        f"{source}: receivers::fake::max_recv_msg_size_mib: expected a value > 0, got 0",
        f"{source}: processors::limiter::limit_mib: required key is missing",
        f"{source}: service::pipelines::traces::exporters: list should have at least 1 item after validation, not 0",
    ]


def test_missing_file_is_one_problem() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(TESTDATA / "does_not_exist.yaml", registry=REGISTRY)
    assert caught.value.problems == [f"{TESTDATA / 'does_not_exist.yaml'}: no such file"]


def test_top_level_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("- a\n- b\n", "list.yaml", environ={}, registry=REGISTRY)
    assert caught.value.problems == ["list.yaml: expected a mapping at the top level, got a list"]


def test_missing_service_section() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("receivers: {fake: }\n", "x.yaml", environ={}, registry=REGISTRY)
    assert caught.value.problems == [
        "x.yaml: service: missing (expected a mapping with at least `pipelines`)"
    ]
