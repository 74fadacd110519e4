"""Scrubber benchmark: recall on labelled personal data, false positives on clean text, and
milliseconds per text, for the scrubber at BASELINE_COMMIT (loaded from git, same run) and for
this tree with patterns only and with the name detector (Presidio over spaCy).

Sets:
  issue     every string issue 15 lists, each in a sentence (all must be caught)
  dev       hand-written personal data and clean technical statements, and a Faker set (seed 3,
            templates of its own), looked at while building
  held-out  generated with Faker (seed 7, en_US and a few other locales) in templates written
            for this set only, plus clean sentences (the calibration facts of
            bench/data/knowledge_facts.json, Faker's English sentences and catch phrases);
            not tuned on: the figures that count

A personal value is caught when no part of it survives: the whole value, any word of 3+
letters of a name, and any run of 4+ of its digits. A clean text is a false positive when the
scrubber changes it at all.

    .venv/bin/python bench/scrub.py
"""

from __future__ import annotations

import importlib
import json
import random
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BASELINE_COMMIT = "93d7277"
Labelled = tuple[str, str, str]  # (kind, text, the personal value in it)

ISSUE: list[Labelled] = [
    ("person", "Maria Gonzalez fixed the export.", "Maria Gonzalez"),
    ("address", "Ship it to 221B Baker Street, London NW1 6XE.",
     "221B Baker Street, London NW1 6XE"),
    ("email", "Write to john.doe @ gmail.com today.", "john.doe @ gmail.com"),
    ("email", "Write to john.doe\uff20gmail.com today.", "john.doe"),
    ("email", "Write to maria@почта.рф today.", "maria@почта.рф"),
    ("email", "Write to john dot doe at gmail dot com today.", "john dot doe"),
    ("phone", "the desk number is 4155550123", "4155550123"),
    ("ssn", "SSN 078051120", "078051120"),
    ("card", "card 4111.1111.1111.1111", "4111.1111.1111.1111"),
    ("iban", "IBAN DE89-3704-0044-0532-0130-00", "DE89-3704-0044-0532-0130-00"),
    ("secret", "wifi password is sunshine", "sunshine"),
    ("access_code", "door code 4821", "4821"),
    ("birth_date", "born 1984-03-12", "1984-03-12"),
    ("passport", "passport X12345678", "X12345678"),
]

DEV: list[Labelled] = [
    ("person", "Ask Dr. Priya Raman about the invoices.", "Priya Raman"),
    ("person", "Tom Becker said the build is green.", "Tom Becker"),
    ("email", "alerts go to ops-team@example.org", "ops-team@example.org"),
    ("phone", "Call +1 415 555 2671 after 5pm.", "+1 415 555 2671"),
    ("phone", "Reach me at (415) 555-2671.", "(415) 555-2671"),
    ("card", "Visa 4242 4242 4242 4242 was charged twice.", "4242 4242 4242 4242"),
    ("address", "The office moved to 1600 Amphitheatre Parkway, Mountain View, CA 94043.",
     "1600 Amphitheatre Parkway"),
    ("ssn", "her social security number is 078-05-1120", "078-05-1120"),
    ("birth_date", "date of birth: March 12, 1984", "March 12, 1984"),
    ("secret", "the router password is tiger-lily-42", "tiger-lily-42"),
]
DEV_CLEAN = [
    "Postgres needs a restart after changing shared_buffers.",
    "Kafka consumers rebalance when processing exceeds max.poll.interval.ms.",
    "Use port 5432 for Postgres and 6379 for Redis.",
    "Release 2024-03-12 fixed the export bug.", "Python 3.12 removed distutils.",
    "Grafana dashboards load faster with fewer panels.",
    "The password is required on every login.", "Invoices in Germany need a VAT ID.",
    "Set max_connections to 200 in Postgres.", "Docker images on Alpine compile numpy.",
]

