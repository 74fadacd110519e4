"""Persona recall benchmark: facts a tenant says about itself among everyday chit-chat, found
later by questions that share no content word with them, while the knowledge base is full of
other tenants' insights. Served: each run is a real `burrow serve` (bench/serving.py), every
turn goes through the agent route (`POST /v1/tenants/{id}/agent/ask`, so each reply is the
context the agent assembled, other tenants' insights included, as a product that chats
through /ask would see it) and each question through `POST …/agent/recall`, where the agent
asks the host to embed it.

The baseline is another tree of the project (default: main at BASELINE, exported from git
into a temporary directory), served the same way by the same script in the same run; then this
tree. Each run:
1. sets the contribution policy to count every tenant's contributions at once (the default
   policy would hold a new tenant's back for a day);
2. has `others.tenants` other tenants say tips (bench/data/knowledge_facts.json's shared
   facts, each in a tenant's own words), preferences and everyday anecdotes, each said by
   several of them, through POST /observations, and waits until the knowledge base stops
   growing (what is visible: support >= k);
3. has each persona say its turns in order through /ask (its facts among chit-chat, each turn
   with its own X-Request-Id), and waits until its agent holds them all;
4. asks each question through /recall (limit 5).

    recall@5   share of questions whose fact's turn is cited by one of the top 5 results as its
               own: an episode's own turn (not the turns around it it returns as context), or a
               turn a memory came from
    hit@1      the same for the first result alone
    host ms    CPU of the server's process tree (gateway, worker, embedder, parser; not the
               boxes) per persona turn, from the first turn until the agents hold them all
    RSS MB     resident memory of the server's process tree at the end

Printed per run, and split by how the question is phrased (first person, or "the user …").

    sudo .venv/bin/python bench/persona.py                       # the dev set, main and this tree
    sudo .venv/bin/python bench/persona.py --explain             # ... and each miss
    sudo .venv/bin/python bench/persona.py --set bench/data/heldout/persona.json
    sudo .venv/bin/python bench/persona.py --keep /tmp/personas  # keep this tree's agents' files

The dev set (bench/data/persona_dev.json) is the one the recall rules were tuned on; the check
that a question shares no content word with its fact (a 4-letter prefix match, stop words
aside) runs first and names any that do. Nothing is asserted: the output is the result.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BASELINE = "01057a8"  # main before issue 27's recall work
DEV_SET = ROOT / "bench/data/persona_dev.json"
TIPS = ROOT / "bench/data/knowledge_facts.json"
OPERATOR_KEY = "bench-persona-operator-" + "k" * 24
UID_BASE = 13_370_000  # apart from the test suites' and the other benches' box uids
TURNS = 40  # per persona: its facts and chit-chat
SEED = 27
STOP = frozenset("""a about above after again against all am an and any are as at be because
been before being below between both but by can could did do does doing down during each few
for from further had has have having he her here hers herself him himself his how i if in into
is it its itself me more most my myself no nor not of off on once only or other our ours out
over own same she should so some such than that the their theirs them then there these they
this those through to too under until up very was we were what when where which while who whom
why will with you your yours user users us now just also much many one two get got""".split())  # noqa: SIM905


@dataclass
class Persona:
    id: str
    turns: list[tuple[str, str | None]]  # (text, the fact it states or None)
    queries: list[tuple[str, str]]  # (question, fact)


@dataclass
class Others:
    tenants: int
    said: list[list[str]]  # what each other tenant says


def content(text: str) -> set[str]:
    return {w[:4] for w in re.findall(r"[a-z]+", text.lower()) if w not in STOP and len(w) > 2}


def load(path: Path) -> tuple[list[Persona], Others]:
    """The dev set's form (facts, chit-chat to mix them with, other tenants), or the held-out
    set's (each persona's turns in order, probes naming the turn that states their fact; the
    other tenants are then the dev set's)."""
    data = json.loads(path.read_text())
    rng = random.Random(SEED)
    if "chitchat" not in data:
        others = _others(json.loads(DEV_SET.read_text())["others"], rng)
        return [_said_in_order(p) for p in data["personas"]], others
    chitchat = list(data["chitchat"])
    personas = []
    for p in data["personas"]:
        facts = list(p["facts"].items())
        filler = rng.sample(chitchat, min(len(chitchat), TURNS - len(facts)))
        turns: list[tuple[str, str | None]] = [(t, None) for t in filler]
        step = len(turns) // (len(facts) + 1) or 1
        for i, (key, text) in enumerate(facts):  # spread among the chit-chat
            turns.insert((i + 1) * step + i, (text, key))
        personas.append(Persona(p["id"], turns, [(q, f) for q, f in p["queries"]]))
    return personas, _others(data["others"], rng)


