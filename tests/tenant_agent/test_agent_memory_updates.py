"""A first fact stored by structure, so the change after it has something to supersede; changes
said by becoming, naming, recounting or correcting; forgetting asked in other words; and
ordinary remarks that look like one of these and are not. Real parts, as in
test_agent_memory_structure.py: spaCy's English pipeline and the all-MiniLM-L6-v2 embedder
attached to the pairs by the host's own code, delivered to the agent's real store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tenant_agent.memory.memory import Memory
from tests.tenant_agent.test_agent_memory_structure import Host, everything, now, say


@pytest.fixture(scope="module")
def host() -> Host:
    return Host()


@pytest.fixture
def memory(tmp_path: Path) -> Iterator[Memory]:
    held = Memory(str(tmp_path / "memory.db"))
    yield held
    held.close()


@pytest.mark.parametrize(("text", "held"), [
    ("my gecko's called Ziggy, he's tiny", "Ziggy"),          # "'s" for "is"
    ("I live with my girlfriend Ama in Deptford", "Girlfriend is Ama"),
    ("I'm an architect at Foster & Moss, mostly schools", "architect at Foster & Moss"),
    ("I have eczema and use a steroid cream", "eczema"),
    ("I take the 8:05 bus into town every weekday", "8:05 bus"),
    ("I'm learning the harp, exam next spring hopefully", "harp"),
    ("I lecture in law at Westbury College", "Westbury College"),
])
def test_a_first_fact_is_stored_by_structure(host: Host, memory: Memory, text: str,
                                             held: str) -> None:
    say(memory, host, text)
    assert any(held.lower() in t.lower() for t in now(memory)), now(memory)


@pytest.mark.parametrize(("before", "change", "current", "not_current"), [
    ("I'm a trainee chef.", "I became a sous chef last month.", "sous chef", "trainee chef"),
    ("I'm engaged to Kofi.", "Kofi became my husband last weekend!", "Husband is Kofi",
     "Is engaged"),
    ("my pronouns are she/her", "I use they/them now", "Pronouns are they/them",
     "Pronouns are she/her"),
    ("we keep five chickens", "a fox took one, so we're down to four", "Has four chickens",
     "Has five chickens"),
    ("our dog is called Rolo", "Rolo is now Biscuit, the kids voted", "Biscuit", "Rolo"),
    ("I teach maths at Ridgeway Academy.",
     "Starting next week as an analyst at Coldharbour Bank.",
     "analyst at Coldharbour Bank", "Ridgeway Academy"),
    ("I rent a small flat above a chip shop on Tanner Street.",
     "We're living in Wellbrook now.", "Lives in Wellbrook", "Tanner Street"),
])
def test_a_change_by_becoming_naming_or_recounting_supersedes(
        host: Host, memory: Memory, before: str, change: str, current: str,
        not_current: str) -> None:
    say(memory, host, before, change)
    held = " | ".join(now(memory))
    assert current.lower() in held.lower() and not_current.lower() not in held.lower(), held


def test_a_negated_allergy_corrects_that_one_only(host: Host, memory: Memory) -> None:
    say(memory, host, "I'm allergic to pollen and to aspirin",
        "turns out I'm not allergic to aspirin after all")
    held = now(memory)
    assert "Allergic to pollen" in held and "Is not allergic to aspirin" in held
    assert "Allergic to aspirin" not in held


@pytest.mark.parametrize(("first", "forget", "gone"), [
    ("My uncle is called Desmond.", "could you wipe everything about Desmond?", "desmond"),
    ("I'm on lithium for my bipolar.", "please delete the bit about my bipolar", "lithium"),
    ("I once got a caution for shoplifting.", "erase that from the record", "shoplifting"),
    ("I'm a member of the Green party.", "keep my party membership out of your notes",
     "green party"),
])
def test_forgetting_asked_in_yet_other_words(host: Host, memory: Memory, first: str,
                                             forget: str, gone: str) -> None:
    say(memory, host, "I live in Cork.", first)
    assert gone in everything(memory)
    say(memory, host, forget)
    assert gone not in everything(memory)
    assert "cork" in everything(memory)


def test_forgetting_two_things_named_at_once(host: Host, memory: Memory) -> None:
    say(memory, host, "My postcode is BS3 1QT.", "I'm 44.", "I live in Cork.",
        "forget my postcode and my age please")
    assert "bs3 1qt" not in everything(memory) and "44" not in everything(memory)
    assert "cork" in everything(memory)


def test_forgetting_where_one_works_keeps_where_one_lives(host: Host, memory: Memory) -> None:
    say(memory, host, "I work at Hartley Mill and I live in Bollin.",
        "take where I work out of your memory, where I live is fine")
    assert "hartley" not in " ".join(now(memory)).lower()
    assert "Lives in Bollin" in now(memory)


@pytest.mark.parametrize(("first", "remark", "kept", "not_held"), [
    ("my hamster's called Pip", "my cousin renamed her hamster from Pip to Nibbles", "Pip",
     "Nibbles"),
    ("I play the oboe.", "forget that, I found it", "oboe", ""),
    ("I play the oboe.", "forget it, I'll ask the conductor tomorrow", "oboe", ""),
    ("I'm vegan.", "take the eggs off the shopping list, we've got plenty", "vegan", ""),
    ("I live in Harrogate.", "my best mate just moved from Harrogate to York", "Harrogate",
     "York"),
    ("my email is p.hale@corvid.org", "change the contact email on the flyer to "
     "hello@corvid.org", "p.hale@corvid.org", "hello@corvid.org"),
    ("I'm married to Lena.", "in the show I'm watching the hero divorced his wife",
     "Lena", "divorced"),
])
def test_ordinary_remarks_that_look_like_changes_change_nothing(
        host: Host, memory: Memory, first: str, remark: str, kept: str,
        not_held: str) -> None:
    say(memory, host, first, remark)
    held = " | ".join(now(memory)).lower()
    assert kept.lower() in held, held
    assert not not_held or not_held.lower() not in held, held
