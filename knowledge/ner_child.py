"""The name-detection process behind `knowledge.ner.ProcessNames` (`knowledge.child`): answers
each text with its list of (start, end) name spans.

    python -m knowledge.ner_child MODEL_PACKAGE
"""

from __future__ import annotations

import sys
from typing import Any

from knowledge.child import serve
from knowledge.ner import PresidioNames


def main() -> None:
    names = PresidioNames(sys.argv[1])

    def find(text: Any) -> list[tuple[int, int]]:
        return names.find(str(text))

    serve(find)


if __name__ == "__main__":
    main()
