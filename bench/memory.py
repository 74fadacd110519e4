"""Memory benchmark: LoCoMo replayed through tenant agents, each number next to a baseline
measured in the same run.

LoCoMo (snap-research/locomo, `data/locomo10.json`; CC BY-NC, so it is never committed: pass
its path) has 10 long conversations between two people, 5,882 turns, and 1,536 questions in
categories 1-4 (multi-hop, temporal, open-domain, single-hop) with the turns that hold each
answer. Mapping: one tenant per speaker; each of the speaker's turns is a request (its time is
the session's), the other speaker's next turn the response; its request id is
`<sample>/<dia_id>`, so a recall result citing it covers those two turns. Each question goes
to the tenant of the speaker it names first.

Split: the recall constants (tenant_agent/memory/recall.py) are tuned on conversations 0-4
(`--split dev`) only; conversations 5-9 (`--split held-out`) are what is reported. Each split is
printed apart.

Counted strictly, each agent figure next to BM25 (no stemming) over exactly the same tenant's
raw turns or pairs, given as many turns as the agent is credited with:
- own turn: each of the top 10 results credited with its own turn only (an episode's turn, a
  memory's first source: the tenant's words), against BM25's top 10 turns;
- own pair: each result credited with its turn and the reply returned with it, against BM25's
  top 10 pairs;
- with context: every turn the 10 results cite (an episode's context, a memory's sources),
  against BM25's top N turns, N = those turns, per question;
each as evidence hit@5/@10 (an evidence turn among those credited) and recall@10 (the share of
the question's evidence turns credited), hit@10 by category; with and without the query's
embedding in process, with the host's served;
- context tokens per /ask (the agent's estimate, and all-MiniLM-L6-v2 word pieces);
- agent CPU ms per observed pair on the write path (the agent process's own CPU time over the
  observe calls), and host-side embedding ms per pair apart;
- model calls per pair and per batch, when a model extracts (`--extract-model`);
- answer token-F1 of /ask with a model (`--answer-model`), against the gold answers.

    sudo .venv/bin/python bench/memory.py /tmp/locomo10.json            # served, rules
    sudo .venv/bin/python bench/memory.py /tmp/locomo10.json --embeddings none
    sudo .venv/bin/python bench/memory.py /tmp/locomo10.json --split held-out
    .venv/bin/python bench/memory.py /tmp/locomo10.json --in-process --split dev
    .venv/bin/python bench/memory.py /tmp/locomo10.json --in-process --conversations 1 \\
        --extract-model local/gemma-3-270m --answer-model local/gemma-3-270m --asks 40

Two places the agents run (`Agents` is their interface):
- served (the default; needs root): `ServedAgents`, a real `burrow serve` (bench/serving.py)
  with each tenant made through the HTTP API, its pairs sent as a product would through
  POST /v1/tenants/{id}/observations (request id `<sample>/<dia_id>`, the session's time) and
  learned through the worker, which embeds each pair's words on the host; recall and /ask go
  through the agent route, where the agent asks the host socket to embed the query, so the
  bench embeds nothing and the agent row is "text + host vectors" (`--embeddings none` turns
  the server's embeddings off: text only). /ask is observed like any request, but a bare
  question asked of the agent is kept as no episode, so the probes do not feed later recalls.
  Write-path CPU is every process of the tenant's box (found by the box's uid) while the
  agent takes the pairs. Extraction is the rules only and /ask answers without a model: a
  model's extraction and answers need --in-process.
- `--in-process`: `ProcessAgents`, the in-box program as one real process per tenant on a
  unix socket, with a host socket that serves the model (the bundled llama.cpp models,
  through the gateway's own provider code) and no knowledge base; the bench embeds pairs and
  queries itself, and measures text-only and text + vectors recall side by side, and the
  agent process's own CPU over the observe calls. --utterances and --scale always run so.

Nothing is asserted: the output is the result.
"""

from __future__ import annotations

import argparse
import asyncio
import calendar
import collections
import http.client
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

AGENT = ROOT / "tenant_agent" / "__main__.py"
OBSERVE_BATCH = 200  # pairs per delivery, as the worker sends them
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}
STOPWORDS = frozenset("""a about above after again against all am an and any are as at be because
been before being below between both but by can could did do does doing down during each few for
from further had has have having he her here hers herself him himself his how i if in into is it
its itself me more most my myself no nor not of off on once only or other our ours ourselves out
over own same she should so some such than that the their theirs them themselves then there these
they this those through to too under until up very was we were what when where which while who
whom why will with you your yours yourself yourselves""".split())  # noqa: SIM905


# -- the dataset -----------------------------------------------------------------------------

@dataclass
class Pair:
    request_id: str
    at: float
    user: str
    reply: str
    covers: set[str]  # the dia_ids of the request's and the response's turns


@dataclass
class Question:
    text: str
    answer: str
    category: int
    evidence: set[str]


@dataclass
class Tenant:
    name: str
    split: str = "all"
    pairs: list[Pair] = field(default_factory=list)
    questions: list[Question] = field(default_factory=list)


def _turn_text(turn: dict[str, Any]) -> str:
    text = str(turn.get("text", ""))
    if turn.get("blip_caption"):
        text += f" [shares {turn['blip_caption']}]"
    return text


SPLITS = {"dev": range(0, 5), "held-out": range(5, 10)}  # conversations, by position


