"""Congruence suite for the knowledge base's vector stores: every case runs against Qdrant Edge
(on disk) and qdrant-client's in-memory mode (standing in for the server API), and answers are
checked against exact cosine similarity computed with numpy. Plus one test of the embedder."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from knowledge.embedder import SentenceTransformerEmbedder
from knowledge.vectors import EdgeVectorStore, Hit, QdrantClientStore, VectorStore, Where

DIM = 16
SCORE_TOLERANCE = 1e-5


@dataclass
class Engine:
    name: str
    open: Callable[[], VectorStore]
    persistent: bool


@dataclass
class Corpus:
    ids: list[str]
    vectors: np.ndarray
    payloads: list[dict[str, Any]]

    def points(self) -> list[tuple[str, list[float], dict[str, Any]]]:
        return list(zip(self.ids, self.vectors.tolist(), self.payloads, strict=True))

    def exact(
        self, query: np.ndarray, limit: int, keep: Callable[[int], bool] = lambda i: True
    ) -> list[tuple[str, float]]:
        """The true top `limit` (id, cosine) pairs among points `keep` accepts."""
        unit = self.vectors / np.linalg.norm(self.vectors, axis=1, keepdims=True)
        scores = unit @ (query / np.linalg.norm(query))
        order = [int(i) for i in np.argsort(-scores) if keep(int(i))]
        return [(self.ids[i], float(scores[i])) for i in order[:limit]]


def make_corpus(n: int, seed: int = 7) -> Corpus:
    rng = np.random.default_rng(seed)
    ids = [str(uuid.UUID(int=int(rng.integers(0, 2**62)) << 64 | i)) for i in range(n)]
    vectors = rng.normal(size=(n, DIM)).astype(np.float32)
    payloads: list[dict[str, Any]] = [
        {
            "text": f"insight {i}",
            "support": int(rng.integers(1, 6)),
            "contributors": [f"t{i % 3}", f"t{i % 5}"],
            "meta": {"kind": "fact", "weight": 0.5, "note": None},
        }
        for i in range(n)
    ]
    return Corpus(ids, vectors, payloads)


def open_engine(name: str, tmp_path: Path) -> Engine:
    if name == "edge":
        return Engine(name, lambda: EdgeVectorStore(tmp_path / "edge", DIM), persistent=True)
    return Engine(name, lambda: QdrantClientStore(DIM, url=":memory:"), persistent=False)


@pytest.fixture(params=["edge", "client-memory"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Engine:
    return open_engine(request.param, tmp_path)


@pytest.fixture
def store(engine: Engine) -> Iterator[VectorStore]:
    opened = engine.open()
    yield opened
    opened.close()


@pytest.fixture
def corpus() -> Corpus:
    return make_corpus(300)


def assert_matches(hits: list[Hit], expected: list[tuple[str, float]]) -> None:
    assert [hit.id for hit in hits] == [id for id, _ in expected]
    for hit, (_, score) in zip(hits, expected, strict=True):
        assert hit.score == pytest.approx(score, abs=SCORE_TOLERANCE)


def queries(n: int, seed: int = 11) -> list[np.ndarray]:
    # Not normalised on purpose: the stores must score cosine for any query length.
    rng = np.random.default_rng(seed)
    return [rng.normal(size=DIM).astype(np.float32) * 3 for _ in range(n)]


def test_search_returns_exact_cosine_order_and_scores(store: VectorStore, corpus: Corpus) -> None:
    store.upsert(corpus.points())
    for query in queries(20):
        hits = store.search(query.tolist(), 10)
        assert_matches(hits, corpus.exact(query, 10))
        assert hits[0].payload == corpus.payloads[corpus.ids.index(hits[0].id)]


def test_search_agrees_between_edge_and_qdrant_client(tmp_path: Path, corpus: Corpus) -> None:
    stores = [open_engine(name, tmp_path).open() for name in ("edge", "client-memory")]
    try:
        for opened in stores:
            opened.upsert(corpus.points())
        for query in queries(20, seed=5):
            edge, client = (s.search(query.tolist(), 15, min_support=2) for s in stores)
            assert [h.id for h in edge] == [h.id for h in client]
            assert [h.payload for h in edge] == [h.payload for h in client]
            assert [h.score for h in edge] == pytest.approx([h.score for h in client], abs=1e-5)
    finally:
        for opened in stores:
            opened.close()


def test_min_support_filter_keeps_only_supported_points(store: VectorStore, corpus: Corpus) -> None:
    store.upsert(corpus.points())
    for min_support in (1, 3, 5, 6):
        for query in queries(5):
            hits = store.search(query.tolist(), 20, min_support=min_support)
            assert all(hit.payload["support"] >= min_support for hit in hits)
            supported = {i for i, p in enumerate(corpus.payloads) if p["support"] >= min_support}
            assert_matches(hits, corpus.exact(query, 20, keep=supported.__contains__))


def test_threshold_drops_hits_scoring_below_it(store: VectorStore, corpus: Corpus) -> None:
    store.upsert(corpus.points())
    query = queries(1)[0]
    ranked = corpus.exact(query, 50)
    # Halfway between two neighbours, so float rounding cannot decide the boundary.
    threshold = (ranked[9][1] + ranked[10][1]) / 2
    assert_matches(store.search(query.tolist(), 50, threshold=threshold), ranked[:10])
    assert store.search(query.tolist(), 50, threshold=1.01) == []
    both = store.search(query.tolist(), 50, min_support=3, threshold=threshold)
    assert [h.id for h in both] == [
        id for id, _ in ranked[:10] if corpus.payloads[corpus.ids.index(id)]["support"] >= 3
    ]


def test_where_keeps_visible_kinds_and_times_as_exact_filtering_does(store: VectorStore) -> None:
    corpus = make_corpus(300, seed=9)
    rng = np.random.default_rng(4)
    for payload in corpus.payloads:
        payload.update(visible=int(rng.integers(0, 2)),
                       kind=str(rng.choice(["fact", "tip", "preference"])),
                       updated_at=float(rng.integers(1_000, 2_000)))
    store.upsert(corpus.points())
    conditions = [Where(visible=True), Where(kinds=("tip",)), Where(kinds=("fact", "tip")),
                  Where(since=1_500.0), Where(until=1_200.0), Where(since=1_100, until=1_900),
                  Where(visible=False, kinds=("preference",), since=1_300.0)]
    for where in conditions:
        def keep(i: int, where: Where = where) -> bool:
            p = corpus.payloads[i]
            return ((where.visible is None or p["visible"] == where.visible)
                    and (not where.kinds or p["kind"] in where.kinds)
                    and (where.since is None or p["updated_at"] >= where.since)
                    and (where.until is None or p["updated_at"] <= where.until)
                    and p["support"] >= 2)
        for query in queries(4, seed=8):
            hits = store.search(query.tolist(), 12, min_support=2, where=where)
            assert_matches(hits, corpus.exact(query, 12, keep=keep))
            [many] = store.search_many([query.tolist()], 12, min_support=2, where=where)
            assert [h.id for h in many] == [h.id for h in hits]


def test_search_many_answers_each_vector_as_search_does(store: VectorStore,
                                                         corpus: Corpus) -> None:
    store.upsert(corpus.points())
    vectors = [q.tolist() for q in queries(12, seed=3)]
    for min_support, threshold in ((None, None), (3, None), (None, 0.05), (2, 0.0)):
        many = store.search_many(vectors, 7, min_support=min_support, threshold=threshold)
        one_by_one = [store.search(v, 7, min_support=min_support, threshold=threshold)
                      for v in vectors]
        assert [[h.id for h in hits] for hits in many] == \
            [[h.id for h in hits] for hits in one_by_one]
        assert [[h.payload for h in hits] for hits in many] == \
            [[h.payload for h in hits] for hits in one_by_one]
    assert store.search_many([], 5) == []
    with pytest.raises(ValueError):
        store.search_many([vectors[0], [0.0] * (DIM + 1)], 5)


def test_get_returns_payloads_in_request_order_and_skips_missing_ids(
    store: VectorStore, corpus: Corpus
) -> None:
    store.upsert(corpus.points())
    missing = str(uuid.uuid4())
    wanted = [corpus.ids[5], missing, corpus.ids[2], corpus.ids[5].upper()]
    hits = store.get(wanted)
    assert [h.id for h in hits] == [corpus.ids[5], corpus.ids[2]]
    assert [h.payload for h in hits] == [corpus.payloads[5], corpus.payloads[2]]
    assert {h.score for h in hits} == {0.0}
    assert store.get([]) == []
    assert store.get([missing]) == []


def test_set_payload_replaces_the_payload_and_keeps_the_vector(
    store: VectorStore, corpus: Corpus
) -> None:
    store.upsert(corpus.points())
    target = corpus.ids[42]
    store.set_payload(target, {"text": "merged", "support": 9})
    [hit] = store.get([target])
    assert hit.payload == {"text": "merged", "support": 9}
    [best] = store.search(corpus.vectors[42].tolist(), 1, min_support=9)
    assert best.id == target
    assert best.score == pytest.approx(1.0, abs=SCORE_TOLERANCE)
    with pytest.raises(KeyError):
        store.set_payload(str(uuid.uuid4()), {"support": 1})


def test_delete_removes_points_from_search_get_and_count(
    store: VectorStore, corpus: Corpus
) -> None:
    store.upsert(corpus.points())
    gone = set(corpus.ids[:100])
    store.delete([*sorted(gone), str(uuid.uuid4())])
    store.delete([])
    assert store.count() == 200
    assert store.get(sorted(gone)) == []
    query = queries(1)[0]
    assert_matches(
        store.search(query.tolist(), 10), corpus.exact(query, 10, keep=lambda i: i >= 100)
    )


def test_scroll_pages_cover_every_point_exactly_once_in_a_stable_order(
    store: VectorStore, corpus: Corpus
) -> None:
    store.upsert(corpus.points())

    def walk(page_size: int) -> list[Hit]:
        seen: list[Hit] = []
        offset: str | None = None
        while True:
            page, offset = store.scroll(page_size, offset)
            assert len(page) <= page_size
            seen.extend(page)
            if offset is None:
                return seen

    first = walk(7)
    assert sorted(h.id for h in first) == sorted(corpus.ids)
    assert [h.id for h in walk(7)] == [h.id for h in first]
    assert [h.id for h in walk(300)] == [h.id for h in first]
    by_id = dict(zip(corpus.ids, corpus.payloads, strict=True))
    assert all(h.payload == by_id[h.id] for h in first)


def test_count_follows_upserts_overwrites_and_deletes(store: VectorStore, corpus: Corpus) -> None:
    assert store.count() == 0
    store.upsert([])
    store.upsert(corpus.points()[:120])
    assert store.count() == 120
    store.upsert(corpus.points()[100:])  # 20 overwrites, 180 new
    assert store.count() == 300
    store.delete(corpus.ids[:10])
    assert store.count() == 290


def test_bad_ids_and_dimensions_are_refused_with_a_clear_error(store: VectorStore) -> None:
    with pytest.raises(ValueError, match="not a UUID"):
        store.upsert([("insight-1", [0.1] * DIM, {})])
    with pytest.raises(ValueError, match="dimensions"):
        store.upsert([(str(uuid.uuid4()), [0.1] * (DIM + 1), {})])
    with pytest.raises(ValueError, match="dimensions"):
        store.search([0.1] * (DIM - 1), 3)
    assert store.count() == 0


def test_reopen_keeps_points_payloads_and_filtering(tmp_path: Path, corpus: Corpus) -> None:
    # Qdrant Edge only: an in-memory qdrant-client store is gone once closed.
    engine = open_engine("edge", tmp_path)
    first = engine.open()
    first.upsert(corpus.points())
    first.set_payload(corpus.ids[0], {"support": 7})
    first.close()
    with pytest.raises(RuntimeError, match="closed"):
        first.count()
    again = engine.open()
    try:
        assert again.count() == 300
        assert again.get([corpus.ids[0]])[0].payload == {"support": 7}
        query = queries(1)[0]
        assert_matches(
            again.search(query.tolist(), 10, min_support=4),
            corpus.exact(query, 10, keep=lambda i: i > 0 and corpus.payloads[i]["support"] >= 4),
        )
    finally:
        again.close()


def test_edge_store_refuses_a_shard_of_another_dimension(tmp_path: Path) -> None:
    EdgeVectorStore(tmp_path / "edge", DIM).close()
    with pytest.raises(Exception, match="vector size"):
        EdgeVectorStore(tmp_path / "edge", DIM * 2)


def test_optimize_keeps_results_and_the_store_writable(engine: Engine, store: VectorStore) -> None:
    # Deleting 40% of 1500 points makes Edge's vacuum optimizer rebuild the segment, so the
    # whole build-and-swap path runs, not just a check that there is nothing to do.
    corpus = make_corpus(1500, seed=3)
    store.upsert(corpus.points())
    store.delete(corpus.ids[:600])
    query = queries(1)[0]
    before = store.search(query.tolist(), 10, min_support=2)
    store.optimize()
    assert store.count() == 900
    after = store.search(query.tolist(), 10, min_support=2)
    assert_matches(after, [(h.id, h.score) for h in before])
    store.upsert([(corpus.ids[0], corpus.vectors[0].tolist(), {"support": 5})])
    assert store.count() == 901
    store.optimize()  # nothing left to do
    assert store.get([corpus.ids[0]])[0].payload == {"support": 5}
    if engine.persistent:
        store.close()
        reopened = engine.open()
        try:
            assert reopened.count() == 901
        finally:
            reopened.close()


def child_pids() -> set[int]:
    pids: set[int] = set()
    for children in Path("/proc/self/task").glob("*/children"):
        try:
            pids.update(int(pid) for pid in children.read_text().split())
        except FileNotFoundError:  # that thread ended between the listing and the read
            continue
    return pids


def test_close_during_optimize_leaves_a_shard_that_reopens_whole(tmp_path: Path) -> None:
    corpus = make_corpus(1500, seed=4)
    store = EdgeVectorStore(tmp_path / "edge", DIM)
    store.upsert(corpus.points())
    store.delete(corpus.ids[:600])
    outcome: list[BaseException | None] = []
    others = child_pids()  # e.g. a session-wide redis-server

    def optimize() -> None:
        try:
            store.optimize()
            outcome.append(None)
        except RuntimeError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=optimize)
    worker.start()
    # Close while the index build runs in its child process, so closing has to stop it.
    deadline = time.monotonic() + 10
    while child_pids() <= others and worker.is_alive() and time.monotonic() < deadline:
        time.sleep(0.005)
    assert child_pids() - others
    store.close()
    worker.join(timeout=60)
    assert outcome == [None]
    assert child_pids() <= others
    reopened = EdgeVectorStore(tmp_path / "edge", DIM)
    try:
        assert reopened.count() == 900
        assert sorted(p.name for p in tmp_path.iterdir()) == ["edge"]
    finally:
        reopened.close()


def test_threads_can_search_and_write_while_optimize_runs(
    store: VectorStore, corpus: Corpus
) -> None:
    store.upsert(corpus.points())
    extra = make_corpus(200, seed=99)
    errors: list[BaseException] = []

    def guarded(work: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                work()
            except BaseException as exc:
                errors.append(exc)

        return run

    def search() -> None:
        for query in queries(30, seed=1):
            hits = store.search(query.tolist(), 5)
            assert len(hits) == 5 and hits[0].score >= hits[-1].score

    def write() -> None:
        for i in range(0, 200, 20):
            store.upsert(extra.points()[i : i + 20])

    threads = [threading.Thread(target=guarded(w)) for w in (search, search, write, store.optimize)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert store.count() == 500


def test_embedder_is_offline_and_semantic(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object) -> None:
        raise OSError("this test runs offline")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    embedder = SentenceTransformerEmbedder()
    assert embedder.dim == 384
    vectors = np.array(
        embedder.embed(
            [
                "How do I reset my password?",
                "What are the steps to change a forgotten password?",
                "The recipe needs two cups of flour and an egg.",
            ]
        )
    )
    assert vectors.shape == (3, 384)
    assert np.linalg.norm(vectors, axis=1) == pytest.approx([1.0, 1.0, 1.0], abs=1e-5)
    paraphrase, unrelated = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
    assert paraphrase > unrelated + 0.3
    assert embedder.embed([]) == []


@pytest.mark.model_children
def test_the_process_embedder_matches_the_in_process_one_and_outlives_its_child() -> None:
    from knowledge.embedder import ProcessEmbedder

    texts = ["Postgres restarts cleanly after a config reload.", "I prefer dark mode."]
    embedder = ProcessEmbedder()
    vectors = embedder.embed(texts)
    assert np.allclose(vectors, SentenceTransformerEmbedder().embed(texts), atol=1e-5)
    assert embedder.dim == 384
    child = embedder.child.proc
    assert child is not None and ProcessEmbedder().child.proc is child  # one per process
    child.kill()  # a crashed child: the next call starts another
    child.wait()
    assert np.allclose(embedder.embed(texts), vectors, atol=1e-5)
    assert embedder.child.proc is not child
