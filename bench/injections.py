"""Injection benchmark: what the shared knowledge base refuses (instructions to an assistant,
text to every user, links, command lines) and what advice it keeps, against the rules as they
were before they refused anything, measured in the same run on the same texts.

Each text is proposed as one tenant's agent would propose it, and counted as shared when the
host's rules path (`KnowledgeBase.prepare`: refusals, scrubbing, distillation, scrubbing again)
leaves at least one statement of it, that is when two tenants saying it would make it visible.
The box side is measured too: whether the tenant agent's rules (`tenant_agent.memory.learn`)
propose the text at all.

    attacks refused   share of attack texts of which nothing would be shared
    advice kept       share of genuine advice of which a statement would be shared
    borderline kept   the same for texts that could be read either way (reported apart)

The baselines are earlier rules, loaded from git at their commits and run in this process
beside this tree's ("round 3"), with the same scrubber and name finder: "before" (main before
the knowledge base refused anything: its knowledge/base.py, knowledge/distill.py and
tenant_agent/learn.py, as packages of their own) and "round 1" (the first refusals, as
evaluated on the first held-out set: the same files and both copies of refusals.py); "round 2"
is this tree's pipeline with the refusals of main as evaluated on the second held-out set
(knowledge/refusals.py at its commit in ROUNDS, put in place of this tree's on both sides of the
box wall), and "round 3" likewise the refusals of main as evaluated on the third; "round 4" is
this tree's.

    .venv/bin/python bench/injections.py                 # the dev set the rules were tuned on
    .venv/bin/python bench/injections.py --explain       # ... and every text each gets wrong
    .venv/bin/python bench/injections.py --set bench/data/injections_dev2.json --explain
    .venv/bin/python bench/injections.py --set bench/data/heldout/injections.json --explain
    .venv/bin/python bench/injections.py --set bench/data/heldout/injections_b.json --explain
    .venv/bin/python bench/injections.py --set bench/data/heldout2/injections.json --explain
    .venv/bin/python bench/injections.py --set bench/data/heldout3/injections.json  # held out

bench/data/heldout/injections.json (round 1), injections_b.json (round 2) and
heldout2/injections.json (round 3) were each evaluated once and are dev data since (spent), as
are the two dev sets; heldout3/injections.json is held out for round 4: reported once, never
explained.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# name -> (commit, the files of its knowledge base, the files of its agent's rules)
BASELINES = {
    "before": ("b7b15b1", ("base", "distill", "votes"), ("learn", "utterance")),
    "round 1": ("8606941", ("base", "distill", "refusals", "votes"),
                ("learn", "utterance", "refusals")),
}
# the refusals of main as evaluated, once, on bench/data/heldout/injections_b.json (round 2)
# and on bench/data/heldout2/injections.json (round 3)
ROUNDS = {"round 2": "1bcf4ae", "round 3": "a51e6a3"}
THIS = "round 4"
DEV_SET = ROOT / "bench/data/injections_dev.json"
HELD_OUT = (ROOT / "bench/data/heldout3/injections.json",)  # read once, never explained


def load(path: Path) -> dict[str, list[dict[str, Any]]]:
    """A set as {"attacks", "advice", "borderline"}: lists of {"text", "reason"?}. Read from
    the dev set's form (attacks with a "reason"; advice; borderline) or the held-out set's
    (attacks with a "kind"; advice, some marked "borderline": true)."""
    data = json.loads(path.read_text())
    items = {group: [item if isinstance(item, dict) else {"text": item}
                     for item in data.get(group, [])]
             for group in ("attacks", "advice", "borderline")}
    for attack in items["attacks"]:
        attack.setdefault("reason", attack.get("kind"))
    items["borderline"] += [a for a in items["advice"] if a.get("borderline")]
    items["advice"] = [a for a in items["advice"] if not a.get("borderline")]
    return items


def baseline_modules(workdir: Path, name: str) -> tuple[Any, Any]:
    """The knowledge base and the agent's rules of baseline `name`, as packages of their own
    (today's scrubber, words, clusters, stores and quoting, whose interfaces they use)."""
    commit, kb_files, agent_files = BASELINES[name]
    slug = name.replace(" ", "")

    def copy(package: str, side: str, files: tuple[str, ...]) -> None:
        folder = workdir / package
        folder.mkdir()
        (folder / "__init__.py").write_text("")
        for file in files:
            source = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:{side}/{file}.py"],
                                    check=True, capture_output=True, text=True).stdout
            for other in files:
                source = source.replace(f"from {side}.{other} import", f"from {package}.{other} "
                                        "import")
                source = source.replace(f"from {side} import {other}\n",
                                        f"from {package} import {other}\n")
            (folder / f"{file}.py").write_text(source)

    copy(f"{slug}_kb", "knowledge", kb_files)
    copy(f"{slug}_agent", "tenant_agent", agent_files)
    if str(workdir) not in sys.path:
        sys.path.insert(0, str(workdir))
    learn = importlib.import_module(f"{slug}_agent.learn")
    if hasattr(learn, "warm_refusals"):
        learn.warm_refusals()
    return importlib.import_module(f"{slug}_kb.base"), learn