def load(path: Path, conversations: int, pairs: int | None = None,
         split: str = "all") -> list[Tenant]:
    """The tenants of the first `conversations` conversations of `split` (the recall
    constants are tuned on "dev", conversations 0-4; "held-out", 5-9, is reported)."""
    data = [sample for n, sample in enumerate(json.loads(path.read_text()))
            if split == "all" or n in SPLITS[split]][:conversations]
    tenants = []
    order = [s["sample_id"] for s in json.loads(path.read_text())]
    for sample in data:
        conv = sample["conversation"]
        speakers = (conv["speaker_a"], conv["speaker_b"])
        part = next((name for name, ns in SPLITS.items()
                     if order.index(sample["sample_id"]) in ns), "all")
        by_speaker = {s: Tenant(f"{sample['sample_id']}-{s.lower()}", part) for s in speakers}
        sessions = sorted((k for k in conv if re.fullmatch(r"session_\d+", k)),
                          key=lambda k: int(k.split("_")[1]))
        for key in sessions:
            at = calendar.timegm(time.strptime(conv[key + "_date_time"],
                                               "%I:%M %p on %d %B, %Y"))  # as UTC
            turns = conv[key]
            for i, turn in enumerate(turns):
                reply = turns[i + 1] if i + 1 < len(turns) and \
                    turns[i + 1]["speaker"] != turn["speaker"] else None
                by_speaker[turn["speaker"]].pairs.append(Pair(
                    f"{sample['sample_id']}/{turn['dia_id']}", at,
                    _turn_text(turn), _turn_text(reply) if reply else "",
                    {turn["dia_id"]} | ({reply["dia_id"]} if reply else set())))
        for qa in sample["qa"]:
            evidence = {e for item in qa.get("evidence") or [] for e in re.split(r"[;,\s]+", item)
                        if e}
            if qa.get("category") not in CATEGORIES or not evidence:
                continue
            text = qa["question"]
            named = [(text.find(s), s) for s in speakers if s in text]
            about = min(named)[1] if named else speakers[0]
            by_speaker[about].questions.append(Question(text, str(qa.get("answer", "")),
                                                        qa["category"], evidence))
        tenants.extend(by_speaker.values())
    if pairs is not None:  # a slice of each conversation, and the questions it answers
        for tenant in tenants:
            tenant.pairs = tenant.pairs[:pairs]
            seen = set().union(*(p.covers for p in tenant.pairs)) if tenant.pairs else set()
            tenant.questions = [q for q in tenant.questions if q.evidence <= seen]
    return tenants


# -- the agents ------------------------------------------------------------------------------

class Agents(Protocol):
    """Where the bench's tenant agents run. ProcessAgents: the in-box program as a real
    process per tenant; ServedAgents: the home boxes of a real `burrow serve`, observing
    through POST /observations and the worker, the rest through the agent route."""

    def start(self, tenant: str) -> None: ...
    def observe(self, tenant: str, pairs: list[dict[str, Any]],
                model: str | None) -> dict[str, Any]: ...
    def extract(self, tenant: str, model: str) -> dict[str, Any]: ...
    def recall(self, tenant: str, query: str, limit: int,
               embedding: list[float] | None) -> list[dict[str, Any]]: ...
    def ask(self, tenant: str, question: str, embedding: list[float] | None,
            model: str | None) -> dict[str, Any]: ...
    def cpu_seconds(self, tenant: str) -> float: ...
    def stop(self, tenant: str) -> None: ...


class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("agent", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.unix_path)
        self.sock = sock


