"""The name-detection process behind `knowledge.ner.ProcessNames`: reads pickled texts on
stdin, answers pickled lists of (start, end) spans (or an error string) on stdout, until stdin
closes (its parent exited).

    python -m knowledge.ner_child MODEL_PACKAGE
"""

from __future__ import annotations

import os
import signal
import sys

from knowledge.embed_child import read_message, write_message
from knowledge.ner import PresidioNames


def main() -> None:
    # Ctrl-C in `burrow serve`'s terminal reaches the whole process group: the server shuts
    # down, and this process ends when its stdin closes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    answers = os.fdopen(os.dup(1), "wb")  # anything a library prints goes to stderr
    os.dup2(2, 1)
    requests = os.fdopen(0, "rb")
    names = PresidioNames(sys.argv[1])
    while True:
        try:
            text = read_message(requests)
        except EOFError:
            return
        try:
            write_message(answers, names.find(str(text)))
        except Exception as exc:  # the parent raises it; this process serves on
            write_message(answers, f"{type(exc).__name__}: {exc}")


if __name__ == "__main__":
    main()
