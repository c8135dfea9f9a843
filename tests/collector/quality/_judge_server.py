"""A scripted OpenAI-compatible chat-completions server on loopback, for the judge tests.

Each request takes the next step of the script (the last step repeats): a verdict text, an HTTP
status, a delay, or a malformed body. Requests are recorded. ``stop()`` ends the server thread.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Step:
    text: str = '{"label": "relevant", "score": 0.9, "explanation": "on topic"}'
    status: int = 200
    delay_s: float = 0.0
    raw: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    usage: dict[str, int] | None = field(
        default_factory=lambda: {"prompt_tokens": 1000, "completion_tokens": 100}
    )


def verdict(label: str, score: float, explanation: str = "ok") -> Step:
    return Step(text=json.dumps({"label": label, "score": score, "explanation": explanation}))


class JudgeServer:
    def __init__(self, script: list[Step] | None = None) -> None:
        self.script = list(script or [Step()])
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._released = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with outer._lock:
                    outer.requests.append(json.loads(body))
                    outer.headers.append({k.lower(): v for k, v in self.headers.items()})
                    step = outer.script.pop(0) if len(outer.script) > 1 else outer.script[0]
                if step.delay_s:
                    outer._released.wait(step.delay_s)
                if step.raw is not None:
                    data = step.raw
                else:
                    payload: dict[str, Any] = {
                        "id": "chatcmpl-judge",
                        "model": "gpt-4o-mini",
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": step.text}}],
                    }
                    if step.usage is not None:
                        payload["usage"] = step.usage
                    data = json.dumps(payload).encode() if step.status == 200 else b'{"error": "scripted"}'
                try:
                    self.send_response(step.status)
                    for key, value in step.headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up (timeout test)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.start()

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def set_script(self, script: list[Step]) -> None:
        with self._lock:
            self.script = list(script)

    def wait_for(self, n: int, timeout_s: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.count >= n:
                return True
            time.sleep(0.01)
        return False

    def stop(self) -> None:
        self._released.set()  # end scripted delays so handler threads finish
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)