# --- the held-out set: templates written for it alone --------------------------------------

HELD_PERSONAL: list[tuple[str, str]] = [
    ("person", "Please forward the contract to {name} before noon."),
    ("person", "Yesterday {name} confirmed the delivery window."),
    ("person", "The account belongs to {name}."),
    ("address", "Deliveries go to {address} on weekdays."),
    ("address", "Our new office is at {street}."),
    ("email", "Contact {email} if the upload fails."),
    ("email", "Reply to {email_obfuscated} with the logs."),
    ("phone", "You can reach the driver on {phone}."),
    ("phone", "Her mobile number is {phone}."),
    ("ssn", "The form listed SSN {ssn}."),
    ("card", "The refund went back to card {card}."),
    ("iban", "Transfer the deposit to {iban}."),
    ("birth_date", "He was born on {dob_words}."),
    ("birth_date", "DOB {dob}, please verify."),
    ("passport", "Passport number {passport} was scanned at check-in."),
    ("access_code", "The gate code is {code}."),
    ("secret", "The guest wifi password is {password}."),
]


DEV_FAKER: list[tuple[str, str]] = [
    ("person", "I spoke with {name} this morning."), ("person", "{name} owns the billing page."),
    ("address", "Mail the keys to {address}."), ("address", "I live at {street} now."),
    ("email", "My email is {email}."), ("email", "write me: {email_obfuscated}"),
    ("phone", "Text me at {phone}."), ("phone", "Office phone: {phone}"),
    ("ssn", "social security number {ssn}"), ("card", "Charge {card} for the renewal."),
    ("iban", "My IBAN is {iban}."), ("birth_date", "Birthday: {dob_words}."),
    ("birth_date", "date of birth {dob}"), ("passport", "my passport no. is {passport}"),
    ("access_code", "alarm code {code}"), ("secret", "wifi password: {password}"),
]


def _held_out_values(fake: Any, rng: random.Random) -> dict[str, str]:
    email = fake.email()
    user, domain = email.split("@")
    return {
        "name": fake.name(), "address": fake.address().replace("\n", ", "),
        "street": fake.street_address(), "email": email,
        "email_obfuscated": rng.choice([f"{user} at {domain.replace('.', ' dot ')}",
                                        f"{user} [at] {domain}", f"{user} @ {domain}"]),
        "phone": fake.phone_number(), "ssn": fake.ssn(), "card": fake.credit_card_number(),
        "iban": fake.iban(), "dob": fake.date_of_birth().isoformat(),
        "dob_words": fake.date_of_birth().strftime("%B %d, %Y"),
        "passport": fake.passport_number(), "code": str(rng.randint(1000, 999999)),
        "password": fake.password(length=rng.randint(8, 14), special_chars=rng.random() < 0.5),
    }