def _said_in_order(p: dict[str, Any]) -> Persona:
    facts = {int(probe["fact_turn"]) for probe in p["probes"]}
    turns = [(text, f"turn {n}" if n in facts else None) for n, text in enumerate(p["turns"])]
    return Persona(p["id"], turns, [(probe["question"], f"turn {int(probe['fact_turn'])}")
                                    for probe in p["probes"]])


def _others(spec: dict[str, Any], rng: random.Random) -> Others:
    tips = json.loads(TIPS.read_text())["shared"]
    n = int(spec["tenants"])
    said: list[list[str]] = [[] for _ in range(n)]
    for tip in tips:  # each tip told by three tenants in their own words
        for k, tenant in enumerate(rng.sample(range(n), 3)):
            said[tenant].append(tip["phrasings"][k % len(tip["phrasings"])])
    for text in spec["anecdotes"] + spec["preferences"]:  # each said by a third of them
        for tenant in rng.sample(range(n), max(2, n // 3)):
            said[tenant].append(text)
    for lines in said:
        rng.shuffle(lines)
    return Others(n, said)


def overlaps(personas: list[Persona]) -> list[str]:
    """Questions that share a content word with their fact."""
    out = []
    for p in personas:
        facts = {key: text for text, key in p.turns if key}
        for question, key in p.queries:
            shared = content(question) & content(facts[key])
            if shared:
                out.append(f"{p.id}/{key}: {question!r} shares {sorted(shared)}")
    return out


# -- one served run --------------------------------------------------------------------------

@dataclass
class Result:
    label: str
    hits5: dict[str, list[bool]] = field(default_factory=lambda: {"first": [], "user": []})
    hits1: list[bool] = field(default_factory=list)
    visible: int = 0
    misses: list[str] = field(default_factory=list)
    seconds: float = 0.0
    host_ms: float = 0.0
    rss_mb: float = 0.0

    def row(self) -> str:
        every = self.hits5["first"] + self.hits5["user"]

        def mean(xs: list[bool]) -> float:
            return sum(xs) / len(xs) if xs else 0.0
        return (f"{self.label:<22} {mean(every):.3f}     {mean(self.hits1):.3f}  "
                f"{mean(self.hits5['first']):.3f}         {mean(self.hits5['user']):.3f}      "
                f"{self.visible:>4}   {self.seconds:5.0f}  {self.host_ms:6.1f}  "
                f"{self.rss_mb:6.0f}")


class Client:
    def __init__(self, url: str) -> None:
        import httpx

        self.http = httpx.Client(base_url=url, timeout=600,
                                 headers={"Authorization": f"Bearer {OPERATOR_KEY}"})

    def json(self, method: str, path: str, body: object = None,
             headers: dict[str, str] | None = None) -> Any:
        response = self.http.request(method, path, json=body, headers=headers)
        if response.status_code >= 300:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response.json() if response.content else None

    def tenant(self, tenant: str) -> None:
        self.json("POST", "/v1/tenants", {"id": tenant, "policy": {"keep_alive": True}})
        self.json("GET", f"/v1/tenants/{tenant}/agent/profile")  # starts its box

    def held(self, tenant: str, timeout_s: float = 900) -> None:
        """Until the tenant's agent holds every pair recorded for it."""
        deadline = time.monotonic() + timeout_s
        while self.json("GET", f"/v1/tenants/{tenant}")["observations"].get("size", 0):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{tenant}: its agent did not take its pairs")
            time.sleep(0.1)

    def visible(self) -> int:
        count, offset = 0, None
        while True:
            page = self.json("GET", "/v1/knowledge/insights?limit=200" +
                             (f"&offset={offset}" if offset else ""))
            items = page["items"] if isinstance(page, dict) else page
            count += sum(1 for i in items if i.get("visible", i.get("support", 0) >= 2))
            offset = page.get("next_offset") if isinstance(page, dict) else None
            if not offset:
                return count


def fill_knowledge(client: Client, others: Others) -> int:
    """The other tenants' words, through POST /observations; the visible insights once the
    knowledge base stops growing."""
    for n, lines in enumerate(others.said):
        tenant = f"other-{n}"
        client.tenant(tenant)
        pairs = [{"request": {"method": "POST", "path": "/chat", "body": {"message": text}},
                  "response": {"status": 200, "body": {"reply": "Noted."}},
                  "request_id": f"{tenant}/{i}"} for i, text in enumerate(lines)]
        client.json("POST", f"/v1/tenants/{tenant}/observations", {"pairs": pairs})
    for n in range(others.tenants):
        client.held(f"other-{n}")
    last, stable = -1, 0
    while stable < 4:  # the contribute jobs run after delivery
        time.sleep(1.0)
        now = client.visible()
        stable = stable + 1 if now == last else 0
        last = now
    return last


def say(client: Client, persona: Persona) -> dict[str, str]:
    """The persona's turns through /ask, in order; the request id of each fact's turn."""
    client.tenant(persona.id)
    facts = {}
    for n, (text, key) in enumerate(persona.turns):
        rid = f"{persona.id}.{n}"
        client.json("POST", f"/v1/tenants/{persona.id}/agent/ask", {"question": text},
                    {"x-request-id": rid})
        if key:
            facts[key] = rid
    return facts


def own_ids(result: dict[str, Any]) -> list[str]:
    """What a result says itself: an episode its own turn; a memory the turns it came from."""
    ids = result.get("request_ids") or []
    return ids[:1] if result.get("kind") == "episode" else list(ids)


def ask(client: Client, persona: Persona, facts: dict[str, str], result: Result) -> None:
    for question, key in persona.queries:
        found = client.json("POST", f"/v1/tenants/{persona.id}/agent/recall",
                            {"query": question, "limit": 5})["results"]
        cited = [own_ids(r) for r in found]
        hit = any(facts[key] in ids for ids in cited)
        phrasing = "user" if re.search(r"\bthe user\b", question, re.I) else "first"
        result.hits5[phrasing].append(hit)
        result.hits1.append(bool(cited) and facts[key] in cited[0])
        if not hit:
            top = "; ".join(f"{r['kind']}: {r['text'][:60]!r}" for r in found[:3])
            result.misses.append(f"{persona.id}/{key}: {question!r} -> {top or '(nothing)'}")


def tree_rss_mb(pid: int) -> float:
    """Resident memory of `pid` and everything below it that runs as root (the boxes' own
    processes run as their uids and are not counted)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(stat[1]), []).append(int(entry.name))
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
        except OSError:
            continue
        uid = next((int(x.split()[1]) for x in status.splitlines() if x.startswith("Uid:")), 0)
        rss = next((int(x.split()[1]) for x in status.splitlines() if x.startswith("VmRSS:")), 0)
        if uid == 0:
            total += rss / 1024
        todo.extend(children.get(current, []))
    return total


def keep_files(data_dir: Path, into: Path) -> None:
    """Each agent's memory database (with its WAL), for recall experiments: in its box's
    upper layer, mounted under the runtime directory while the box runs."""
    from boxes import RuntimeConfig

    into.mkdir(parents=True, exist_ok=True)
    for db in RuntimeConfig(data_dir=data_dir).run_dir.rglob("memory.db"):
        target = into / f"{len(list(into.iterdir()))}"
        target.mkdir()
        for part in db.parent.glob("memory.db*"):
            shutil.copy2(part, target / part.name)


@contextmanager
def tree_of(commit: str | None) -> Iterator[Path]:
    """This tree (None), or `commit` exported from git into a temporary directory."""
    if commit is None:
        yield ROOT
        return
    folder = Path(tempfile.mkdtemp(prefix="burrow-persona-tree-"))
    try:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run(label: str, tree: Path, personas: list[Persona], others: Others,
        keep: Path | None) -> Result:
    from bench.serving import served, tree_cpu_s

    result = Result(label)
    began = time.monotonic()
    env = {"PYTHONPATH": str(tree), "BURROW_LOG_FORMAT": "text"}
    with served(OPERATOR_KEY, str(UID_BASE), "burrow-bench-persona-", env) as server:
        client = Client(server.url)
        client.json("PUT", "/v1/policy", {"contribute_min_age_s": 0, "contribute_min_turns": 0})
        result.visible = fill_knowledge(client, others)
        print(f"  {label}: {result.visible} visible insights", file=sys.stderr, flush=True)
        began_cpu = tree_cpu_s(server.pid)
        facts = {p.id: say(client, p) for p in personas}
        for p in personas:
            client.held(p.id)
        turns = sum(len(p.turns) for p in personas)
        result.host_ms = 1000 * (tree_cpu_s(server.pid) - began_cpu) / max(turns, 1)
        result.rss_mb = tree_rss_mb(server.pid)
        for p in personas:
            ask(client, p, facts[p.id], result)
        if keep is not None:
            keep_files(server.data_dir, keep)
        client.http.close()
    result.seconds = time.monotonic() - began
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", type=Path, default=DEV_SET, help="the personas (JSON)")
    parser.add_argument("--baseline", default=BASELINE,
                        help="the commit measured beside this tree (default: main before the "
                             "recall work)")
    parser.add_argument("--only", choices=("baseline", "this"), help="run one tree only")
    parser.add_argument("--explain", action="store_true", help="list every miss")
    parser.add_argument("--keep", type=Path, help="copy this tree's agents' memory files here")
    args = parser.parse_args()
    from bench.serving import run_as_root

    personas, others = load(args.set)
    shared = overlaps(personas)
    if shared:
        print("questions that share a content word with their fact (fix the set):")
        for line in shared:
            print("  " + line)

    def body() -> None:
        results = []
        if args.only != "this":
            with tree_of(args.baseline) as tree:
                results.append(run(f"main ({args.baseline})", tree, personas, others, None))
        if args.only != "baseline":
            results.append(run("this tree", ROOT, personas, others, args.keep))
        queries = sum(len(p.queries) for p in personas)
        turns = sum(len(p.turns) for p in personas)
        print(f"\npersona recall, served ({len(personas)} personas, {queries} questions, "
              f"{turns} turns through /ask; {others.tenants} other tenants)")
        print(f"{'':<22} recall@5  hit@1  recall@5 first  \"the user\"  visible  seconds"
              "  host ms  RSS MB")
        for r in results:
            print(r.row())
        if len(results) == 2 and results[0].host_ms:
            base, this = results
            print(f"this tree / main: host CPU per turn x{this.host_ms / base.host_ms:.2f}, "
                  f"server memory x{this.rss_mb / max(base.rss_mb, 1):.2f}")
        if args.explain:
            for r in results:
                print(f"\nmisses, {r.label}:")
                for line in r.misses:
                    print("  " + line)

    run_as_root("bench/persona.py", body)


if __name__ == "__main__":
    main()
