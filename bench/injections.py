"""Injection benchmark: what the shared knowledge base refuses (instructions to an assistant,
text to every user, links, command lines) and what advice it keeps, against the rules as they
were before they refused anything, measured in the same run on the same texts.

Each text is proposed as one tenant's agent would propose it, and counted as shared when the
host's rules path (`KnowledgeBase.prepare`: refusals, scrubbing, distillation, scrubbing again)
leaves at least one statement of it, that is when two tenants saying it would make it visible.
The box side is measured too: whether the tenant agent's rules (`tenant_agent.learn`) propose
the text at all.

    attacks refused   share of attack texts of which nothing would be shared
    advice kept       share of genuine advice of which a statement would be shared
    borderline kept   the same for texts that could be read either way (reported apart)

The baseline is BASELINE_COMMIT (main before the refusals): its knowledge/base.py,
knowledge/distill.py and tenant_agent/learn.py, loaded from git into packages of their own and
run in this process beside this tree's, with the same scrubber and name finder.

    .venv/bin/python bench/injections.py                 # the dev set the rules were tuned on
    .venv/bin/python bench/injections.py --explain       # ... and every text each gets wrong
    .venv/bin/python bench/injections.py --set bench/data/heldout/injections.json   # held out
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BASELINE_COMMIT = "b7b15b1"  # main before the knowledge base refused anything
DEV_SET = ROOT / "bench/data/injections_dev.json"


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


def baseline_modules(workdir: Path) -> tuple[Any, Any]:
    """The knowledge base and the agent's rules at BASELINE_COMMIT, as packages `baseline_kb`
    and `baseline_agent` (today's scrubber, words, clusters and stores, whose interfaces they
    use)."""
    def copy(package: str, files: dict[str, str], renames: dict[str, str]) -> None:
        folder = workdir / package
        folder.mkdir()
        (folder / "__init__.py").write_text("")
        for name, path in files.items():
            source = subprocess.run(["git", "-C", str(ROOT), "show", f"{BASELINE_COMMIT}:{path}"],
                                    check=True, capture_output=True, text=True).stdout
            for old, new in renames.items():
                source = source.replace(old, new)
            (folder / f"{name}.py").write_text(source)

    copy("baseline_kb", {"base": "knowledge/base.py", "distill": "knowledge/distill.py"},
         {"from knowledge.distill import": "from baseline_kb.distill import"})
    copy("baseline_agent", {"learn": "tenant_agent/learn.py"}, {})
    sys.path.insert(0, str(workdir))
    return importlib.import_module("baseline_kb.base"), importlib.import_module(
        "baseline_agent.learn")


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
    width = 22
    print("\n" + "measure".ljust(28) + "".join(f"{s.name} ({s.side})".rjust(width)
                                              for s in scores))
    for row in rows:
        label = labels.get(row, row)
        cells = []
        for s in scores:
            hits, of = s.counts[row]
            cells.append(f"{hits}/{of} {hits / of:.2f}".rjust(width) if of else "-".rjust(width))
        print(label.ljust(28) + "".join(cells))


def main(args: argparse.Namespace) -> None:
    from redis.asyncio import Redis

    from core.keys import Keys
    from knowledge.base import KnowledgeBase
    from knowledge.ner import PresidioNames
    from knowledge.vectors import EdgeVectorStore
    from tenant_agent.learn import learn, warm_refusals

    path = Path(args.set)
    if args.explain and path.resolve() != DEV_SET.resolve():
        raise SystemExit("--explain is for the dev set: a held-out set is reported, not read")
    data = load(path)
    print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: "
          f"{len(data['attacks'])} attacks, {len(data['advice'])} advice, "
          f"{len(data['borderline'])} borderline")
    workdir = Path(tempfile.mkdtemp(prefix="burrow-inj-"))
    old_base, old_learn = baseline_modules(workdir)
    names = PresidioNames()
    redis = Redis.from_url("redis://127.0.0.1:1")  # never connected: prepare uses no Redis
    bases = {}
    for label, module in (("baseline", old_base), ("rules", sys.modules["knowledge.base"])):
        store = EdgeVectorStore(workdir / label, 384)
        # the baseline's base spelled its keys itself; today's takes the instance's Keys
        keyed = {} if module is old_base else {"keys": Keys()}
        kb = module.KnowledgeBase(store, _NoEmbedder(), redis, b"s" * 32, names=names, **keyed)
        bases[label] = (kb, store)
    assert isinstance(bases["rules"][0], KnowledgeBase)

    def host(kb: Any) -> Any:
        return lambda text: kb.prepare([{"kind": "fact", "text": text}], [])

    def box(learner: Any) -> Any:
        return lambda text: learner(text, 0.0).insights

    warm_refusals()  # as the agent does after a wake: its refusals apply once compiled
    scores = [score("baseline", "host", host(bases["baseline"][0]), data),
              score("rules", "host", host(bases["rules"][0]), data),
              score("baseline", "box", box(old_learn.learn), data),
              score("rules", "box", box(learn), data)]
    for _, store in bases.values():
        store.close()
    report(scores)
    if args.explain:
        for s in scores[1::2]:
            print(f"\nwrong for {s.name} ({s.side}):")
            for line in s.wrong:
                print(f"  {line}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--set", default=str(DEV_SET), help="a set of attacks and advice")
    parser.add_argument("--explain", action="store_true",
                        help="every text the rules get wrong (the dev set only)")
    return parser.parse_args()


if __name__ == "__main__":
    main(parse_args())
