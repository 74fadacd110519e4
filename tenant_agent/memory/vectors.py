"""Vector similarity in the box, which has no numpy: the host embeds (the worker attaches
embeddings to the pairs it delivers; a recall may carry its query's), the box stores and
compares.

Measured with /usr/bin/python3 -I -S on 384-d vectors (all-MiniLM-L6-v2): a float16 blob
unpacked and dotted with a float query costs ~10 µs, Python int8 arrays ~25 µs, a big-int
packing trick ~80 µs, and the Hamming distance of two 384-bit sign codes (`(a ^ b).bit_count()`)
~0.07 µs. So:

- each vector is stored once, L2-normalised, as little-endian float16 (768 bytes for 384-d);
- up to EXACT_MAX stored vectors a search scores every one exactly (~6 ms at 600);
- above that, sign codes of the mean-centred vectors (built in memory on first use, one int
  per vector) pick SHORTLIST candidates by Hamming distance (a threshold from the distances'
  histogram, no sort), and only those, with whatever the full-text search found, are scored
  exactly. bench/memory.py --scale prints what a recall costs at 1k to 20k turns.

Invariant: scores are cosine similarities in [-1, 1] of normalised vectors, comparable across
searches; vectors of another model or dimension than the stored ones are never compared.
"""

from __future__ import annotations

import math
import struct
from collections import Counter
from collections.abc import Iterable
from operator import mul

EXACT_MAX = 600
SHORTLIST = 300


def normalised(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


def pack(vector: list[float]) -> bytes:
    """A normalised vector as float16 bytes."""
    return struct.pack(f"<{len(vector)}e", *normalised(vector))


def unpack(blob: bytes) -> tuple[float, ...]:
    return struct.unpack(f"<{len(blob) // 2}e", blob)


def cosine(query: list[float], blob: bytes | None) -> float:
    """Cosine of a normalised query and a stored vector (0.0 when absent or of another size)."""
    if not blob or len(blob) != 2 * len(query):
        return 0.0
    return float(sum(map(mul, query, unpack(blob))))


class SignCodes:
    """Sign codes of mean-centred vectors, kept in memory, for a Hamming-distance sweep."""

    def __init__(self, rows: Iterable[tuple[int, bytes]]) -> None:
        vectors = [(key, unpack(blob)) for key, blob in rows if blob]
        dim = len(vectors[0][1]) if vectors else 0
        self.dim = dim
        self.mean = [0.0] * dim
        if vectors:
            sums = [0.0] * dim
            for _, v in vectors:
                sums = list(map(float.__add__, sums, v))
            self.mean = [s / len(vectors) for s in sums]
        self.codes = {key: self.code(v) for key, v in vectors}

    def code(self, vector: Iterable[float]) -> int:
        bits = 0
        for i, (x, m) in enumerate(zip(vector, self.mean, strict=False)):
            if x > m:
                bits |= 1 << i
        return bits

    def add(self, key: int, blob: bytes) -> None:
        if self.dim and len(blob) == 2 * self.dim:
            self.codes[key] = self.code(unpack(blob))

    def discard(self, key: int) -> None:
        self.codes.pop(key, None)

    def nearest(self, query: list[float], limit: int = SHORTLIST) -> list[int]:
        """About `limit` keys nearest the query (all of those at the cut-off distance)."""
        if not self.codes or len(query) != self.dim:
            return []
        q = self.code(query)
        keys = list(self.codes)
        distances = [(q ^ c).bit_count() for c in self.codes.values()]
        histogram = Counter(distances)
        cut, taken = 0, 0
        for cut in sorted(histogram):
            taken += histogram[cut]
            if taken >= limit:
                break
        return [k for k, d in zip(keys, distances, strict=True) if d <= cut]