class ProcessAgents:
    """Each tenant's agent: /usr/bin/python3 -I -S tenant_agent/__main__.py, as in a box, on
    a unix socket, its state in a directory of its own."""

    def __init__(self, workdir: Path, host_socket: str | None,
                 env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.host_socket = host_socket
        self.env = env or {}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def _socket(self, tenant: str) -> str:
        return str(self.workdir / tenant / "agent.sock")

    def start(self, tenant: str) -> None:
        home = self.workdir / tenant
        home.mkdir(parents=True, exist_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self._socket(tenant))
        listener.listen(64)
        env = {"BURROW_SERVICE_FD": str(listener.fileno()),
               "BURROW_AGENT_STATE_DIR": str(home / "state"), **self.env}
        if self.host_socket:
            env.update(BURROW_HOST_SOCKET=self.host_socket, BURROW_BOX_TOKEN="bench")
        self.procs[tenant] = subprocess.Popen(
            ["/usr/bin/python3", "-I", "-S", str(AGENT)], pass_fds=[listener.fileno()],
            env=env)
        listener.close()

    def call(self, tenant: str, method: str, path: str, body: object = None,
             headers: dict[str, str] | None = None, timeout: float = 3600) -> Any:
        conn = _UnixHTTP(self._socket(tenant), timeout)
        try:
            conn.request(method, path, json.dumps(body) if body is not None else None,
                         {"content-type": "application/json", **(headers or {})})
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        if response.status != 200:
            raise RuntimeError(f"{method} {path}: {response.status} {data[:300]!r}")
        return json.loads(data)

    def observe(self, tenant: str, pairs: list[dict[str, Any]],
                model: str | None) -> dict[str, Any]:
        headers = {"x-burrow-model": model} if model else {}
        answer: dict[str, Any] = self.call(tenant, "POST", "/_burrow/observe",
                                           {"pairs": pairs}, headers)
        return answer

    def extract(self, tenant: str, model: str) -> dict[str, Any]:
        answer: dict[str, Any] = self.call(tenant, "POST", "/_burrow/extract", {},
                                           {"x-burrow-model": model})
        return answer

    def recall(self, tenant: str, query: str, limit: int,
               embedding: list[float] | None) -> list[dict[str, Any]]:
        body: dict[str, Any] = {"query": query, "limit": limit}
        if embedding is not None:
            body["query_embedding"] = embedding
        results: list[dict[str, Any]] = self.call(tenant, "POST", "/recall", body)["results"]
        return results

    def ask(self, tenant: str, question: str, embedding: list[float] | None,
            model: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {"question": question, "explain": True}
        if embedding is not None:
            body["query_embedding"] = embedding
        answer: dict[str, Any] = self.call(tenant, "POST", "/ask", body,
                                           {"x-burrow-model": model} if model else {})
        return answer

    def cpu_seconds(self, tenant: str) -> float:
        fields = Path(f"/proc/{self.procs[tenant].pid}/stat").read_text().rsplit(")", 1)[1]
        utime, stime = fields.split()[11:13]
        return (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK")

    def stop(self, tenant: str) -> None:
        proc = self.procs.pop(tenant)
        proc.terminate()
        proc.wait(10)


class ServedAgents:
    """Each tenant's agent in its home box of a real `burrow serve` (bench/serving.py), all
    through HTTP: the tenant made with the operator key, its pairs sent through
    POST /v1/tenants/{id}/observations and learned through the worker (which embeds each
    pair's words on the host), recall and ask through the agent route (where the agent asks
    the host socket to embed the query: the bench's own query embedding is not sent)."""

    OPERATOR_KEY = "bench-memory-operator-" + "k" * 24
    UID_BASE = 52_000_000  # apart from the test suites' box uids

    def __init__(self, url: str, held_timeout_s: float = 1800) -> None:
        import httpx

        self.http = httpx.Client(base_url=url, timeout=600,
                                 headers={"Authorization": f"Bearer {self.OPERATOR_KEY}"})
        self.held_timeout_s = held_timeout_s
        self.uids: dict[str, int] = {}
        self.learn_s = 0.0  # from the first pair sent until the agent held the last one

    def _json(self, method: str, path: str, body: object = None) -> Any:
        response = self.http.request(method, path, json=body)
        if response.status_code >= 300:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response.json() if response.content else None

    @staticmethod
    def _box_pids() -> dict[int, int]:
        """pid -> uid of every process that runs as a box's uid."""
        pids = {}
        for entry in os.listdir("/proc"):
            try:
                status = Path(f"/proc/{entry}/status").read_text() if entry.isdigit() else ""
            except OSError:
                continue
            line = next((x for x in status.splitlines() if x.startswith("Uid:")), "")
            uid = int(line.split()[1]) if line else 0
            if ServedAgents.UID_BASE <= uid < ServedAgents.UID_BASE + 1_000_000:
                pids[int(entry)] = uid
        return pids

    def start(self, tenant: str) -> None:
        before = set(self._box_pids().values())
        self._json("POST", "/v1/tenants", {"id": tenant, "policy": {"keep_alive": True}})
        self._json("GET", f"/v1/tenants/{tenant}/agent/profile")  # starts its box
        for _ in range(50):  # its box's processes, by their uid (a uid new since `before`)
            new = set(self._box_pids().values()) - before
            if len(new) == 1:
                self.uids[tenant] = new.pop()
                return
            time.sleep(0.1)

    def observe(self, tenant: str, pairs: list[dict[str, Any]],
                model: str | None) -> dict[str, Any]:
        """The pairs as the product would send them, then wait until the agent holds them
        all (its backlog is empty: the worker trims a batch only once the agent applied it)."""
        began = time.perf_counter()
        sent = [{"request": {"method": "POST", "path": "/chat",
                             "body": json.loads(p["request"]["body"]),
                             "headers": {"x-burrow-user-text": "message"}},
                 "response": {"status": 200, "body": json.loads(p["response"]["body"])},
                 "at": p["at"], "request_id": p["request_id"]} for p in pairs]
        answer: dict[str, Any] = self._json("POST", f"/v1/tenants/{tenant}/observations",
                                            {"pairs": sent})
        if answer["dropped"]:
            raise RuntimeError(f"{tenant}: {answer['dropped']} pairs dropped (backlog full)")
        deadline = time.monotonic() + self.held_timeout_s
        while self._json("GET", f"/v1/tenants/{tenant}")["observations"].get("size", 0):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{tenant}: its agent did not take the pairs in "
                                   f"{self.held_timeout_s:.0f} s")
            time.sleep(0.05)
        self.learn_s += time.perf_counter() - began
        return answer

    def extract(self, tenant: str, model: str) -> dict[str, Any]:
        raise NotImplementedError("served mode extracts by rules; pass --in-process with "
                                  "--extract-model")

    def recall(self, tenant: str, query: str, limit: int,
               embedding: list[float] | None) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = self._json(
            "POST", f"/v1/tenants/{tenant}/agent/recall",
            {"query": query, "limit": limit})["results"]
        return results

    def ask(self, tenant: str, question: str, embedding: list[float] | None,
            model: str | None) -> dict[str, Any]:
        """/ask through the agent route, observed like any request: what a question states
        is learned, but a bare question is not kept as a turn of the tenant's history (when it
        was, the bench's own probes were recalled for the questions after them: hit@10 0.615
        instead of 0.853)."""
        response = self.http.post(f"/v1/tenants/{tenant}/agent/ask",
                                  json={"question": question, "explain": True})
        if response.status_code != 200:
            raise RuntimeError(f"/ask: {response.status_code} {response.text[:300]}")
        answer: dict[str, Any] = response.json()
        return answer

    def cpu_seconds(self, tenant: str) -> float:
        """CPU time of every process in the tenant's box (its agent and the box daemon)."""
        uid = self.uids.get(tenant)
        total = 0.0
        for pid, owner in self._box_pids().items():
            if owner != uid:
                continue
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def stop(self, tenant: str) -> None:
        self._json("DELETE", f"/v1/tenants/{tenant}")

    def close(self) -> None:
        self.http.close()


# -- the host socket the agents call (models only) -------------------------------------------

class BenchHost:
    """The host services socket, as far as the agents need it here: /v1/model/chat through
    the gateway's provider code (so the bundled models get the same schema-constrained JSON
    as in Burrow), /v1/knowledge/search answering nothing. One request at a time, like the
    llama.cpp server behind it."""

    def __init__(self, path: str, local_url: str) -> None:
        from core.settings import Settings
        from models.providers import Providers

        self.path = path
        self.loop = asyncio.new_event_loop()
        self.providers = Providers(Settings(dev=True, local_model_url=local_url,
                                            model_timeout_s=3600))
        self.calls = 0
        self.seconds = 0.0
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(self._serve(), self.loop).result(30)

    async def _serve(self) -> None:
        self.server = await asyncio.start_unix_server(self._answer, self.path)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        from models.chat import ChatRequest
        from models.providers import ProviderError

        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        path = lines[0].split()[1]
        length = next((int(line.split(":", 1)[1]) for line in lines
                       if line.lower().startswith("content-length:")), 0)
        body = json.loads(await reader.readexactly(length) or b"{}")
        status, answer = 200, b"[]"
        if path == "/v1/model/chat":
            started = time.perf_counter()
            try:
                response = await self.providers.chat(ChatRequest.model_validate(body))
                answer = response.model_dump_json().encode()
            except ProviderError as exc:
                status = exc.status
                answer = json.dumps({"error": {"code": "model", "message": str(exc)}}).encode()
            self.calls += 1
            self.seconds += time.perf_counter() - started
        writer.write(f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(answer)}\r\nConnection: close\r\n\r\n".encode()
                     + answer)
        await writer.drain()
        writer.close()

    def close(self) -> None:
        async def stop() -> None:
            self.server.close()
            await self.providers.aclose()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)


