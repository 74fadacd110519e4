"""The spaCy process behind `knowledge.ner.ProcessNames` and `knowledge.reading.ProcessReader`
(`knowledge.child`): one pipeline in memory for both. Answers a text with its list of (start,
end) name spans, and ("read", [text, ...]) with each text's reading (kind of episode or None,
role, names: `knowledge.reading`).

    python -m knowledge.ner_child MODEL_PACKAGE
"""

from __future__ import annotations

import sys
from typing import Any

from knowledge.child import serve
from knowledge.ner import PresidioNames
from knowledge.reading import SpacyReader


def main() -> None:
    names = PresidioNames(sys.argv[1])
    reader = SpacyReader(names=names)

    def answer(message: Any) -> Any:
        if isinstance(message, tuple) and message[:1] == ("read",):
            return [(r.episode, r.role, r.names)
                    for r in reader.read([str(t) for t in message[1]])]
        return names.find(str(message))

    serve(answer)


if __name__ == "__main__":
    main()
