#!/usr/bin/env bash
# The instrumentation tests again with the older SDKs, which send through `httpx` instead of `httpx2`:
# openai 2.x and anthropic 0.x, in their own virtual environment .venv-legacy, with httpx2 NOT
# installed (so the httpx hooks are the only ones, and httpx2-only tests skip). Pinned by
# .ci/constraints-legacy.txt; idempotent like .ci/setup.sh (installs only when the pins change).
# Extra arguments go to pytest: `bash .ci/test-legacy-sdks.sh -k stream`.
#
# To move the pins: delete .venv-legacy, run the install line below without `-c`, then
#   .venv-legacy/bin/python -m pip freeze --exclude-editable > .ci/constraints-legacy.txt
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV=.venv-legacy
# What the legacy environment holds: the package's base dependencies, the old SDKs, and the test tools.
PACKAGES=(
  -e .
  "openai==2.54.0"
  "anthropic<1"
  httpx
  opentelemetry-sdk
  opentelemetry-proto
  opentelemetry-instrumentation-httpx
  PyYAML
  pytest
  pytest-timeout
  hypothesis
)
# The tests that drive the SDKs: every cassette, every way a stream ends, content capture,
# suppression, uninstrument, native-span handling, raw responses and errors.
TESTS=(
  tests/otel_llm/test_cassettes.py
  tests/otel_llm/test_streams.py
  tests/otel_llm/test_behaviour.py
)

if [ ! -x "$VENV/bin/python" ]; then
  if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "otel-llm needs Python 3.11 or newer; $PYTHON is $("$PYTHON" --version 2>&1)" >&2
    exit 2
  fi
  echo "==> creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi

stamp="$VENV/.otel-llm-installed"
wanted="$(cat pyproject.toml .ci/constraints-legacy.txt .ci/test-legacy-sdks.sh | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
  echo "==> installing the legacy SDKs into $VENV (pinned by .ci/constraints-legacy.txt)"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    -c .ci/constraints-legacy.txt "${PACKAGES[@]}"
  echo "$wanted" > "$stamp"
fi

# The point of this environment: nothing in it may have brought httpx2 along.
if "$VENV/bin/python" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("httpx2") is None)'; then
  echo "$VENV has httpx2 installed; the legacy run must go through httpx only" >&2
  exit 1
fi
"$VENV/bin/python" -c 'import openai, anthropic, httpx
print(f"==> pytest with openai {openai.__version__}, anthropic {anthropic.__version__}, httpx {httpx.__version__}, no httpx2")'

set +e
"$VENV/bin/python" -m pytest -p no:cacheprovider -q -rs "${TESTS[@]}" "$@"
code=$?
set -e
# Exit code 5 means no test was collected (for example a filter that matched nothing): not a failure.
if [ "$code" -eq 5 ]; then
  echo "pytest collected no tests"
  exit 0
fi
exit "$code"
