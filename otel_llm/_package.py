"""The HTTP client libraries whose `Client.send` / `AsyncClient.send` are hooked, with supported versions.

Whichever of them is importable is hooked; none is required. `openai` >= 3 and `anthropic` >= 1 use
`httpx2`; older SDKs and many OpenAI-compatible clients use `httpx`.
"""

from __future__ import annotations

HTTP_LIBRARIES: tuple[tuple[str, str], ...] = (
    ("httpx", ">= 0.23"),
    ("httpx2", ">= 2.0"),
)
