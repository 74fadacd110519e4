"""Vector stores for the shared knowledge base behind one `VectorStore` protocol: Qdrant Edge
in-process on disk (the embedded default) and qdrant-client (a Qdrant server, or its in-memory
and local modes)."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import qdrant_edge as qe

if TYPE_CHECKING:
    from qdrant_client import QdrantClient, models

SUPPORT_FIELD = "support"
VISIBLE_FIELD = "visible"
KIND_FIELD = "kind"
TIME_FIELD = "updated_at"
DEFAULT_COLLECTION = "insights"

Point = tuple[str, list[float], dict[str, Any]]


@dataclass(frozen=True)
class Where:
    """Conditions on payload fields, all of which a hit must meet: the integer `visible` is 1
    (0 for `visible=False`; Qdrant Edge 0.9 matches no boolean payload value), `kind` is one
    of `kinds` (when any are given), and the number `updated_at` lies in [`since`, `until`]
    (each bound when given)."""

    visible: bool | None = None
    kinds: tuple[str, ...] = ()
    since: float | None = None
    until: float | None = None


@dataclass(frozen=True)
class Hit:
    id: str
    score: float
    payload: dict[str, Any]


class VectorStore(Protocol):
    """Points are (UUID string, vector, payload); similarity is cosine. Synchronous: engines
    do blocking I/O and CPU work, so async callers run these in a thread."""

    def upsert(self, points: list[Point]) -> None: ...

    def search(
        self,
        vector: list[float],
        limit: int,
        min_support: int | None = None,
        threshold: float | None = None,
        where: Where | None = None,
    ) -> list[Hit]:
        """Best `limit` hits, best first; only points whose integer payload field `support` is
        at least `min_support`, that meet `where`, and only scores of at least `threshold`,
        when given."""
        ...

    def search_many(
        self,
        vectors: list[list[float]],
        limit: int,
        min_support: int | None = None,
        threshold: float | None = None,
        where: Where | None = None,
    ) -> list[list[Hit]]:
        """`search` for each vector, in one call to the engine; results in vector order."""
        ...

    def get(self, ids: list[str]) -> list[Hit]:
        """Hits (score 0.0) in request order; ids that are not stored are skipped."""
        ...

    def set_payload(self, id: str, payload: dict[str, Any]) -> None:
        """Replace the whole payload of a stored point, keeping its vector; KeyError if absent."""
        ...

    def delete(self, ids: list[str]) -> None: ...

    def scroll(self, limit: int, offset: str | None = None) -> tuple[list[Hit], str | None]:
        """One page in id order and the offset of the next page (None after the last)."""
        ...

    def count(self) -> int: ...

    def optimize(self) -> None:
        """Build or refresh indexes; slow, so call it off the request path."""
        ...

    def close(self) -> None: ...


def _canonical_id(id: str) -> str:
    try:
        return str(uuid.UUID(id))
    except (ValueError, TypeError, AttributeError):
        raise ValueError(f"point id {id!r} is not a UUID string; use str(uuid.uuid4())") from None


def _check_dim(vector: Sequence[float], dim: int) -> None:
    if len(vector) != dim:
        raise ValueError(
            f"vector has {len(vector)} dimensions but this store holds {dim}-d vectors;"
            " the embedder and the store must be configured with the same dimension"
        )


def _in_request_order(ids: list[str], hits: list[Hit]) -> list[Hit]:
    by_id = {hit.id: hit for hit in hits}
    return [by_id[id] for id in ids if id in by_id]


# Run in a child process by `EdgeVectorStore.optimize`; prints whether anything changed.
_OPTIMIZE_SCRIPT = """
import sys
import qdrant_edge

