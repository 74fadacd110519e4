"""The embedding process behind `knowledge.embedder.ProcessEmbedder` (`knowledge.child`):
answers each list of texts with its float32 matrix as (shape, bytes).

    python -m knowledge.embed_child MODEL_OR_EMPTY EXPECTED_DIM_OR_EMPTY
"""

from __future__ import annotations

import sys
from typing import Any

from knowledge.child import serve
from knowledge.embedder import SentenceTransformerEmbedder


def main() -> None:
    embedder = SentenceTransformerEmbedder(sys.argv[1] or None,
                                           dim=int(sys.argv[2]) if sys.argv[2] else None)

    def embed(texts: Any) -> tuple[tuple[int, ...], bytes]:
        import numpy as np

        vectors = np.asarray(embedder.embed([str(t) for t in texts]), dtype=np.float32)
        return vectors.shape, vectors.tobytes()

    serve(embed)


if __name__ == "__main__":
    main()