# -- baselines and scoring -------------------------------------------------------------------

def words(text: str) -> list[str]:
    return [w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in STOPWORDS]


class BM25:
    """Okapi BM25 (k1 1.2, b 0.75) over raw texts, no stemming: the plain baseline."""

    def __init__(self, docs: list[str]) -> None:
        self.docs = [collections.Counter(words(d)) for d in docs]
        self.lengths = [sum(d.values()) for d in self.docs]
        self.avg = sum(self.lengths) / max(len(self.docs), 1) or 1.0
        self.df = collections.Counter(w for d in self.docs for w in d)

    def top(self, query: str, k: int) -> list[int]:
        n = len(self.docs)
        scores = [0.0] * n
        for w in set(words(query)):
            df = self.df.get(w)
            if not df:
                continue
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            for i, doc in enumerate(self.docs):
                f = doc.get(w)
                if f:
                    scores[i] += idf * f * 2.2 / (f + 1.2 * (0.25 + 0.75 * self.lengths[i] /
                                                             self.avg))
        return sorted(range(n), key=lambda i: -scores[i])[:k]


@dataclass
class Score:
    """Evidence found by one ranking, counted strictly: a ranking is credited only with the
    turns it names, and its baseline gets as many (BM25's top 10 turns for 10 results of one
    turn each; BM25's top N turns for results that cite N turns in all)."""

    hits: dict[int, list[bool]] = field(default_factory=lambda: collections.defaultdict(list))
    recall10: list[float] = field(default_factory=list)
    turns: list[int] = field(default_factory=list)  # the turns credited, per question
    by_category: dict[int, list[bool]] = field(
        default_factory=lambda: collections.defaultdict(list))

    def add(self, covered_at: list[set[str]], q: Question, ranked: bool = True) -> None:
        """`covered_at`: the turns each of the top results is credited with, best first
        (ranked=False: one budget of turns, with no order that hit@5 could read)."""
        for k in (5, 10) if ranked else (10,):
            covered = set().union(*covered_at[:k]) if covered_at[:k] else set()
            self.hits[k].append(bool(covered & q.evidence))
        top = covered_at[:10] if ranked else covered_at
        covered10 = set().union(*top) if top else set()
        self.turns.append(len(covered10))
        self.recall10.append(len(covered10 & q.evidence) / len(q.evidence))
        self.by_category[q.category].append(bool(covered10 & q.evidence))

    def row(self) -> str:
        def mean(xs: list[Any]) -> float:
            return sum(xs) / len(xs) if xs else 0.0
        cats = " ".join(f"{mean(self.by_category[c]):.3f}" for c in CATEGORIES)
        hit5 = f"{mean(self.hits[5]):.3f}" if self.hits[5] else "  -  "
        return (f"{hit5}  {mean(self.hits[10]):.3f}  {mean(self.recall10):.3f}    "
                f"{mean(self.turns):5.1f}   {cats}")


class Cited:
    """What a question's results name, read three ways. A request id `<sample>/<dia_id>` is
    a pair: the tenant's turn (its dia_id) and the other speaker's reply returned with it."""

    def __init__(self, results: list[dict[str, Any]], covers: dict[str, set[str]]) -> None:
        self.results = results[:10]
        self.covers = covers

    def own_turn(self) -> list[set[str]]:
        """Each result's own turn only: an episode's turn, a memory's first source; the
        tenant's words alone (1 turn a result)."""
        return [{ids[0].split("/", 1)[1]} if ids and ids[0] in self.covers else set()
                for ids in (r.get("request_ids") or [] for r in self.results)]

    def own_pair(self) -> list[set[str]]:
        """Each result's own turn and the reply returned with it (2 turns a result)."""
        return [self.covers.get(ids[0], set()) if ids else set()
                for ids in (r.get("request_ids") or [] for r in self.results)]

    def context(self) -> set[str]:
        """Every turn the results cite: own turns, their context, a memory's sources."""
        return set().union(set(), *(self.covers.get(i, set()) for r in self.results
                                    for i in r.get("request_ids") or []))