def generated(seed: int, templates: list[tuple[str, str]], n: int = 40) -> list[Labelled]:
    from faker import Faker

    rng = random.Random(seed)
    labelled: list[Labelled] = []
    for locale in ("en_US", "en_GB", "de_DE", "es_ES", "fr_FR"):
        fake = Faker(locale)
        fake.seed_instance(seed)
        for _ in range(n // 5):
            values = _held_out_values(fake, rng)
            for kind, template in templates:
                key = re.search(r"\{(\w+)\}", template)
                assert key is not None
                labelled.append((kind, template.format(**values), values[key.group(1)]))
    return labelled


def held_out() -> tuple[list[Labelled], list[str]]:
    from faker import Faker

    labelled = generated(7, HELD_PERSONAL)
    facts = json.loads((ROOT / "bench/data/knowledge_facts.json").read_text())
    clean = [p + "." for f in facts["calibration"] for p in f["phrasings"]]
    fake = Faker("en_US")
    fake.seed_instance(7)
    clean += [fake.sentence(nb_words=12) for _ in range(100)]
    clean += [f"{fake.catch_phrase()} helps teams ship faster." for _ in range(50)]
    return labelled, clean


# --- measuring ------------------------------------------------------------------------------

def caught(value: str, scrubbed: str) -> bool:
    low = scrubbed.lower()
    if value.lower() in low:
        return False
    digits = re.sub(r"\D", "", scrubbed)
    if any(run in digits for run in re.findall(r"\d{4,}", re.sub(r"[\s.-]", "", value))):
        return False
    if " " in value.strip() and not re.search(r"\d", value):  # a name: no word of it is left
        words = [w for w in re.findall(r"[^\W\d_]{3,}", value)]
        return not any(re.search(rf"(?<!\w){re.escape(w.lower())}(?!\w)", low) for w in words)
    return True


def measure(scrub: Callable[[str], str], labelled: list[Labelled],
            clean: list[str]) -> tuple[float, float, float, list[str]]:
    """(recall, false-positive rate, ms per text, misses)"""
    started = time.perf_counter()
    misses = [f"{kind}: {text}" for kind, text, value in labelled
              if not caught(value, scrub(text))]
    false_positives = sum(scrub(text) != text for text in clean)
    ms = (time.perf_counter() - started) * 1000 / max(1, len(labelled) + len(clean))
    recall = 1 - len(misses) / max(1, len(labelled))
    return recall, false_positives / max(1, len(clean)), ms, misses


def baseline_scrub(workdir: Path) -> Callable[[str], str]:
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{BASELINE_COMMIT}:knowledge/"
                             "scrub.py"], check=True, capture_output=True, text=True).stdout
    (workdir / "baseline_scrub.py").write_text(source)
    sys.path.insert(0, str(workdir))
    module = importlib.import_module("baseline_scrub")
    return lambda text: str(module.scrub(text).text)


def main() -> None:
    from knowledge.ner import PresidioNames
    from knowledge.scrub import scrub

    names = PresidioNames()
    started = time.perf_counter()
    names.load()
    print(f"name detector loaded in {time.perf_counter() - started:.1f} s")
    systems = {
        "baseline": baseline_scrub(Path(tempfile.mkdtemp(prefix="burrow-scrub-"))),
        "patterns": lambda t: scrub(t).text,
        "patterns+NER": lambda t: scrub(t, names=names).text,
    }
    held, held_clean = held_out()
    dev = DEV + generated(3, DEV_FAKER, n=20)
    sets = {"issue": (ISSUE, []), "dev": (dev, DEV_CLEAN), "held-out": (held, held_clean)}
    if "--dev" in sys.argv:  # while building: the held-out set stays unseen
        del sets["held-out"]
    print(f"held-out: {len(held)} labelled values, {len(held_clean)} clean texts")
    results = {(s, n): measure(f, *sets[s]) for s in sets for n, f in systems.items()}
    print(f"\n{'set / measure':<34}" + "".join(f"{n:>16}" for n in systems))
    for s in sets:
        for label, i, fmt in (("recall (>= 0.95)", 0, "{:.3f}"),
                              ("false-positive rate (<= 5 %)", 1, "{:.1%}"),
                              ("ms per text", 2, "{:.2f}")):
            if i == 1 and not sets[s][1]:
                continue
            print(f"{s + ': ' + label:<34}"
                  + "".join(f"{fmt.format(results[(s, n)][i]):>16}" for n in systems))
    for s in ("issue", "dev"):
        for miss in results[(s, "patterns+NER")][3][:40]:
            print(f"  missed ({s}): {miss}")
    by_kind: dict[str, list[int]] = {}
    for kind, text, value in sets.get("held-out", ([], []))[0]:
        by_kind.setdefault(kind, [0, 0])[caught(value, scrub(text, names=names).text)] += 1
    for kind, (missed, found) in sorted(by_kind.items()):
        print(f"  held-out {kind}: {found}/{missed + found} caught")


if __name__ == "__main__":
    main()