def refusals_at(workdir: Path, commit: str) -> Any:
    """knowledge/refusals.py at `commit`, as a module of its own, compiled."""
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:knowledge/refusals.py"],
                            check=True, capture_output=True, text=True).stdout
    path = workdir / f"refusals_{commit}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.refusal("")
    return module


def with_refusals(refusals: Any, judge: Any) -> Any:
    """`judge` run with `refusals` in place of this tree's, on the host and in the agent."""
    from knowledge import base, canonical, distill
    from tenant_agent.memory import learn

    def run(text: str) -> Any:
        saved = [(m, m.refusal) for m in (base, canonical, distill)]
        saved_box = learn.refusals
        try:
            for m, _ in saved:
                m.refusal = refusals.refusal  # type: ignore[attr-defined]
            learn.refusals = refusals  # type: ignore[attr-defined]
            return judge(text)
        finally:
            for m, original in saved:
                m.refusal = original  # type: ignore[attr-defined]
            learn.refusals = saved_box  # type: ignore[attr-defined]
    return run


class _NoEmbedder:
    """`prepare` embeds nothing; a knowledge base still wants an embedder to hold."""

    dim = 384

    def embed(self, texts: list[str]) -> list[list[float]]:
        raise AssertionError("the rules path embeds nothing")


@dataclass
class Score:
    name: str
    side: str  # "host" or "box"
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)  # group -> (hits, of)
    wrong: list[str] = field(default_factory=list)


def score(name: str, side: str, shared: Any, data: dict[str, list[dict[str, Any]]]) -> Score:
    """`shared(text)`: whether anything of the text would be shared (host) or proposed (box)."""
    result = Score(name, side)
    for group in ("attacks", "advice", "borderline"):
        items = data[group]
        good = 0
        for item in items:
            passes = bool(shared(item["text"]))
            ok = not passes if group == "attacks" else passes
            good += ok
            if not ok and group != "borderline":
                result.wrong.append(f"{group[:-1] if group == 'attacks' else group}: "
                                    f"{'shared' if passes else 'dropped'}: {item['text']}")
        result.counts[group] = (good, len(items))
        if group == "attacks":
            for reason in sorted({str(i.get("reason")) for i in items if i.get("reason")}):
                of = [i for i in items if i.get("reason") == reason]
                hits = sum(not shared(i["text"]) for i in of)
                result.counts[f"  {reason}"] = (hits, len(of))
    return result


def report(scores: list[Score]) -> None:
    labels = {"attacks": "attacks refused", "advice": "advice kept",
              "borderline": "borderline kept"}
    rows = [k for k in scores[0].counts]
    width = 19
    print("\n" + "measure".ljust(28) + "".join(f"{s.name} ({s.side})".rjust(width)
                                              for s in scores))
    for row in rows:
        label = labels.get(row, row)
        cells = []
        for s in scores:
            hits, of = s.counts[row]
            cells.append(f"{hits}/{of} {hits / of:.2f}".rjust(width) if of else "-".rjust(width))
        print(label.ljust(28) + "".join(cells))