def token_f1(prediction: str, gold: str) -> float:
    def norm(text: str) -> list[str]:
        text = re.sub(r"\b(a|an|the|and)\b", " ", re.sub(r"[^\w\s]", " ", text.lower()))
        return text.split()
    p, g = norm(prediction), norm(gold)
    common = sum((collections.Counter(p) & collections.Counter(g)).values())
    if not common:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


# -- the run ---------------------------------------------------------------------------------

@dataclass
class Totals:
    pairs: int = 0
    agent_cpu_s: float = 0.0
    embed_s: float = 0.0
    embed_cpu_s: float = 0.0
    model_calls: int = 0
    model_batches: int = 0
    model_operations: collections.Counter[str] = field(default_factory=collections.Counter)
    model_errors: list[str] = field(default_factory=list)
    extract_s: float = 0.0
    asks: int = 0
    context_tokens: list[int] = field(default_factory=list)
    context_pieces: list[int] = field(default_factory=list)
    f1: list[float] = field(default_factory=list)
    f1_by_category: dict[int, list[float]] = field(
        default_factory=lambda: collections.defaultdict(list))
    scores: dict[str, dict[str, Score]] = field(  # split -> ranking -> score
        default_factory=lambda: collections.defaultdict(
            lambda: collections.defaultdict(Score)))


class Embedder:
    def __init__(self) -> None:
        from knowledge.embedder import SentenceTransformerEmbedder

        self.inner = SentenceTransformerEmbedder()
        self.inner.load()

    def embed(self, texts: list[str], totals: Totals | None = None) -> list[list[float]]:
        wall, cpu = time.perf_counter(), time.process_time()
        vectors = self.inner.embed(texts)
        if totals is not None:
            totals.embed_s += time.perf_counter() - wall
            totals.embed_cpu_s += time.process_time() - cpu
        return vectors

    def pieces(self, text: str) -> int:
        from knowledge.embedder import _load

        tokenizer = _load(self.inner.model).model.tokenizer
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def wire_pairs(tenant: Tenant, vectors: dict[str, list[list[float]]]) -> list[dict[str, Any]]:
    out = []
    for i, p in enumerate(tenant.pairs):
        pair: dict[str, Any] = {
            "id": f"{tenant.name}-{i}", "seq": i + 1, "at": p.at, "request_id": p.request_id,
            "request": {"method": "POST", "path": f"/v1/tenants/{tenant.name}/agent/chat",
                        "body": json.dumps({"message": p.user})},
            "response": {"status": 200, "body": json.dumps({"reply": p.reply})}}
        if vectors:
            pair["embedding"] = {"model": "all-MiniLM-L6-v2",
                                 **{k: v[i] for k, v in vectors.items()}}
        out.append(pair)
    return out


def run_tenant(agents: Agents, tenant: Tenant, args: argparse.Namespace, embedder: Embedder,
               totals: Totals) -> None:
    vectors: dict[str, list[list[float]]] = {}
    if args.embeddings == "user":
        vectors["user"] = embedder.embed([p.user for p in tenant.pairs], totals)
    pairs = wire_pairs(tenant, vectors)
    agents.start(tenant.name)
    calls = 0
    try:
        for start in range(0, len(pairs), OBSERVE_BATCH):
            cpu = agents.cpu_seconds(tenant.name)
            agents.observe(tenant.name, pairs[start:start + OBSERVE_BATCH], args.extract_model)
            totals.agent_cpu_s += agents.cpu_seconds(tenant.name) - cpu
            if args.extract_model:
                began = time.perf_counter()
                report = agents.extract(tenant.name, args.extract_model)
                totals.extract_s += time.perf_counter() - began
                totals.model_batches += report["batches"]
                totals.model_operations.update(report["operations"])
                totals.model_errors.extend(report["errors"])
                calls = report["model_calls"]  # the agent's own count of its model calls
        totals.model_calls += calls
        totals.pairs += len(pairs)
        _questions(agents, tenant, args, embedder, totals)
    finally:
        agents.stop(tenant.name)