shard = qdrant_edge.EdgeShard.load(sys.argv[1])
changed = shard.optimize()
shard.close()
print(changed)
"""


def _read_through(directory: Path) -> None:
    """Read every file under `directory` once so it sits in the page cache: a freshly built
    HNSW index otherwise answers its first few dozen searches from disk (50 ms instead of 2 ms at
    100k points), right after the swap, on the request path."""
    for file in directory.rglob("*"):
        if file.is_file():
            with file.open("rb", buffering=0) as stream:
                while stream.read(1 << 20):
                    pass


class EdgeVectorStore(VectorStore):
    """A Qdrant Edge shard in the directory `path`, opened by this process alone (its WAL is
    locked). Thread-safe: calls are serialised, which costs nothing because the bindings hold the
    GIL for every call anyway. `optimize` builds the HNSW index in a child process."""

    def __init__(self, path: Path, dim: int) -> None:
        self._path = Path(path)
        self._dim = dim
        # Readers take `_lock`; writers take `_write_lock` first, so `optimize` can hold writers
        # back for the whole index build while readers only wait for the final swap.
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._child: subprocess.Popen[str] | None = None
        staging, retired = self._siblings()
        if retired.is_dir() and not self._path.exists():
            # An optimize stopped between the two renames of its swap; the retired shard is whole.
            retired.rename(self._path)
        config = qe.EdgeConfig(
            vectors=qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine),
        )
        if self._path.is_dir() and any(self._path.iterdir()):
            # Passing the config makes a shard built for another dimension fail to load.
            shard = qe.EdgeShard.load(str(self._path), config)
        else:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            shard = qe.EdgeShard.create(str(self._path), config)
        self._shard: qe.EdgeShard | None = shard
        # Only now that this process holds the shard's WAL lock are leftovers surely stale.
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(retired, ignore_errors=True)
        indexed = shard.info().payload_schema
        # Lets filters pick candidates from an index instead of reading every payload.
        for field, schema in ((SUPPORT_FIELD, qe.PayloadSchemaType.Integer),
                              (VISIBLE_FIELD, qe.PayloadSchemaType.Integer),
                              (KIND_FIELD, qe.PayloadSchemaType.Keyword),
                              (TIME_FIELD, qe.PayloadSchemaType.Float)):
            if field not in indexed:
                shard.update(qe.UpdateOperation.create_field_index(field, schema))

    @property
    def path(self) -> Path:
        return self._path

    def upsert(self, points: list[Point]) -> None:
        if not points:
            return
        edge_points = []
        for id, vector, payload in points:
            _check_dim(vector, self._dim)
            edge_points.append(qe.Point(_canonical_id(id), vector, payload))
        with self._writing() as shard:
            shard.update(qe.UpdateOperation.upsert_points(edge_points))

    def search(
        self,
        vector: list[float],
        limit: int,
        min_support: int | None = None,
        threshold: float | None = None,
        where: Where | None = None,
    ) -> list[Hit]:
        request = self._query(vector, limit, min_support, threshold, where)
        with self._reading() as shard:
            points = shard.query(request)
        return [Hit(str(p.id), p.score, p.payload or {}) for p in points]

    def search_many(
        self,
        vectors: list[list[float]],
        limit: int,
        min_support: int | None = None,
        threshold: float | None = None,
        where: Where | None = None,
    ) -> list[list[Hit]]:
        if not vectors:
            return []
        batch = qe.QueryBatchRequest(
            queries=[self._query(v, limit, min_support, threshold, where) for v in vectors])
        with self._reading() as shard:
            results = shard.query_batch(batch)
        return [[Hit(str(p.id), p.score, p.payload or {}) for p in points] for points in results]

    def _query(self, vector: list[float], limit: int, min_support: int | None,
               threshold: float | None, where: Where | None) -> qe.QueryRequest:
        _check_dim(vector, self._dim)
        must: list[qe.FieldCondition] = []
        if min_support is not None:
            support = qe.RangeFloat(gte=float(min_support))
            must.append(qe.FieldCondition(SUPPORT_FIELD, range=support))
        if where is not None and where.visible is not None:
            must.append(qe.FieldCondition(VISIBLE_FIELD, match=qe.MatchValue(int(where.visible))))
        if where is not None and where.kinds:
            must.append(qe.FieldCondition(KIND_FIELD, match=qe.MatchAny(list(where.kinds))))
        if where is not None and (where.since is not None or where.until is not None):
            span = qe.RangeFloat(gte=where.since, lte=where.until)
            must.append(qe.FieldCondition(TIME_FIELD, range=span))
        query_filter = qe.Filter(must=list(must)) if must else None
        return qe.QueryRequest(
            limit=limit,
            query=qe.Query.Nearest(vector),
            filter=query_filter,
            score_threshold=threshold,
            with_payload=True,
            with_vector=False,
        )

    def get(self, ids: list[str]) -> list[Hit]:
        wanted = list(dict.fromkeys(_canonical_id(id) for id in ids))
        if not wanted:
            return []
        with self._reading() as shard:
            records = shard.retrieve(list(wanted), True, False)
        return _in_request_order(wanted, [Hit(str(r.id), 0.0, r.payload or {}) for r in records])

    def set_payload(self, id: str, payload: dict[str, Any]) -> None:
        point_id = _canonical_id(id)
        with self._writing() as shard:
            # The engine's error for a missing point is a bare Exception; check first so both
            # engines answer with KeyError.
            if not shard.retrieve([point_id], False, False):
                raise KeyError(f"no point {point_id} in the vector store")
            shard.update(qe.UpdateOperation.overwrite_payload([point_id], payload))

    def delete(self, ids: list[str]) -> None:
        point_ids = [_canonical_id(id) for id in ids]
        if not point_ids:
            return
        with self._writing() as shard:
            shard.update(qe.UpdateOperation.delete_points(list(point_ids)))

    def scroll(self, limit: int, offset: str | None = None) -> tuple[list[Hit], str | None]:
        request = qe.ScrollRequest(
            offset=_canonical_id(offset) if offset is not None else None,
            limit=limit,
            with_payload=True,
            with_vector=False,
        )
        with self._reading() as shard:
            records, next_offset = shard.scroll(request)
        hits = [Hit(str(r.id), 0.0, r.payload or {}) for r in records]
        return hits, str(next_offset) if next_offset is not None else None

    def count(self) -> int:
        with self._reading() as shard:
            return shard.count(qe.CountRequest(exact=True))

    def optimize(self) -> None:
        """Build the index on a copy of the shard in a child process, then swap it in.

        The bindings hold the GIL for the whole of `EdgeShard.optimize` (~40 s for 100k 384-d
        points on 2 cores), which would freeze every thread of this process, an event loop
        included. Searches keep using the live shard meanwhile; writes wait for the swap;
        `close` does not wait: it stops the child."""
        staging, retired = self._siblings()
        with self._write_lock:
            shutil.rmtree(staging, ignore_errors=True)
            with self._reading() as shard:
                shard.flush()
            # Reads do not touch the files, and writes are held back, so the copy is consistent.
            shutil.copytree(self._path, staging)
            changed = self._optimize_in_child(staging)
            if changed:
                _read_through(staging)
            with self._lock:
                if not changed or self._shard is None:
                    shutil.rmtree(staging, ignore_errors=True)
                    return
                self._shard.close()
                self._shard = None
                self._path.rename(retired)
                staging.rename(self._path)
                self._shard = qe.EdgeShard.load(str(self._path))
            shutil.rmtree(retired)


    def _optimize_in_child(self, staging: Path) -> bool:
        """Whether the child changed anything; False too when `close` stopped it."""
        with self._lock:
            if self._shard is None:
                return False
            child = subprocess.Popen(
                [sys.executable, "-c", _OPTIMIZE_SCRIPT, str(staging)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            self._child = child
        out, err = child.communicate()
        with self._lock:
            self._child = None
            if not self._is_open():
                return False
        if child.returncode != 0 or out.strip() not in ("True", "False"):
            shutil.rmtree(staging, ignore_errors=True)
            raise RuntimeError(
                f"optimizing the vector store at {self._path} failed in a child process"
                f" (exit {child.returncode}): {err.strip()[-2000:]}"
            )
        return out.strip() == "True"

    def close(self) -> None:
        with self._lock:
            if self._child is not None:
                self._child.kill()
            if self._shard is not None:
                self._shard.close()
                self._shard = None

    def _siblings(self) -> tuple[Path, Path]:
        return (
            self._path.with_name(self._path.name + ".optimizing"),
            self._path.with_name(self._path.name + ".retired"),
        )

    def _is_open(self) -> bool:
        return self._shard is not None

    def _require_open(self) -> qe.EdgeShard:
        if self._shard is None:
            raise RuntimeError(f"the vector store at {self._path} is closed; open a new one")
        return self._shard

    @contextlib.contextmanager
    def _reading(self) -> Iterator[qe.EdgeShard]:
        with self._lock:
            yield self._require_open()

    @contextlib.contextmanager
    def _writing(self) -> Iterator[qe.EdgeShard]:
        with self._write_lock, self._lock:
            yield self._require_open()


class QdrantClientStore(VectorStore):
    """One collection through qdrant-client: a Qdrant server at `url`, its in-memory mode
    (`url=":memory:"`), or its local mode in the directory `path`. Local and in-memory modes
    keep plain Python structures, so their calls are serialised here; a server needs no lock."""

    def __init__(
        self,
        dim: int,
        *,
        url: str | None = None,
        path: Path | None = None,
        collection: str = DEFAULT_COLLECTION,
    ) -> None:
        # qdrant-client takes over a second to import; the embedded default never needs it.
        from qdrant_client import QdrantClient, models

        if (url is None) == (path is None):
            raise ValueError("give the Qdrant store either a server url (or ':memory:') or a path")
        self._models = models
        self._dim = dim
        self._collection = collection
        self._remote = url is not None and url != ":memory:"
        self._lock: contextlib.AbstractContextManager[Any] = (
            contextlib.nullcontext() if self._remote else threading.Lock()
        )
        if url == ":memory:":
            self._client = QdrantClient(location=":memory:")
        elif url is not None:
            self._client = QdrantClient(url=url)
        else:
            self._client = QdrantClient(path=str(path))
        self._ensure_collection(self._client)

    def _ensure_collection(self, client: QdrantClient) -> None:
        models = self._models
        if client.collection_exists(self._collection):
            vectors = client.get_collection(self._collection).config.params.vectors
            size = vectors.size if isinstance(vectors, models.VectorParams) else None
            if size != self._dim:
                raise ValueError(
                    f"Qdrant collection {self._collection!r} holds {size}-d vectors, not"
                    f" {self._dim}-d; use another collection or the matching embedder"
                )
        else:
            params = models.VectorParams(size=self._dim, distance=models.Distance.COSINE)
            try:
                client.create_collection(self._collection, vectors_config=params)
            except Exception:
                # Another process may have created it a moment ago; that is fine.
                if not client.collection_exists(self._collection):
                    raise
        if self._remote:
            # Local modes have no payload indexes and warn when asked for one.
            for field, schema in ((SUPPORT_FIELD, models.PayloadSchemaType.INTEGER),
                                  (VISIBLE_FIELD, models.PayloadSchemaType.INTEGER),
                                  (KIND_FIELD, models.PayloadSchemaType.KEYWORD),
                                  (TIME_FIELD, models.PayloadSchemaType.FLOAT)):
                client.create_payload_index(self._collection, field, schema)

    def upsert(self, points: list[Point]) -> None:
        if not points:
            return
        structs = []
        for id, vector, payload in points:
            _check_dim(vector, self._dim)
            structs.append(
                self._models.PointStruct(id=_canonical_id(id), vector=vector, payload=payload)
            )
        with self._lock:
            self._client.upsert(self._collection, points=structs, wait=True)

    def search(
        self,
        vector: list[float],
        limit: int,
        min_support: int | None = None,
        threshold: float | None = None,
        where: Where | None = None,
    ) -> list[Hit]:
        _check_dim(vector, self._dim)
        with self._lock:
            response = self._client.query_points(
                self._collection,
                query=vector,
                limit=limit,
                query_filter=self._filter(min_support, where),
                score_threshold=threshold,
                with_payload=True,
                with_vectors=False,
            )
        return [Hit(str(p.id), p.score, p.payload or {}) for p in response.points]

    def search_many(
        self,
        vectors: list[list[float]],
        limit: int,
        min_support: int | None = None,
        threshold: float | None = None,
        where: Where | None = None,
    ) -> list[list[Hit]]:
        if not vectors:
            return []
        for vector in vectors:
            _check_dim(vector, self._dim)
        requests = [
            self._models.QueryRequest(query=vector, limit=limit,
                                      filter=self._filter(min_support, where),
                                      score_threshold=threshold, with_payload=True,
                                      with_vector=False)
            for vector in vectors
        ]
        with self._lock:
            responses = self._client.query_batch_points(self._collection, requests=requests)
        return [[Hit(str(p.id), p.score, p.payload or {}) for p in r.points] for r in responses]

    def _filter(self, min_support: int | None, where: Where | None) -> Any:
        models = self._models
        must: list[Any] = []
        if min_support is not None:
            must.append(models.FieldCondition(key=SUPPORT_FIELD,
                                              range=models.Range(gte=min_support)))
        if where is not None and where.visible is not None:
            must.append(models.FieldCondition(key=VISIBLE_FIELD,
                                              match=models.MatchValue(value=int(where.visible))))
        if where is not None and where.kinds:
            must.append(models.FieldCondition(key=KIND_FIELD,
                                              match=models.MatchAny(any=list(where.kinds))))
        if where is not None and (where.since is not None or where.until is not None):
            must.append(models.FieldCondition(
                key=TIME_FIELD, range=models.Range(gte=where.since, lte=where.until)))
        return models.Filter(must=must) if must else None

    def get(self, ids: list[str]) -> list[Hit]:
        wanted = list(dict.fromkeys(_canonical_id(id) for id in ids))
        if not wanted:
            return []
        with self._lock:
            records = self._client.retrieve(
                self._collection, list(wanted), with_payload=True, with_vectors=False
            )
        return _in_request_order(wanted, [Hit(str(r.id), 0.0, r.payload or {}) for r in records])

    def set_payload(self, id: str, payload: dict[str, Any]) -> None:
        point_id = _canonical_id(id)
        with self._lock:
            # A server answers a missing point with a 404 error, local modes with KeyError.
            if not self._client.retrieve(
                self._collection, [point_id], with_payload=False, with_vectors=False
            ):
                raise KeyError(f"no point {point_id} in the vector store")
            self._client.overwrite_payload(
                self._collection, payload=payload, points=[point_id], wait=True
            )

    def delete(self, ids: list[str]) -> None:
        point_ids: list[models.ExtendedPointId] = [_canonical_id(id) for id in ids]
        if not point_ids:
            return
        with self._lock:
            self._client.delete(
                self._collection,
                points_selector=self._models.PointIdsList(points=point_ids),
                wait=True,
            )

    def scroll(self, limit: int, offset: str | None = None) -> tuple[list[Hit], str | None]:
        with self._lock:
            records, next_offset = self._client.scroll(
                self._collection,
                limit=limit,
                offset=_canonical_id(offset) if offset is not None else None,
                with_payload=True,
                with_vectors=False,
            )
        hits = [Hit(str(r.id), 0.0, r.payload or {}) for r in records]
        return hits, str(next_offset) if next_offset is not None else None

    def count(self) -> int:
        with self._lock:
            return self._client.count(self._collection, exact=True).count

    def optimize(self) -> None:
        """A no-op: a server indexes in the background and local modes have no index."""

    def close(self) -> None:
        with self._lock:
            self._client.close()


def open_store(
    url: str | None, path: Path, dim: int, collection: str = DEFAULT_COLLECTION
) -> VectorStore:
    """The store the settings ask for: a Qdrant server (or ":memory:") when `url` is set,
    otherwise Qdrant Edge in `path`."""
    if url:
        return QdrantClientStore(dim, url=url, collection=collection)
    return EdgeVectorStore(path, dim)