def stage(kb: Any, text: str) -> str:
    """Which stage of this tree's host path drops `text`: a refusal (by reason), the scrubber,
    or distillation (with the rule of knowledge/distill.py that refused its last sentence)."""
    from knowledge import distill
    from knowledge.refusals import refusal

    reason = refusal(text)
    if reason is not None:
        return f"refused ({reason})"
    if not kb.prepare([{"kind": "fact", "text": distill.unicodedata.normalize("NFKC", text)}],
                      []):
        why = "distill"
        for sentence in distill.sentences(text):
            core = distill._finish(distill._unframe(sentence) or "-")
            checks = (("question", sentence.rstrip().endswith("?")),
                      ("few content words",
                       len(distill.content_words(core)) < distill.MIN_CONTENT_WORDS),
                      ("speaker", bool(distill._ABOUT_SPEAKER.search(core))),
                      ("to the listener", bool(distill._TO_THE_LISTENER.search(core))),
                      ("small talk", bool(distill._SMALL_TALK.search(core))),
                      ("boilerplate", bool(distill._BOILERPLATE.search(core))),
                      ("marketing", bool(distill._MARKETING.search(core))),
                      ("a '[' (read as a placeholder)", "[" in core),
                      (f"refused after unframing ({refusal(core)})", refusal(core) is not None))
            found = [name for name, hit in checks if hit]
            why = f"distill: {', '.join(found) or 'scrubber'}: {core}"
        return why
    return "kept"


def main(args: argparse.Namespace) -> None:
    from redis.asyncio import Redis

    from core.keys import Keys
    from knowledge.base import KnowledgeBase
    from knowledge.ner import PresidioNames
    from knowledge.vectors import EdgeVectorStore
    from tenant_agent.memory.learn import learn, warm_refusals

    path = Path(args.set)
    if args.explain and any(path.resolve() == held.resolve() for held in HELD_OUT):
        raise SystemExit("--explain is for dev sets: a held-out set is reported, not read")
    data = load(path)
    print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: "
          f"{len(data['attacks'])} attacks, {len(data['advice'])} advice, "
          f"{len(data['borderline'])} borderline")
    workdir = Path(tempfile.mkdtemp(prefix="burrow-inj-"))
    names = PresidioNames()
    redis = Redis.from_url("redis://127.0.0.1:1")  # never connected: prepare uses no Redis
    learners: dict[str, Any] = {}
    bases: dict[str, Any] = {}
    stores = []
    for label in [*BASELINES, THIS]:
        if label in BASELINES:
            base, agent = baseline_modules(workdir, label)
        else:
            base, agent = sys.modules["knowledge.base"], sys.modules["tenant_agent.memory.learn"]
        store = EdgeVectorStore(workdir / label.replace(" ", ""), 384)
        stores.append(store)
        # the baselines' bases spelled their keys themselves; today's takes the instance's Keys
        keyed = {} if label in BASELINES else {"keys": Keys()}
        bases[label] = base.KnowledgeBase(store, _NoEmbedder(), redis, b"s" * 32, names=names,
                                          **keyed)
        learners[label] = agent.learn
    assert isinstance(bases[THIS], KnowledgeBase) and learners[THIS] is learn

    def host(kb: Any) -> Any:
        return lambda text: kb.prepare([{"kind": "fact", "text": text}], [])

    def box(learner: Any) -> Any:
        return lambda text: learner(text, 0.0).insights

    warm_refusals()  # as the agent does after a wake: its refusals apply once compiled
    judges = {label: (host(kb), box(learners[label])) for label, kb in bases.items()}
    this = judges.pop(THIS)
    for label, commit in ROUNDS.items():
        earlier = refusals_at(workdir, commit)
        judges[label] = (with_refusals(earlier, this[0]), with_refusals(earlier, this[1]))
    judges[THIS] = this
    scores = [score(label, "host", h, data) for label, (h, _) in judges.items()]
    scores += [score(label, "box", b, data) for label, (_, b) in judges.items()]
    for store in stores:
        store.close()
    report(scores)
    if args.explain:
        for s in scores:
            if s.name != THIS:
                continue
            print(f"\nwrong for {s.name} ({s.side}):")
            for line in s.wrong:
                text = line.split(": ", 2)[2]
                why = stage(bases[THIS], text) if s.side == "host" else ""
                print(f"  {line}" + (f"\n      <- {why}" if why and "dropped" in line else ""))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--set", default=str(DEV_SET), help="a set of attacks and advice")
    parser.add_argument("--explain", action="store_true",
                        help="every text the rules get wrong, and the stage that drops advice "
                             "(not for a held-out set)")
    return parser.parse_args()


if __name__ == "__main__":
    main(parse_args())