def _questions(agents: Agents, tenant: Tenant, args: argparse.Namespace, embedder: Embedder,
               totals: Totals) -> None:
    covers = {p.request_id: p.covers for p in tenant.pairs}
    pair_bm25 = BM25([p.user + " " + p.reply for p in tenant.pairs])
    turns = [(text, dia) for p in tenant.pairs for text, dia in _split_turns(p)]
    turn_bm25 = BM25([t for t, _ in turns])
    scores = totals.scores[tenant.split]
    queries = [q.text for q in tenant.questions]
    qvecs = embedder.embed(queries) if args.embeddings != "none" else [None] * len(queries)
    ask_every = max(1, len(tenant.questions) // max(args.asks, 1)) if args.asks else 0
    for i, (q, qvec) in enumerate(zip(tenant.questions, qvecs, strict=True)):
        modes = [(args.agent_label, None)]
        if qvec is not None:
            modes = [("text + vectors", qvec), ("text only", None)]
        ranked_turns = turn_bm25.top(q.text, len(turns))
        cited = [(label, Cited(agents.recall(tenant.name, q.text, 10, vector), covers))
                 for label, vector in modes]
        for label, c in cited:
            scores[f"agent ({label}): own turn"].add(c.own_turn(), q)
        scores["  BM25, raw turns, top 10"].add([{turns[j][1]} for j in ranked_turns[:10]], q)
        for label, c in cited:
            scores[f"agent ({label}): own pair"].add(c.own_pair(), q)
        scores["  BM25, raw pairs, top 10"].add(
            [tenant.pairs[j].covers for j in pair_bm25.top(q.text, 10)], q)
        for label, c in cited:
            context = c.context()
            scores[f"agent ({label}): with context"].add([context], q, ranked=False)
            scores[f"  BM25, raw turns, top N ({label})"].add(
                [{turns[j][1] for j in ranked_turns[:len(context)]}], q, ranked=False)
        if ask_every and i % ask_every == 0:
            answer = agents.ask(tenant.name, q.text, qvec, args.answer_model)
            totals.asks += 1
            totals.context_tokens.append(int(answer["used"]["tokens"]))
            totals.context_pieces.append(embedder.pieces(answer.get("context", "")))
            if args.answer_model and answer.get("model"):
                f1 = token_f1(str(answer["answer"]), q.answer)
                totals.f1.append(f1)
                totals.f1_by_category[q.category].append(f1)


def _split_turns(p: Pair) -> list[tuple[str, str]]:
    """The pair's request turn and response turn, each with its dia_id."""
    dias = sorted(p.covers, key=lambda d: int(d.split(":")[1]) + 1000 * int(d[1:].split(":")[0]))
    out = [(p.user, dias[0])]
    if p.reply and len(dias) > 1:
        out.append((p.reply, dias[1]))
    return out


def report(totals: Totals, tenants: list[Tenant], args: argparse.Namespace,
           host: BenchHost | None) -> None:
    questions = sum(len(t.questions) for t in tenants)
    print(f"\nLoCoMo: {len(tenants)} tenants, {totals.pairs} pairs, {questions} questions "
          f"(categories 1-4); embeddings: {args.embeddings}; extraction: "
          f"{args.extract_model or 'rules only'}")
    for split, scores in sorted(totals.scores.items()):
        asked = [t for t in tenants if t.split == split]
        names = sorted({t.name.split("-")[0] + "-" + t.name.split("-")[1] for t in asked})
        print(f"\n{split} ({', '.join(names)}: {sum(len(t.questions) for t in asked)} "
              f"questions)")
        print(f"  {'evidence':<58} hit@5  hit@10 recall@10 turns  hit@10 by category "
              "(" + ", ".join(CATEGORIES.values()) + ")")
        for name, score in scores.items():
            print(f"  {name:<58} {score.row()}")
    print("\n(own turn: each result credited with its own turn only, the tenant's words; own "
          "pair: with the reply returned with it; with context: every turn the 10 results "
          "cite, against BM25's top N turns, N = those turns, per question; `turns` is the "
          "mean number credited)")
    if totals.context_tokens:
        toks, pieces = totals.context_tokens, totals.context_pieces
        print(f"\n/ask context tokens ({totals.asks} asks): mean {sum(toks) / len(toks):.0f}, "
              f"max {max(toks)} (agent's estimate, budget 800); MiniLM word pieces mean "
              f"{sum(pieces) / len(pieces):.0f}, max {max(pieces)}")
    print(f"\nwrite path: agent CPU {1000 * totals.agent_cpu_s / max(totals.pairs, 1):.3f} ms "
          f"per observed pair (target <= 2 ms)")
    if args.embeddings != "none":
        print(f"host-side embedding (all-MiniLM-L6-v2, bench process): "
              f"{1000 * totals.embed_s / max(totals.pairs, 1):.2f} ms wall, "
              f"{1000 * totals.embed_cpu_s / max(totals.pairs, 1):.2f} ms CPU per pair")
    if args.extract_model:
        print(f"model extraction ({args.extract_model}): {totals.model_calls} calls for "
              f"{totals.pairs} pairs = {totals.model_calls / max(totals.pairs, 1):.3f} calls "
              f"per pair, {totals.model_calls / max(totals.model_batches, 1):.2f} per batch; "
              f"{totals.extract_s:.0f} s, {totals.extract_s / max(totals.model_batches, 1):.0f} "
              f"s per batch")
        ops = ", ".join(f"{k} {n}" for k, n in sorted(totals.model_operations.items()))
        print(f"  the model's operations: {ops or 'none'}; errors: {len(totals.model_errors)}"
              + (f" (first: {totals.model_errors[0]})" if totals.model_errors else ""))
    if totals.f1:
        cats = ", ".join(f"{CATEGORIES[c]} {sum(v) / len(v):.3f}"
                         for c, v in sorted(totals.f1_by_category.items()))
        print(f"answer token-F1 ({args.answer_model}, {len(totals.f1)} asks): "
              f"{sum(totals.f1) / len(totals.f1):.3f} ({cats})")
    if host is not None:
        print(f"host model calls: {host.calls}, {host.seconds:.0f} s")


# The utterances of issue 14, each after what it follows, and what must hold afterwards (in
# words any extractor may use: a model need not phrase memories as the rules do).
_NEG = r"\bnot\b|n't\b|\bdislike|\bavoid|\bhate|\bno longer\b"
UTTERANCES: list[tuple[str, list[str], str, Any]] = [
    ("like, then unlike dark mode", ["I like dark mode"], "I don't like dark mode",
     lambda now, all_: any("dark mode" in t and re.search(_NEG, t) for t in now)
     and not any("dark mode" in t and not re.search(_NEG, t) for t in now)),
    ("now prefer light mode", ["I like dark mode"], "Actually I now prefer light mode",
     lambda now, all_: any("light mode" in t for t in now)
     and not any("dark mode" in t and not re.search(_NEG, t) for t in now)),
    ("answers in French", [], "I'd like answers in French from now on",
     lambda now, all_: any("french" in t for t in now)),
    ("moved Berlin to Paris", ["I live in Berlin"], "I moved from Berlin to Paris",
     lambda now, all_: any("paris" in t for t in now)
     and not any("berlin" in t and "paris" not in t for t in now)),
    ("allergic to peanuts", [], "I'm allergic to peanuts",
     lambda now, all_: any("peanut" in t for t in now)),
    ("forget Berlin", ["I live in Berlin"], "Forget that I live in Berlin",
     lambda now, all_: not any("berlin" in t for t in all_)),
    ("confused is not a role", [], "I'm a bit confused about the invoice",
     lambda now, all_: not now),
    ("Google data scientist", [], "I work at Google as a data scientist",
     lambda now, all_: any("google" in t for t in now) and any("data scientist" in t
                                                                for t in now)),
    ("an email address", [], "My email is a@b.com",
     lambda now, all_: any("a@b.com" in t for t in now)),
    ("a question is no statement", ["I prefer dark mode"], "Do I prefer dark mode?",
     lambda now, all_: len(now) == 1),
]


def utterances(agents: ProcessAgents, model: str | None) -> list[bool]:
    """Each utterance in a fresh agent: the rules' or the model's result, checked."""
    passed = []
    for n, (name, before, text, check) in enumerate(UTTERANCES):
        tenant = f"u{n}"
        agents.start(tenant)
        try:
            for i, said in enumerate([*before, text]):
                pair = {"id": f"{tenant}-{i}", "seq": i + 1, "at": 1.7e9 + 600 * i,
                        "request_id": f"{tenant}-{i}", "request": {
                            "method": "POST", "path": "/chat",
                            "body": json.dumps({"message": said})},
                        "response": {"status": 200, "body": json.dumps({"reply": "OK."})}}
                agents.observe(tenant, [pair], model)
                if model:
                    agents.extract(tenant, model)
            items = agents.call(tenant, "GET", "/memories?status=all&limit=100")["items"]
            now = [m["text"].lower() for m in items if m["current"]]
            ok = bool(check(now, [m["text"].lower() for m in items]))
            passed.append(ok)
            print(f"    {'pass' if ok else 'FAIL'}  {name:<28} now: {'; '.join(now) or '-'}")
        finally:
            agents.stop(tenant)
    return passed


def scale(args: argparse.Namespace, tenants: list[Tenant], agents: ProcessAgents) -> None:
    """Recall latency as one tenant's memory grows: LoCoMo's turns over and over, each with
    a random unit vector (the vector path's cost does not depend on what the vectors mean)."""
    import random

    rng = random.Random(7)
    turns = [p for t in tenants for p in t.pairs]
    queries = [q.text for t in tenants for q in t.questions][:50]
    agents.start("scale")
    try:
        held = 0
        for size in args.scale:
            batch = []
            while held < size:
                p = turns[held % len(turns)]
                vector = [rng.gauss(0, 1) for _ in range(384)]
                batch.append({"id": f"s{held}", "seq": held + 1, "at": p.at + held,
                              "request_id": f"s{held}", "request": {
                                  "method": "POST", "path": "/chat",
                                  "body": json.dumps({"message": p.user})},
                              "response": {"status": 200, "body": json.dumps({"reply": p.reply})},
                              "embedding": {"model": "random", "user": vector}})
                held += 1
                if len(batch) == OBSERVE_BATCH or held == size:
                    agents.observe("scale", batch, None)
                    batch = []
            timings: dict[str, list[float]] = {"text": [], "text + vectors": []}
            for q in queries:
                vector = [rng.gauss(0, 1) for _ in range(384)]
                for name, vec in (("text", None), ("text + vectors", vector)):
                    started = time.perf_counter()
                    agents.recall("scale", q, 10, vec)
                    timings[name].append(1000 * (time.perf_counter() - started))
            print("  " + f"{size:>6} episodes: " + ", ".join(
                f"{name} p50 {sorted(ms)[len(ms) // 2]:.1f} ms, p95 "
                f"{sorted(ms)[int(len(ms) * 0.95)]:.1f} ms" for name, ms in timings.items()))
    finally:
        agents.stop("scale")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path, help="path of LoCoMo's data/locomo10.json")
    parser.add_argument("--split", choices=("all", *SPLITS), default="all",
                        help="dev: conversations 0-4, which the recall constants are tuned on; "
                             "held-out: 5-9, reported; all: both, each reported apart")
    parser.add_argument("--conversations", type=int, default=10,
                        help="only the first N conversations (of the split)")
    parser.add_argument("--embeddings", choices=("none", "user"), default="user",
                        help="whether the host embeds the user's words of each pair (the "
                             "replies' embeddings did not help: measured, not kept)")
    parser.add_argument("--extract-model", help="a model for the extraction pass, e.g. "
                                                "local/gemma-3-270m (default: rules only)")
    parser.add_argument("--answer-model", help="a model that answers /ask, for token-F1")
    parser.add_argument("--asks", type=int, default=20, help="/ask calls per tenant")
    parser.add_argument("--pairs", type=int, help="only the first N pairs of each tenant "
                                                  "(and the questions they answer)")
    parser.add_argument("--utterances", action="store_true",
                        help="only check issue 14's utterances: the rules, and the "
                             "--extract-model alone (rules off)")
    parser.add_argument("--scale", type=int, nargs="*", default=[],
                        help="only measure recall latency at these episode counts")
    parser.add_argument("--in-process", action="store_true",
                        help="run each agent as a plain process on a unix socket (needed for "
                             "--extract-model, --answer-model, --utterances and --scale) "
                             "instead of through `burrow serve`")
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so the agents and the model server are stopped below
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args.agent_label = "text only"
    tenants = load(args.dataset, args.conversations, args.pairs, args.split)
    if args.utterances:
        _utterance_run(args)
        return
    if args.scale:
        workdir = Path(tempfile.mkdtemp(prefix="burrow-memory-bench-"))
        try:
            print("recall latency over the agent's unix socket (query embedding: random):")
            scale(args, tenants, ProcessAgents(workdir, None))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return
    if not args.in_process:
        if args.extract_model or args.answer_model:
            sys.exit("served mode extracts by rules and answers without a model; pass "
                     "--in-process with --extract-model or --answer-model")
        _served_run(args, tenants)
        return
    with BenchModels() as run:
        host = run.start({m for m in (args.extract_model, args.answer_model) if m})
        totals = replay(ProcessAgents(run.workdir, host.path if host else None), tenants, args)
        report(totals, tenants, args, host)


