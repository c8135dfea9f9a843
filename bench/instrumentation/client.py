"""One benchmark run in one fresh process: the shared harness's client with `otel-llm` as one more configuration.

Everything but the configuration table comes from `shared/bench/instrumentation_overhead/bench_client.py`
(same SDK providers with counting exporters, same calls, same warm-up, same JSON line), imported by path.
"""

from __future__ import annotations

import sys
from typing import Any

from _paths import HARNESS

sys.path.insert(0, str(HARNESS))
import bench_client as shared

CONFIGS = ("none", "otel-llm", "genai-openai", "traceloop", "openai-v2", "openai-v2-latest", "openlit")


def instrument(config: str, content: str) -> None:
    if config == "otel-llm":
        from otel_llm import LLMInstrumentor

        if content == "on":
            import os

            os.environ["OTEL_SEMCONV_STABILITY_OPT_IN"] = "gen_ai_latest_experimental"
            os.environ["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = "SPAN_ONLY"
        LLMInstrumentor().instrument()  # global providers, installed by the harness's setup_sdk()
    else:
        shared_instrument(config, content)


shared_instrument: Any = shared.instrument

if __name__ == "__main__":
    # The harness's main() reads these module globals when it runs.
    shared.CONFIGS = CONFIGS
    shared.instrument = instrument
    shared.main()
