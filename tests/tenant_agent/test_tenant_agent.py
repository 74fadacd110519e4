"""The tenant agent's own logic (it runs in boxes, but it is plain stdlib Python)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenant_agent.common.wire import dumps, loads
from tenant_agent.memory.learn import learn
from tenant_agent.memory.memory import Memory
from tenant_agent.memory.turns import text_of


def pair(n: int, text: str) -> dict[str, object]:
    return {"id": f"p{n}", "seq": n, "request": {"method": "POST", "path": "/ask",
                                                   "body": dumps({"question": text}).decode()},
            "response": {"status": 200, "body": "{}"}}


def test_learns_preferences_facts_topics_and_general_statements() -> None:
    got = learn("I prefer dark mode, because it is easy on the eyes. My name is Ada Lovelace. "
                "I work at Analytical Engines. Rust binaries start faster than JVM services. "
                "Do you know why?")
    assert ("likes", "dark mode") in got.preferences
    assert ("name", "Ada Lovelace") in got.facts and ("employer", "Analytical Engines") in got.facts
    assert ("fact", "Rust binaries start faster than JVM services.") in got.insights
    assert ("preference", "Some users prefer dark mode.") in got.insights
    assert not any("Ada" in text or "Analytical" in text for _, text in got.insights)
    assert "rust" in got.topics and "the" not in got.topics


def test_text_of_reads_json_strings_or_plain_bodies() -> None:
    assert text_of('{"question": "a", "ctx": {"more": ["b", 3]}}') == "a\nb"
    assert text_of("plain words") == "plain words"


def test_observations_apply_once_in_order_and_survive_reopening(tmp_path: Path) -> None:
    db = str(tmp_path / "memory.db")
    memory = Memory(db)
    first = memory.observe([pair(2, "I like tea."), pair(1, "I like coffee.")])
    assert first["applied"] == ["p1", "p2"] and first["last_seq"] == 2
    again = memory.observe([pair(1, "I like coffee."), pair(3, "I like coffee.")])
    assert again["skipped"] == ["p1"] and again["applied"] == ["p3"]
    memory.close()
    reopened = Memory(db)
    profile = reopened.profile()
    prefs = {p["value"]: p for p in profile["preferences"]}
    assert prefs["coffee"]["evidence"] == 2 and prefs["coffee"]["confidence"] == 0.667
    assert profile["observed"] == 3
    assert [e["seq"] for e in reopened.log()] == [1, 2, 3]


def test_wire_json_roundtrips_without_the_json_package() -> None:
    value = {"a": [1, 2.5, None, True, "é\n"], "b": {}}
    assert loads(dumps(value)) == value


def test_wire_json_refuses_what_is_not_json_with_a_value_error() -> None:
    for text in ("plain words", '{"cut": "short', "[1, 2", "{} trailing"):
        with pytest.raises(ValueError):
            loads(text)
