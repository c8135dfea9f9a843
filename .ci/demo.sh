#!/usr/bin/env bash
# The main job: sets everything up, then runs the collector on config/collector.yaml with demo traffic
# (the real openai SDK, instrumented by otel-llm, against a local stand-in LLM server).
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup.sh
exec .venv/bin/otel-llm demo --config config/collector.yaml "$@"
