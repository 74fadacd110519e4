"""The layer index kept beside a box's disk (`layer.index` in its box directory): what the last
pack or restore saw of each file of the box's layer (boxes/snapshots.py's LayerIndex), so that
the next freeze packs only what changed.

It is written whole (a temp file, then a rename). A missing or unreadable index only makes the
next pack read every file: losing one is never wrong, only slower. An index is dropped with
the layer it describes (an archive, a failed restore).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from boxes.config import RuntimeConfig
from boxes.snapshots import LayerIndex


class LayerIndexes:
    def __init__(self, config: RuntimeConfig) -> None:
        self.config = config

    def path(self, box_id: str) -> Path:
        return self.config.box_dir(box_id) / "layer.index"

    def load(self, box_id: str) -> LayerIndex | None:
        try:
            data: LayerIndex = json.loads(self.path(box_id).read_bytes())
            return data
        except (OSError, ValueError):
            return None

    def save(self, box_id: str, index: LayerIndex) -> None:
        path = self.path(box_id)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(index, separators=(",", ":")))
        os.replace(tmp, path)

    def drop(self, box_id: str) -> None:
        self.path(box_id).unlink(missing_ok=True)
