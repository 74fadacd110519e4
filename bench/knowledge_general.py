"""Durable, general knowledge: everyday chit-chat never becomes an insight, while general advice
still does, bench/knowledge_quality.py's newcomer still finds what it taught, and a fact told
in parts (one tenant the symptom, another the cause, another the fix) is found by a newcomer's
question about the symptom. This tree against today's main, measured in the same run.

Printed for "main" (the knowledge base, its reader and the agent's rules and judgement of
episodes at MAIN_COMMIT, loaded from git into packages of their own, with this tree's embedder
and name detector), "before" (the same at the commit `--before` names, if given) and "this
tree":

  chit-chat visible       insights visible to others after CHAT_TENANTS tenants chat about their
                          days (bench/data/knowledge_general.json "chitchat": groups of variants,
                          the first said most), everything proposed as the agent proposes it
                          (its rules, `learn`; where the commit has it, with the host's
                          judgement of episodes attached, as the worker delivers it) and,
                          stricter, every message
                          proposed whole. Must be 0.
  general advice found    advice in the same everyday topics ("general"), each told by 3 of the
                          chatting tenants: share whose question finds it in the top 3
  quality newcomer hit    bench/knowledge_quality.py's newcomer top-3 hit on its cohort (its
                          seed 1 by default; its seed 2 is that bench's held-out seed)
  parts newcomer hit      facts told in parts ("parts": symptom, cause, fix, each in several
                          wordings), each part by one tenant of its own, and by 1-3 tenants; a
                          newcomer's question about the symptom finds, in its top 3, a visible
                          insight that states the fact (every key group has a word in it).
                          Beside it, the share of facts whose keys k-anonymity lets any text
                          state at all (each needs a word K tellers used), and, for diagnosis
                          only, the hit with k = 1 (no word rule: are the parts joined and
                          found?)

    .venv/bin/python bench/knowledge_general.py                # the dev data (tuned on)
    .venv/bin/python bench/knowledge_general.py --explain      # ... and what each gets wrong
    .venv/bin/python bench/knowledge_general.py \\
        --chitchat bench/data/knowledge_chitchat_dev2.json \\
        --parts bench/data/knowledge_parts_dev2.json         # dev data in the held-out form
    .venv/bin/python bench/knowledge_general.py --chitchat bench/data/heldout3/chitchat.json \\
        --parts bench/data/heldout3/facts_in_parts.json      # held out: run once, never explained

The sets in the held-out form (`--chitchat`, `--parts`) are the spent held-out sets
(bench/data/heldout/ and bench/data/heldout2/, dev data now), dev data written in that form
(bench/data/knowledge_{chitchat,parts}_dev2.json) and the held-out sets not yet reported
(bench/data/heldout3/), which are never explained.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import random
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import knowledge_quality as quality  # noqa: E402

MAIN_COMMIT = "4f0e304"  # today's main, as this work is measured against
DEV = ROOT / "bench/data/knowledge_general.json"
HELD_OUT = ROOT / "bench/data/heldout"  # spent (reported once): dev data now
UNSPENT = ROOT / "bench/data/heldout3"  # not yet reported: its scores alone, never its failures
CHAT_TENANTS = 24
CHAT_LINES = 10  # chit-chat messages per tenant
GENERAL_TELLERS = 3
PARTS_TENANTS = 30
PARTS_NOISE = 3  # chit-chat messages per tenant in the parts cohort
ROLES = ("symptom", "cause", "fix")
FRAMED = 0.3  # share of tellings with a framing ("TIL: …", "We found that …")
BATCH = 4
K = 2


# --- the systems -------------------------------------------------------------------------

def modules_at(workdir: Path, commit: str, tag: str) -> tuple[Any, Any, Any, Any]:
    """The knowledge base, its reader, the agent's rules and the agent's judgement of episodes
    at `commit`, as packages `<tag>_knowledge` (all of knowledge/) and `<tag>_agent` (the
    agent's rules), their imports of their own package rewritten."""
    def copy(package: str, side: str, files: list[str]) -> None:
        folder = workdir / package
        folder.mkdir()
        (folder / "__init__.py").write_text("")
        for file in files:
            source = subprocess.run(["git", "-C", str(ROOT), "show",
                                     f"{commit}:{side.replace('.', '/')}/{file}.py"],
                                    check=True, capture_output=True, text=True).stdout
            source = re.sub(rf"\bfrom {re.escape(side)}(\.| import)", rf"from {package}\1",
                            source)
            (folder / f"{file}.py").write_text(source)

    def listed(folder: str) -> list[str]:
        names = subprocess.run(["git", "-C", str(ROOT), "ls-tree", "--name-only", commit,
                                f"{folder}/"], check=True, capture_output=True, text=True).stdout
        return [Path(p).stem for p in names.split() if p.endswith(".py")
                and "__init__" not in p]

    copy(f"{tag}_knowledge", "knowledge", listed("knowledge"))
    agent = listed("tenant_agent/memory")
    copy(f"{tag}_agent", "tenant_agent.memory",
         [f for f in ("learn", "utterance", "refusals", "lexicon", "episodes") if f in agent])
    if str(workdir) not in sys.path:
        sys.path.insert(0, str(workdir))
    learn = importlib.import_module(f"{tag}_agent.learn")
    learn.warm_refusals()
    reading = importlib.import_module(f"{tag}_knowledge.reading") \
        if "reading" in listed("knowledge") else None
    episodes = importlib.import_module(f"{tag}_agent.episodes") if "episodes" in agent else None
    return importlib.import_module(f"{tag}_knowledge.base"), reading, learn, episodes


@dataclass
class System:
    name: str
    build: Callable[[Path, str, int], Any]  # (store path, key prefix, k) -> a knowledge base
    agent: Callable[[str], list[dict[str, str]]]  # what the agent proposes for one message


def _system(name: str, base: Any, reading: Any, learn: Any, episodes: Any, embedder: Any,
            redis: Any, names: Any) -> System:
    """A system of one commit's knowledge base and agent rules: the agent proposes what its
    rules learn, less what the host's reader judges episodic (as the worker attaches it),
    where that commit has both."""
    from core.keys import Keys
    from knowledge.vectors import EdgeVectorStore
    from tenant_agent.memory.utterance import sentences

    reader = reading.SpacyReader(names=names) if reading is not None else None

    def agent(text: str) -> list[dict[str, str]]:
        proposed = [{"kind": k, "text": t} for k, t in learn.learn(text, time.time()).insights]
        if reader is None or episodes is None:
            return proposed
        said = sentences(text)
        pair = {"episodic": [s for s, r in zip(said, reader.read(said), strict=True)
                             if r.episode is not None]}
        return list(episodes.proposable(proposed, [pair]))

    def build(path: Path, prefix: str, k: int) -> Any:
        extra = {"reader": reader} if reader is not None else {}
        return base.KnowledgeBase(EdgeVectorStore(path, 384), embedder, redis, b"s" * 32, k=k,
                                  keys=Keys(prefix), names=names, **extra)

    return System(name, build, agent)


def systems(workdir: Path, embedder: Any, redis: Any, names: Any,
            before: str | None) -> list[System]:
    import knowledge.base
    import knowledge.reading
    from tenant_agent.memory import episodes, learn

    learn.warm_refusals()
    out = [_system("main", *modules_at(workdir, MAIN_COMMIT, "main"), embedder, redis, names)]
    if before:
        out.append(_system("before", *modules_at(workdir, before, "before"), embedder, redis,
                           names))
    out.append(_system("this tree", knowledge.base, knowledge.reading, learn, episodes,
                       embedder, redis, names))
    return out


# --- the data and the cohorts ------------------------------------------------------------

def load(chitchat: Path | None, parts: Path | None) -> dict[str, Any]:
    """The dev data, with the held-out sets in place of its chit-chat and parts when given.
    Their form: chit-chat {"tenants": [{"id", "turns": [message, ...]}]}, each tenant saying
    all its turns (and no advice among them); parts {"facts": [{"id", "symptom", "cause",
    "fix", "newcomer_question", "answer_keywords"}]}, each part told by one tenant of its
    own, a hit when one of the top 3 insights contains every answer keyword, case-insensitive
    (as the set asks to be scored)."""
    data: dict[str, Any] = json.loads(DEV.read_text())
    data["chat_tenants"] = None
    if chitchat is not None:
        tenants = json.loads(chitchat.read_text())["tenants"]
        data["chat_tenants"] = {f"chat-{t['id']}": list(t["turns"]) for t in tenants}
        data["chitchat"] = [[turn] for t in tenants for turn in t["turns"]]
        data["general"] = []
    if parts is not None:
        data["parts"] = [{"id": f["id"], "question": f["newcomer_question"],
                          "keys": [[k.lower()] for k in f["answer_keywords"]],
                          "substring": True, "symptom": [f["symptom"]], "cause": [f["cause"]],
                          "fix": [f["fix"]]} for f in json.loads(parts.read_text())["facts"]]
    return data


def states(text: str, fact: dict[str, Any]) -> bool:
    """Whether `text` states the fact: every key group has a word in it (bench/
    knowledge_quality.py's rule), or, for a held-out fact, every keyword is in it."""
    if fact.get("substring"):
        return all(any(k in text.lower() for k in group) for group in fact["keys"])
    return quality.states(text, fact["keys"])


Cohort = list[tuple[str, list[str]]]  # (tenant, messages) batches in arrival order


def _interleave(rng: random.Random, inbox: dict[str, list[str]]) -> Cohort:
    """Each tenant's messages shuffled and cut into batches, tenants' batches interleaved as
    their traffic would be."""
    queues = {}
    for tenant, messages in inbox.items():
        rng.shuffle(messages)
        queues[tenant] = [messages[i:i + BATCH] for i in range(0, len(messages), BATCH)]
    batches: Cohort = []
    while any(queues.values()):
        for tenant in rng.sample(list(queues), len(queues)):
            if queues[tenant]:
                batches.append((tenant, queues[tenant].pop(0)))
    return batches


def _chat(rng: random.Random, groups: list[list[str]], lines: int) -> list[str]:
    """A tenant's chit-chat: `lines` groups, in each the first variant half the time (so many
    tenants say the same words), else another."""
    said = []
    for group in rng.sample(groups, min(lines, len(groups))):
        said.append(group[0] if rng.random() < 0.5 or len(group) == 1 else rng.choice(group[1:]))
    return said


def _framed(rng: random.Random, text: str) -> str:
    if rng.random() >= FRAMED:
        return text if text.endswith((".", "!", "?")) else text + "."
    return quality._telling(random.Random(rng.random()), text)


def chat_cohort(data: dict[str, Any], seed: int) -> Cohort:
    rng = random.Random(seed)
    if data["chat_tenants"] is not None:  # a held-out set says who said what
        inbox = {t: list(turns) for t, turns in data["chat_tenants"].items()}
        return _interleave(rng, inbox)
    tenants = [f"chat-{i:02d}" for i in range(CHAT_TENANTS)]
    inbox = {t: _chat(rng, data["chitchat"], CHAT_LINES) for t in tenants}
    for fact in data["general"]:
        for tenant in rng.sample(tenants, GENERAL_TELLERS):
            inbox[tenant].append(_framed(rng, rng.choice(fact["phrasings"])))
    return _interleave(rng, inbox)


def parts_cohort(data: dict[str, Any], seed: int, tellers: tuple[int, int]) -> Cohort:
    """Each fact's parts told by `tellers` (least, most) tenants each, no tenant telling two
    parts of one fact; every tenant also chats."""
    rng = random.Random(seed)
    tenants = [f"parts-{i:02d}" for i in range(PARTS_TENANTS)]
    inbox = {t: _chat(rng, data["chitchat"], PARTS_NOISE) for t in tenants}
    for fact in data["parts"]:
        counts = {role: rng.randint(*tellers) for role in ROLES if fact.get(role)}
        chosen = rng.sample(tenants, sum(counts.values()))
        for role, n in counts.items():
            for tenant in chosen[:n]:
                told = rng.choice(fact[role])  # a held-out part goes as it was written
                inbox[tenant].append(told if fact.get("substring") else _framed(rng, told))
            chosen = chosen[n:]
    return _interleave(rng, inbox)


# --- measuring ---------------------------------------------------------------------------

async def fill(kb: Any, cohort: Cohort, propose: Callable[[str], list[dict[str, str]]]) -> None:
    for tenant, messages in cohort:
        await kb.contribute(tenant, [c for m in messages for c in propose(m)], [tenant])


async def visible_texts(kb: Any) -> list[str]:
    shown: list[str] = []
    offset = None
    while True:
        hits, offset = await asyncio.to_thread(kb.store.scroll, 256, offset)
        shown += [str(h.payload.get("text", "")) for h in hits if h.payload.get("visible")
                  or (h.payload.get("visible") is None
                      and int(h.payload.get("support", 0)) >= K)]
        if offset is None:
            return shown


async def found(kb: Any, facts: list[dict[str, Any]]) -> tuple[int, list[str]]:
    """How many facts' questions find, in their top 3, an insight that states the fact; and
    the ids of those that do not."""
    missed = []
    for fact in facts:
        hits = await kb.search(fact["question"], 3)
        if not any(states(h.text, fact) for h in hits):
            missed.append(fact["id"])
    return len(facts) - len(missed), missed


def _tellers(fact: dict[str, Any], cohort: Cohort) -> dict[str, set[str]]:
    """Who told which of the fact's statements (as told, framing included)."""
    told = {t for role in ROLES for t in fact.get(role, [])}
    who: dict[str, set[str]] = {}
    for tenant, messages in cohort:
        for message in messages:
            for statement in told:
                if statement.rstrip(".").lower()[1:] in message.lower():
                    who.setdefault(statement, set()).add(tenant)
    return who


def ceiling(facts: list[dict[str, Any]], cohort: Cohort) -> float:
    """The share of facts whose keys k-anonymity lets any text state: every key group has a
    word (as `states` matches it) that K of the fact's tellers used."""
    def said_by(word: str, told: dict[str, set[str]], substring: bool) -> int:
        pattern = re.escape(word) if substring else rf"(?<![\w-]){re.escape(word)}(?![\w-])"
        return len({t for s, tenants in told.items() if re.search(pattern, s.lower())
                    for t in tenants})

    possible = 0
    for fact in facts:
        told = _tellers(fact, cohort)
        possible += all(any(said_by(w, told, bool(fact.get("substring"))) >= K
                                for w in group) for group in fact["keys"])
    return possible / len(facts)


async def explain_parts(kb: Any, facts: list[dict[str, Any]], cohort: Cohort,
                        missed: list[str], label: str) -> list[str]:
    """For each missed fact: who told what, and the clusters its statements are in."""
    notes = []
    page, _ = await asyncio.to_thread(kb.store.scroll, 10000, None)
    for fact in facts:
        if fact["id"] not in missed:
            continue
        told = _tellers(fact, cohort)
        notes.append(f"parts missed ({label}): {fact['id']}: told {len(told)}x, possible "
                     f"{ceiling([fact], cohort) > 0}")
        mine = {t.rstrip(".") for t in told}
        for hit in page:
            members = hit.payload.get("members", [])
            if any(any(s in m["t"] or m["t"].rstrip(".") in s for s in mine) for m in members):
                notes.append(f"    cluster support {hit.payload.get('support')} visible "
                             f"{hit.payload.get('visible')}: {hit.payload.get('text')!r}")
                notes += [f"      {m.get('r', '?'):7} {m['t']!r}" for m in members[:6]]
    return notes


@dataclass
class Result:
    name: str
    cells: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


async def measure(system: System, data: dict[str, Any], workdir: Path, seed: int,
                  quality_seed: int, explain: bool) -> Result:
    result = Result(system.name)
    slug = system.name.replace(" ", "-")

    def kb_for(what: str, k: int = K) -> Any:
        return system.build(workdir / f"{slug}-{what}", f"{slug}-{what}", k)

    general = data["general"]
    chat = chat_cohort(data, seed)
    for path, propose in (("agent", system.agent),
                          ("whole", lambda m: [{"kind": "fact", "text": m}])):
        kb = kb_for(f"chat-{path}")
        await fill(kb, chat, propose)
        shown = await visible_texts(kb)
        gossip = [t for t in shown if not any(states(t, f) for f in general)]
        result.cells[f"chit-chat visible ({path}) (0)"] = str(len(gossip))
        result.notes += [f"chit-chat shown ({path}): {t!r}" for t in gossip[:8 if explain else 3]]
        if general:
            hits, missed = await found(kb, general)
            result.cells[f"general advice found ({path})"] = f"{hits}/{len(general)}"
            result.notes += [f"general advice missed ({path}): {m}" for m in missed]
        kb.store.close()
    regimes = [("one teller per part", (1, 1), K)]
    if not any(f.get("substring") for f in data["parts"]):  # a held-out set: as it was told
        regimes.append(("1-3 tellers per part", (1, 3), K))
    # Diagnosis only, never a setting: with k = 1 no word needs a second teller, so this shows
    # whether the parts are joined and found where k-anonymity allows no text to state them.
    regimes.append(("one teller per part, k=1 (diagnosis)", (1, 1), 1))
    for label, tellers, k in regimes:
        kb = kb_for(f"parts-{tellers[1]}-k{k}", k)
        await fill(kb, parts_cohort(data, seed, tellers), lambda m: [{"kind": "fact", "text": m}])
        cohort = parts_cohort(data, seed, tellers)
        hits, missed = await found(kb, data["parts"])
        target = " (>= 0.8)" if k == K else ""
        result.cells[f"parts newcomer hit, {label}{target}"] = f"{hits / len(data['parts']):.2f}"
        if k == K:
            result.cells[f"  at most, k-anonymity allowing ({label})"] = \
                f"{ceiling(data['parts'], cohort):.2f}"
        if explain:
            result.notes += await explain_parts(kb, data["parts"], cohort, missed, label)
        kb.store.close()
    kb = kb_for("quality")
    taught = quality.make_cohort(quality_seed)
    scored = await quality.run_system(system.name, kb, taught, quality.raw_candidates,
                                      lambda pl: bool(pl.get("visible", True)) and int(
                                          pl.get("support", 0)) >= K)
    shown = await visible_texts(kb)
    mixed = [t for t in shown if sum(quality.states(t, f["keys"]) for f in quality.DATA["shared"])
             > 1]
    if explain:
        result.notes += [f"quality shown: {t!r}" for t in shown]
        result.notes += [f"quality mixed: {t!r}" for t in mixed]
    kb.store.close()
    result.cells[f"quality newcomer hit, seed {quality_seed} (>= 0.90)"] = \
        f"{scored.hit_rate:.2f}"
    result.cells[f"quality junk share, seed {quality_seed}"] = f"{100 * scored.junk_share:.0f} %"
    result.cells[f"quality insights stating two facts, seed {quality_seed}"] = str(len(mixed))
    result.cells["contribute ms per batch (quality cohort)"] = f"{scored.contribute_ms:.0f}"
    return result


def report(results: list[Result], failures: bool = True) -> None:
    rows = list(results[0].cells)
    print(f"\n{'measure':<60}" + "".join(f"{r.name:>14}" for r in results))
    for row in rows:
        print(f"{row:<60}" + "".join(f"{r.cells.get(row, '-'):>14}" for r in results))
    timing = "contribute ms per batch (quality cohort)"
    if len(results) == 2 and all(timing in r.cells for r in results):
        ratio = float(results[1].cells[timing]) / max(1.0, float(results[0].cells[timing]))
        print(f"{'  this tree / main':<60}{'':>14}{ratio:>14.2f}")
    if not failures:
        print("(a held-out set not yet reported: its scores alone, never what it got wrong)")
        return
    for r in results:
        for note in r.notes:
            print(f"  {r.name}: {note}")


async def main(args: argparse.Namespace) -> None:
    from redis.asyncio import Redis

    from core.embedded_redis import EmbeddedRedis
    from knowledge.embedder import SentenceTransformerEmbedder
    from knowledge.ner import PresidioNames

    unspent = [p for p in (args.chitchat, args.parts)
               if p is not None and UNSPENT in p.resolve().parents]
    if args.explain and unspent:
        raise SystemExit("--explain is for dev data: a held-out set is reported, not read")
    data = load(args.chitchat, args.parts)
    print(f"chit-chat: {len(data['chitchat'])} groups, {CHAT_TENANTS} tenants; general advice: "
          f"{len(data['general'])}; facts in parts: {len(data['parts'])}; main at {MAIN_COMMIT}")
    embedder = SentenceTransformerEmbedder()
    embedder.load()
    names = PresidioNames()
    names.load()
    workdir = Path(tempfile.mkdtemp(prefix="burrow-kg-"))
    server = EmbeddedRedis(workdir / "redis", appendonly=False)
    server.start()
    redis = Redis.from_url(server.url)
    try:
        results = []
        for system in systems(workdir, embedder, redis, names, args.before):
            if args.only and system.name not in args.only:
                continue
            print(f"... {system.name}", flush=True)
            started = time.perf_counter()
            results.append(await measure(system, data, workdir, args.seed, args.quality_seed,
                                         args.explain))
            print(f"    {time.perf_counter() - started:.0f} s", flush=True)
    finally:
        await redis.aclose()
        server.stop()
    report(results, failures=not unspent)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seed", type=int, default=1, help="of the chit-chat and parts cohorts")
    parser.add_argument("--quality-seed", type=int, default=1,
                        help="bench/knowledge_quality.py's cohort (2 is its held-out seed)")
    parser.add_argument("--chitchat", type=Path, help="a held-out chit-chat set")
    parser.add_argument("--parts", type=Path, help="a held-out set of facts told in parts")
    parser.add_argument("--only", nargs="*", help="systems to run: main, before, 'this tree'")
    parser.add_argument("--before", help="a commit of this work to measure beside main and this "
                                         "tree (its 'before')")
    parser.add_argument("--explain", action="store_true",
                        help="every visible chit-chat insight and every missed fact (dev data)")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