def replay(agents: Agents, tenants: list[Tenant], args: argparse.Namespace) -> Totals:
    """Each tenant's pairs to its agent, then its questions; the totals of it all."""
    embedder = Embedder()
    totals = Totals()
    for n, tenant in enumerate(tenants, 1):
        run_tenant(agents, tenant, args, embedder, totals)
        print(f"  {n}/{len(tenants)} {tenant.name}: {len(tenant.pairs)} pairs, "
              f"{len(tenant.questions)} questions", file=sys.stderr, flush=True)
    return totals


def _served_run(args: argparse.Namespace, tenants: list[Tenant]) -> None:
    """The LoCoMo replay through a real `burrow serve`: its worker embeds each pair's words
    and its agents ask the host to embed each query, so the bench embeds nothing itself."""
    from bench.serving import run_as_root, served

    host_vectors = args.embeddings != "none"
    env = {"BURROW_OBSERVE_EMBEDDINGS": "1" if host_vectors else "0"}
    args.embeddings = "none"  # the bench's own embeddings are not needed here
    args.agent_label = "served, text + host vectors" if host_vectors else "served, text only"

    def body() -> None:
        with served(ServedAgents.OPERATOR_KEY, str(ServedAgents.UID_BASE),
                    "burrow-bench-memory-", env) as server:
            agents = ServedAgents(server.url)
            try:
                totals = replay(agents, tenants, args)
            finally:
                agents.close()
        print("\nmode: through `burrow serve` (POST /observations, the worker, the agent "
              "route); " + ("the worker embeds each pair's words and the agent asks the host "
                            "socket to embed each query (all-MiniLM-L6-v2, on the host; "
                            "`embeddings: none` below is the bench's own)"
                            if host_vectors else "no vectors (BURROW_OBSERVE_EMBEDDINGS=0)"))
        print(f"pairs sent until the agents held them all: {agents.learn_s:.1f} s, "
              f"{1000 * agents.learn_s / max(totals.pairs, 1):.2f} ms per pair (wall)")
        if len(agents.uids) < len(tenants):
            print("note: some boxes' processes were not found; their agent CPU counts 0 (the "
                  "in-process mode, --in-process, measures the write path alone)")
        report(totals, tenants, args, None)
        print("(write-path CPU: every process in the tenant's box, by its uid, over the time "
              "from sending the pairs until the agent held them)")

    run_as_root("bench/memory.py (served)", body)


