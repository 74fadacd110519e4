"""Distillation by rules: the speaker's framing comes off, and only general statements about
the world stay (no first or second person, questions, small talk, boilerplate, marketing)."""

from __future__ import annotations

import pytest

from knowledge.distill import Statement, distill, distill_text, sentences


@pytest.mark.parametrize(("said", "statement"), [
    ("We learned the hard way that Postgres needs a restart after changing shared_buffers.",
     "Postgres needs a restart after changing shared_buffers."),
    ("TIL: pip install --user breaks inside virtualenvs.",
     "Pip install --user breaks inside virtualenvs."),
    ("Pro tip: set the Redis maxmemory policy to allkeys-lru for caches.",
     "Set the Redis maxmemory policy to allkeys-lru for caches."),
    ("In our experience, Kafka rebalances when a poll takes longer than max.poll.interval.ms.",
     "Kafka rebalances when a poll takes longer than max.poll.interval.ms."),
    ("Nginx caches 404 responses unless proxy_cache_valid says otherwise, at least for us.",
     "Nginx caches 404 responses unless proxy_cache_valid says otherwise."),
    ("It turns out that S3 reads are strongly consistent after writes!",
     "S3 reads are strongly consistent after writes."),
    ("You should always pin torch to the CPU build.", "Pin torch to the CPU build."),
    ("Heads up: we found that cron jobs run with a minimal PATH.",
     "Cron jobs run with a minimal PATH."),
])
def test_the_speakers_framing_comes_off(said: str, statement: str) -> None:
    assert distill_text(said) == [statement]


@pytest.mark.parametrize("said", [
    "Hi! Thanks for using Acme Assistant. How can I help you today?",
    "I love my dog Rex.", "The weather is lovely today.", "Our team uses Slack for alerts.",
    "Is Postgres faster than MySQL?", "Some users prefer to read.", "Thanks, that helped a lot!",
    "Acme Cloud is the best platform for growing teams.",
    "Acme Assistant can make mistakes, so double-check important information.",
    "Upgrade to Acme Pro for unlimited messages.", "Postgres restarts.",
    "Postgres needs a restart after changing shared_buffers on our staging cluster.",
])
def test_what_is_about_the_speaker_or_no_knowledge_is_dropped(said: str) -> None:
    assert distill_text(said) == []


def test_sentences_do_not_end_inside_domains_or_versions() -> None:
    assert sentences("See example.com for v1.2 notes. Then restart it.\n- a bullet") == [
        "See example.com for v1.2 notes.", "Then restart it.", "a bullet"]


def test_distill_keeps_the_kind_and_drops_duplicates() -> None:
    assert distill([("tip", "TIL: Rinse rice until the water runs clear."),
                    ("fact", "Rinse rice until the water runs clear."),
                    ("fact", "Good morning!")]) == [
        Statement("tip", "Rinse rice until the water runs clear.")]
