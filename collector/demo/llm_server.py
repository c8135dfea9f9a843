"""A stand-in LLM API on loopback for the demo: OpenAI chat completions and embeddings, Anthropic Messages.

It speaks the providers' wire formats (JSON bodies, SSE streams with chunked transfer encoding, error
bodies) with token counts and latencies drawn from plausible distributions, so the demo's metrics look
like production ones without an API key or a network. It is no model: answers are canned sentences.
A request for a model named ``*-does-not-exist`` gets the provider's 404 ``model_not_found`` error.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["LlmServer", "ModelProfile"]

_WORDS = [
    "observability",
    "tokens",
    "latency",
    "cost",
    "quality",
    "drift",
    "spans",
    "metrics",
    "traces",
    "collector",
    "pipeline",
    "model",
    "answer",
    "question",
    "context",
    "retrieval",
    "agent",
    "tool",
    "stream",
    "chunk",
    "budget",
    "alert",
    "dashboard",
    "service",
    "feature",
]


@dataclass(frozen=True)
class ModelProfile:
    """How a stand-in model behaves: time to first token, time per output token, typical answer length."""

    ttft_s: float
    per_token_s: float
    mean_output_tokens: int


PROFILES = {
    "gpt-4o-mini": ModelProfile(ttft_s=0.12, per_token_s=0.0015, mean_output_tokens=120),
    "gpt-4o": ModelProfile(ttft_s=0.25, per_token_s=0.003, mean_output_tokens=180),
    "claude-3-5-haiku-latest": ModelProfile(ttft_s=0.15, per_token_s=0.002, mean_output_tokens=140),
    "claude-sonnet-4-20250514": ModelProfile(ttft_s=0.35, per_token_s=0.004, mean_output_tokens=220),
}
_DEFAULT = ModelProfile(ttft_s=0.1, per_token_s=0.002, mean_output_tokens=100)


def _prompt_tokens(messages: Any) -> int:
    text = json.dumps(messages)
    return max(5, len(text) // 4)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # the demo prints its own summary
        return

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError:
            self._json(400, {"error": {"message": "invalid JSON body", "type": "invalid_request_error"}})
            return
        path = self.path.split("?")[0]
        if path.endswith("/chat/completions"):
            self._chat(body)
        elif path.endswith("/embeddings"):
            self._embeddings(body)
        elif path.endswith("/messages"):
            self._messages(body)
        else:
            self._json(404, {"error": {"message": f"unknown path {path}", "type": "invalid_request_error"}})

    # --- plumbing -------------------------------------------------------------------------------
    def _json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("x-request-id", f"req_{uuid.uuid4().hex[:24]}")
        self.end_headers()
        self.wfile.write(data)

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("cache-control", "no-cache")
        self.end_headers()

    def _chunk(self, text: str) -> None:
        data = text.encode()
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _plan(self, model: str, max_tokens: int | None) -> tuple[ModelProfile, int, list[str]]:
        profile = PROFILES.get(model, _DEFAULT)
        rng = self.server.rng
        with self.server.rng_lock:
            output = max(3, int(rng.lognormvariate(0, 0.5) * profile.mean_output_tokens))
            words = [rng.choice(_WORDS) for _ in range(min(output, 40))]
        if max_tokens is not None:
            output = min(output, max_tokens)
        return profile, output, words

    def _sleep(self, seconds: float) -> None:
        time.sleep(seconds * self.server.time_scale)

    # --- OpenAI ---------------------------------------------------------------------------------
    def _openai_not_found(self, model: str) -> bool:
        if not model.endswith("-does-not-exist"):
            return False
        self._json(
            404,
            {
                "error": {
                    "message": f"The model `{model}` does not exist or you do not have access to it.",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "model_not_found",
                }
            },
        )
        return True

    def _chat(self, body: dict[str, Any]) -> None:
        model = str(body.get("model", ""))
        if self._openai_not_found(model):
            return
        profile, output, words = self._plan(
            model, body.get("max_completion_tokens") or body.get("max_tokens")
        )
        prompt = _prompt_tokens(body.get("messages"))
        cached = (prompt // 128) * 64 if prompt > 1024 else 0
        finish = "length" if body.get("max_tokens") == output else "stop"
        ident, created = f"chatcmpl-{uuid.uuid4().hex[:29]}", int(time.time())
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": output,
            "total_tokens": prompt + output,
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        }
        fingerprint = "fp_demo0001"
        if not body.get("stream"):
            self._sleep(profile.ttft_s + output * profile.per_token_s)
            self._json(
                200,
                {
                    "id": ident,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": " ".join(words), "refusal": None},
                            "logprobs": None,
                            "finish_reason": finish,
                        }
                    ],
                    "usage": usage,
                    "service_tier": "default",
                    "system_fingerprint": fingerprint,
                },
            )
            return
        self._start_stream()
        base = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "service_tier": "default",
            "system_fingerprint": fingerprint,
        }
        self._sleep(profile.ttft_s)
        first = {
            **base,
            "choices": [
                {
                    "index": 0,
                    "delta": {"role": "assistant", "content": "", "refusal": None},
                    "logprobs": None,
                    "finish_reason": None,
                }
            ],
        }
        self._chunk(f"data: {json.dumps(first)}\n\n")
        per_chunk = output * profile.per_token_s / max(1, len(words))
        for word in words:
            self._sleep(per_chunk)
            delta = {
                **base,
                "choices": [
                    {"index": 0, "delta": {"content": word + " "}, "logprobs": None, "finish_reason": None}
                ],
            }
            self._chunk(f"data: {json.dumps(delta)}\n\n")
        done = {**base, "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish}]}
        self._chunk(f"data: {json.dumps(done)}\n\n")
        if (body.get("stream_options") or {}).get("include_usage"):
            self._chunk(f"data: {json.dumps({**base, 'choices': [], 'usage': usage})}\n\n")
        self._chunk("data: [DONE]\n\n")
        self._end_stream()

    def _embeddings(self, body: dict[str, Any]) -> None:
        model = str(body.get("model", ""))
        if self._openai_not_found(model):
            return
        inputs = body.get("input")
        items = inputs if isinstance(inputs, list) else [inputs]
        tokens = sum(max(1, len(str(item)) // 4) for item in items)
        self._sleep(0.02 + 0.00005 * tokens)
        data = [
            {"object": "embedding", "index": i, "embedding": [0.01 * ((i + k) % 7) for k in range(8)]}
            for i in range(len(items))
        ]
        self._json(
            200,
            {
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )

    # --- Anthropic ------------------------------------------------------------------------------
    def _messages(self, body: dict[str, Any]) -> None:
        model = str(body.get("model", ""))
        if model.endswith("-does-not-exist"):
            self._json(
                404,
                {
                    "type": "error",
                    "error": {"type": "not_found_error", "message": f"model: {model}"},
                    "request_id": f"req_{uuid.uuid4().hex[:24]}",
                },
            )
            return
        profile, output, words = self._plan(model, body.get("max_tokens"))
        prompt = _prompt_tokens(body.get("messages"))
        cache_read = prompt // 2 if prompt > 1024 else 0
        usage = {
            "input_tokens": prompt - cache_read,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": cache_read,
            "output_tokens": output,
            "service_tier": "standard",
        }
        stop = "max_tokens" if body.get("max_tokens") == output else "end_turn"
        ident = f"msg_{uuid.uuid4().hex[:24]}"
        if not body.get("stream"):
            self._sleep(profile.ttft_s + output * profile.per_token_s)
            self._json(
                200,
                {
                    "model": model,
                    "id": ident,
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "text", "text": " ".join(words)}],
                    "stop_reason": stop,
                    "stop_sequence": None,
                    "usage": usage,
                },
            )
            return
        self._start_stream()
        self._sleep(profile.ttft_s)
        start_usage = {**usage, "output_tokens": 1}
        events: list[tuple[str, dict[str, Any]]] = [
            (
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "model": model,
                        "id": ident,
                        "type": "message",
                        "role": "assistant",
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": start_usage,
                    },
                },
            ),
            (
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            ),
            ("ping", {"type": "ping"}),
        ]
        for name, payload in events:
            self._chunk(f"event: {name}\ndata: {json.dumps(payload)}\n\n")
        per_chunk = output * profile.per_token_s / max(1, len(words))
        for word in words:
            self._sleep(per_chunk)
            delta = {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": word + " "},
            }
            self._chunk(f"event: content_block_delta\ndata: {json.dumps(delta)}\n\n")
        tail: list[tuple[str, dict[str, Any]]] = [
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": None},
                    "usage": usage,
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
        for name, payload in tail:
            self._chunk(f"event: {name}\ndata: {json.dumps(payload)}\n\n")
        self._end_stream()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], time_scale: float, seed: int) -> None:
        super().__init__(address, _Handler)
        self.time_scale = time_scale
        self.rng = random.Random(seed)
        self.rng_lock = threading.Lock()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that drop a keep-alive connection (the SDKs at shutdown) are normal here, not errors.
        return


class LlmServer:
    """Runs the stand-in API in a background thread on ``127.0.0.1``; ``base_url`` once started."""

    def __init__(self, port: int = 0, time_scale: float = 1.0, seed: int = 7) -> None:
        self._server = _Server(("127.0.0.1", port), time_scale, seed)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="demo-llm-server", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LlmServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