def _utterance_run(args: argparse.Namespace) -> None:
    with BenchModels() as run:
        print("issue 14's utterances, the rules:")
        rules = utterances(ProcessAgents(run.workdir / "rules", None), None)
        print(f"  rules: {sum(rules)}/{len(rules)}")
        host = run.start({args.extract_model} if args.extract_model else set())
        if host is not None:
            print(f"the model alone ({args.extract_model}, rules off):")
            model = utterances(ProcessAgents(run.workdir / "model", host.path,
                                             {"BURROW_AGENT_RULES": "off"}),
                               args.extract_model)
            print(f"  {args.extract_model}: {sum(model)}/{len(model)}; "
                  f"{host.calls} model calls, {host.seconds:.0f} s")


class BenchModels:
    """A work directory and the bundled models the in-process agents ask (started when
    named), all stopped and removed at the end of the `with`."""

    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="burrow-memory-bench-"))
        self.server: Any = None
        self.host: BenchHost | None = None

    def start(self, models: set[str]) -> BenchHost | None:
        """The host socket serving `models` (provider/name) to the agents; None for none."""
        if not models:
            return None
        from models.servers import LocalModelServer, bundled_models

        aliases = {m.partition("/")[2] for m in models}
        cache = Path(tempfile.gettempdir()) / "burrow-bench-models"
        chosen = [m for m in bundled_models(cache) if m.alias in aliases]
        self.server = LocalModelServer(self.workdir / "llama", n_threads=2, models=chosen)
        url = self.server.start()
        self.host = BenchHost(str(self.workdir / "host.sock"), url)
        return self.host

    def __enter__(self) -> BenchModels:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.host is not None:
            self.host.close()
        if self.server is not None:
            self.server.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
