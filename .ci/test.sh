#!/usr/bin/env bash
# The whole test suite: formatting, lint, strict typing, then pytest. Sets everything up first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup.sh

echo "==> ruff format --check"
.venv/bin/ruff format --check --quiet otel_llm collector semconv tests bench
echo "==> ruff check"
.venv/bin/ruff check otel_llm collector semconv tests bench
echo "==> mypy (strict) on otel_llm and collector"
.venv/bin/mypy
echo "==> semconv generated files are current"
.venv/bin/python semconv/generate.py --check

echo "==> pytest"
set +e
.venv/bin/python -m pytest -p no:cacheprovider "$@"
code=$?
set -e
# Exit code 5 means no test was collected (for example a filter that matched nothing): not a failure.
if [ "$code" -eq 5 ]; then
  echo "pytest collected no tests"
  code=0
fi
if [ "$code" -ne 0 ]; then
  exit "$code"
fi

# The instrumentation tests again with openai 2.x / anthropic 0.x on httpx (no httpx2), in .venv-legacy.
echo "==> legacy SDKs (bash .ci/test-legacy-sdks.sh)"
bash .ci/test-legacy-sdks.sh
