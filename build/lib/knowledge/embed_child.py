"""The embedding process behind `ProcessEmbedder`: reads pickled lists of texts on stdin,
answers pickled float32 matrices on stdout, until stdin closes (its parent exited).

    python -m knowledge.embed_child MODEL_OR_EMPTY EXPECTED_DIM_OR_EMPTY
"""

from __future__ import annotations

import os
import pickle
import signal
import struct
import sys

from knowledge.embedder import SentenceTransformerEmbedder

HEADER = struct.Struct("!I")


def read_message(stream: object) -> object:
    head = stream.read(HEADER.size)  # type: ignore[attr-defined]
    if len(head) < HEADER.size:
        raise EOFError
    (size,) = HEADER.unpack(head)
    body = stream.read(size)  # type: ignore[attr-defined]
    if len(body) < size:
        raise EOFError
    return pickle.loads(body)


def write_message(stream: object, message: object) -> None:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(HEADER.pack(len(body)) + body)  # type: ignore[attr-defined]
    stream.flush()  # type: ignore[attr-defined]


def main() -> None:
    # Ctrl-C in `burrow serve`'s terminal reaches the whole process group: the server shuts
    # down, and this process ends when its stdin closes, without a traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Answers go to a private copy of stdout; anything a library prints goes to stderr.
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    requests = os.fdopen(0, "rb")
    model = sys.argv[1] or None
    dim = int(sys.argv[2]) if sys.argv[2] else None
    embedder = SentenceTransformerEmbedder(model, dim=dim)
    while True:
        try:
            texts = read_message(requests)
        except EOFError:
            return
        try:
            import numpy as np

            vectors = np.asarray(embedder.embed(list(texts)),  # type: ignore[call-overload]
                                 dtype=np.float32)
            write_message(answers, ("ok", vectors.shape, vectors.tobytes()))
        except Exception as exc:  # the parent raises it; this process serves on
            write_message(answers, ("error", f"{type(exc).__name__}: {exc}"))


if __name__ == "__main__":
    main()
