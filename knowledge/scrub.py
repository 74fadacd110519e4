"""PII and secret scrubbing of shareable insights: emails, phones, cards, IBANs, IPs, keys and
tokens, credentials and the tenant's own identifiers become placeholders such as "[email]".

Detectors run in a fixed order, most specific first, so that one finding is reported once
(a JWT is not also a generic token; a URL's credentials go before the emails inside them).
Placeholders already in the text are never matched again, and the whole pass repeats until it
finds nothing, so scrubbing is idempotent by construction.
"""

from __future__ import annotations

import ipaddress
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from knowledge import personal_ids
from knowledge.ner import NameFinder

FINDING_KINDS = ("email", "phone", "card", "iban", "ip", "api_key", "jwt", "url_credentials",
                 "identifier", "secret", "person", "address", "ssn", "passport", "birth_date",
                 "access_code")

_Span = tuple[int, int]
_Judge = Callable[[re.Match[str]], _Span | None]


@dataclass(frozen=True)
class Scrubbed:
    """A scrubbed text and how many findings of each kind it had (kinds with none are absent)."""

    text: str
    findings: dict[str, int]


@dataclass(frozen=True)
class _Detector:
    kind: str
    pattern: re.Pattern[str]
    judge: _Judge


_PLACEHOLDER = re.compile(r"\[(?:" + "|".join(FINDING_KINDS) + r")\]")


def _whole(m: re.Match[str]) -> _Span:
    return m.span()


def _secret_group(m: re.Match[str]) -> _Span | None:
    start, end = m.span("secret")
    return (start, end) if end > start else None


def _classes(s: str) -> int:
    """How many of lower case, upper case and digits appear in s."""
    return (any(c.islower() for c in s) + any(c.isupper() for c in s)
            + any(c.isdigit() for c in s))


# --- secrets -------------------------------------------------------------------------------

_PRIVATE_KEY = re.compile(
    r"-----BEGIN (?P<label>[A-Z0-9 ]*)PRIVATE KEY(?P<block>(?: BLOCK)?)-----"
    # a truncated key still leaks its body, so without an END line take the base64 that follows
    r"(?:.*?-----END (?P=label)PRIVATE KEY(?P=block)-----|[A-Za-z0-9+/=\\\r\n]*)",
    re.DOTALL,
)

# userinfo is everything between "scheme://" and the "@" before the host. Passwords are taken
# raw (with "/" too, as people paste them), but "host:8080/..." is a port, and a raw "@" counts
# as part of a password only when another "@" follows within the authority.
_URL_CREDENTIALS = re.compile(
    r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]*://"
    r"(?P<secret>[^\s:/?#@\[\]]*"
    r"(?::(?!\d{1,5}(?:[/?#]|$))(?:[^\s@]|@(?=[^\s@/?#]*@))*)?)"
    r"@(?=[\w\[])"
)

_JWT = re.compile(
    r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]*"
    r"(?:\.[A-Za-z0-9_-]+){0,2}"  # JWE has five segments
)

_KEY_PREFIXES = (
    r"sk-[A-Za-z0-9_-]{20,}",                       # OpenAI (sk-, sk-proj-), Anthropic (sk-ant-)
    r"(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{16,}",  # Stripe
    r"whsec_[A-Za-z0-9]{24,}",                      # Stripe webhook signing secret
    r"gh[pousr]_[A-Za-z0-9]{30,}",                  # GitHub
    r"github_pat_[A-Za-z0-9_]{30,}",
    r"xox[abposr]-[A-Za-z0-9-]{10,}",               # Slack
    r"xapp-[A-Za-z0-9-]{10,}",
    r"A(?:KIA|SIA)[A-Z0-9]{16}",                    # AWS access key id
    r"AIza[A-Za-z0-9_-]{30,}",                      # Google
    r"glpat-[A-Za-z0-9_-]{20,}",                    # GitLab
    r"hf_[A-Za-z0-9]{30,}",                         # Hugging Face
    r"npm_[A-Za-z0-9]{36}",
    r"pypi-[A-Za-z0-9_-]{50,}",
    r"SG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}",  # SendGrid
    r"brw_[a-z]+_[A-Za-z0-9_-]{8,}(?:\.[A-Za-z0-9_-]+)?",  # Burrow's own keys and box tokens
)
_PREFIXED_KEY = re.compile(
    r"(?<![A-Za-z0-9_-])(?:" + "|".join(_KEY_PREFIXES) + r")(?![A-Za-z0-9_-])"
)


def _prefixed_key(m: re.Match[str]) -> _Span | None:
    # Random key bodies mix character classes; "sk-learn-compatible-estimators" does not.
    # Burrow's prefix is ours alone, so anything after it is a key.
    key = m.group()
    return m.span() if key.startswith("brw_") or _classes(key[4:]) >= 2 else None


_AUTH_CONTEXT = re.compile(r"authorization[\"']?\s*[:=]\s*[\"']?$", re.IGNORECASE)
_BEARER = re.compile(r"(?<![A-Za-z0-9])bearer\s+(?P<secret>[A-Za-z0-9._~+/-]+=*)", re.IGNORECASE)


def _bearer(m: re.Match[str]) -> _Span | None:
    start, end = m.span("secret")
    token = m.group("secret").rstrip(".")
    end = start + len(token)
    in_header = _AUTH_CONTEXT.search(m.string, max(0, m.start() - 40), m.start()) is not None
    # prose says "Bearer tokens" and "bearer token-based auth"; real tokens have digits or length
    looks_like_token = len(token) >= 8 and (any(c.isdigit() for c in token)
                                           or (len(token) >= 20 and _classes(token) >= 2))
    return (start, end) if token and (in_header or looks_like_token) else None


_AUTH_SCHEMES = r"(?:basic|bearer|digest|negotiate|ntlm|token)"
_AUTHORIZATION = re.compile(
    r"(?<![A-Za-z0-9])(?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?"
    rf"(?:{_AUTH_SCHEMES}\s+)?(?!{_AUTH_SCHEMES}\b)"
    r"(?P<secret>[A-Za-z0-9._~+/=:-]+)",
    re.IGNORECASE,
)

# Key names: any prefix segments ("DB_", "spring.datasource.") then a secret word, then only
# suffixes that keep it a secret ("secret_key", "token_value"); "token_count" or "max_tokens"
# name numbers, not secrets.
_SECRET_WORD = (r"pass(?:word|wd|phrase)?|pwd|secret|token|api[_-]?key|apikey|access[_-]?key"
                r"|private[_-]?key|client[_-]?secret|credentials?|auth")
_KEY_SUFFIX = r"key|value|hash|b64|base64|enc|encrypted|str|string|raw|plain|plaintext"
_ASSIGNMENT = re.compile(
    r"(?<![A-Za-z0-9])(?P<kq>[\"']?)(?:[A-Za-z0-9]+[_.-]){0,6}"
    rf"(?P<word>{_SECRET_WORD})(?:[_.-](?:{_KEY_SUFFIX}))*(?P=kq)"
    r"(?P<sep>\s*(?::=|=>|[:=])\s*|\s+(?:is\s+|was\s+)?)"
    r"(?:(?P<q>[\"'])(?P<quoted>[^\"'\n]+)(?P=q)|(?P<bare>[^\s\"'&,;<>()\[\]{}]+))",
    re.IGNORECASE,
)
# Prose uses these words with a colon too ("cost per token: 0.002", "for auth: use SSO"), so
# after a colon their value must look like a password; after "=" anything goes.
_WEAK_WORDS = frozenset({"token", "auth", "pass", "pwd", "credential", "credentials"})
# Without "=" or ":" only these words take a value ("password hunter2", "token 8f7a6b5c")
_SPACED_WORDS = frozenset({"password", "passwd", "passphrase", "secret", "token", "apikey",
                           "api_key", "api-key"})
_NOT_SECRETS = frozenset({"null", "none", "nil", "true", "false", "undefined", "empty"})


def _looks_like_password(value: str) -> bool:
    """Whether a value is a secret and not the next word of a sentence ("password reset")."""
    has_letter = any(c.isalpha() for c in value)
    has_other = any(c.isdigit() or not c.isalnum() for c in value)
    return len(value) >= 6 and has_letter and has_other


def _assignment(m: re.Match[str]) -> _Span | None:
    group = "quoted" if m.group("quoted") is not None else "bare"
    start, end = m.span(group)
    value = m.group(group)
    if group == "bare":
        # the end of a sentence is not part of the value
        value = value.rstrip(".:!?")
        end = start + len(value)
    if not value or value.lower() in _NOT_SECRETS or m.string.startswith("[", end):
        return None  # (a value running into a placeholder was scrubbed already)
    sep, word = m.group("sep").strip(), m.group("word").lower()
    if "=" in sep or m.group("kq"):  # config lines, query strings, JSON keys
        return start, end
    if sep.startswith(":"):
        secret = word not in _WEAK_WORDS or _looks_like_password(value)
    else:
        secret = word in _SPACED_WORDS and _looks_like_password(value)
    return (start, end) if secret else None


# --- personal data -------------------------------------------------------------------------

# Internationalised domains too ("maria@почта.рф"): a top-level domain is letters of any script.
_EMAIL = re.compile(
    r"(?<![\w.%+-])[\w.%+-]++@(?:[\w-]+\.)+[^\W\d_]{2,24}(?![\w-])"
)

# Lengths by country (the SWIFT IBAN registry) make the end of a spaced IBAN unambiguous, as in
# "DE89 3704 0044 0532 0130 00 EUR".
_IBAN_LENGTHS = {country: int(n) for country, n in re.findall(r"([A-Z]{2})(\d\d)", """
    AD24 AE23 AL28 AT20 AZ28 BA20 BE16 BG22 BH22 BI27 BR29 BY28 CH21 CR22 CY28 CZ24 DE22 DJ27
    DK18 DO28 EE20 EG29 ES24 FI18 FK18 FO18 FR27 GB22 GE22 GI23 GL18 GR27 GT28 HR21 HU28 IE22
    IL23 IQ23 IS26 IT27 JO30 KW30 KZ20 LB28 LC32 LI21 LT20 LU20 LV21 LY25 MC27 MD24 ME22 MK19
    MN20 MR27 MT31 MU30 NI28 NL18 NO15 OM23 PK24 PL28 PS29 PT25 QA29 RO24 RS22 RU33 SA24 SC31
    SD18 SE24 SI19 SK24 SM27 SO23 ST25 SV28 TL23 TN24 TR26 UA29 VA22 VG24 XK20 YE30
""")}
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?:[ -]?[A-Za-z0-9]){11,30}")


def _iban_valid(iban: str) -> bool:
    """The ISO 13616 mod-97 check of an IBAN written without spaces."""
    rearranged = iban[4:].upper() + iban[:4].upper()
    if not rearranged.isalnum() or not rearranged.isascii():
        return False
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def _iban(m: re.Match[str]) -> _Span | None:
    found = m.group()
    expected = _IBAN_LENGTHS.get(found[:2].upper())
    if expected is None:
        return None
    chars = 0
    for i, c in enumerate(found):
        chars += c not in " -"
        if chars == expected:
            cut = m.start() + i + 1
            if cut < len(m.string) and m.string[cut].isalnum():
                return None  # it goes on: a longer code, not this IBAN
            compact = found[:i + 1].replace(" ", "").replace("-", "")
            return (m.start(), cut) if _iban_valid(compact) else None
    return None


# A maximal run of digit groups; the judges decide which part (if any) is a card or a phone.
# Neither has more than twelve groups, and a longer run is no match at all, found in one step.
# The groups' repeat is atomic, (?>…{0,11}), not possessive, …{0,11}+: the same thing, but
# CPython 3.11.2 (Debian 12's) let a possessive repeat of an alternation keep a separator with
# no group after it, and the judges then saw no card at all (3.11.7 does not).
_DIGIT_RUN = (r"(?<![\w.,+/-])(?<!\d[ .-])"
              r"(?>{lead}{first}(?>(?:{sep}(?:\(\d++\)|\d++)){{0,11}}))"
              r"(?!{sep}\(?\d)(?![\w]|[.,:/]\d)")
_CARD = re.compile(_DIGIT_RUN.format(lead="", first=r"\d++", sep=r"[ .-]"))


_DIGITS = re.compile(r"\d+")


def _luhn_valid(digits: str) -> bool:
    """The Luhn checksum of a card number (digits only)."""
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _card(m: re.Match[str]) -> _Span | None:
    # The run may carry a neighbour ("order 12 4111 1111 1111 1111"), so try each stretch of
    # whole groups and keep the longest valid one. Issuers' numbers start with 2-6 (Visa,
    # Mastercard, Amex, Discover, JCB, ...): a Luhn-valid 0000 0000 0000 0000 is no card.
    groups = list(_DIGITS.finditer(m.string, m.start(), m.end()))
    best: tuple[int, int, int] | None = None  # digits, start, end
    for i, first in enumerate(groups):
        digits = ""
        for last in groups[i:]:
            digits += last.group()
            if len(digits) > 19:
                break
            valid = _luhn_valid(digits) and (
                (len(digits) >= 13 and digits[0] in "23456")
                or (len(digits) >= 12 and digits[0] in "56")  # Maestro: 12 to 19 digits
                or (len(digits) == 15 and digits.startswith(("1800", "2131"))))  # JCB
            if valid and (best is None or len(digits) > best[0]):
                best = len(digits), first.start(), last.end()
    return None if best is None else best[1:]


_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d)")
_VERSION_CONTEXT = re.compile(r"\b(?:version|release|v)\s*$", re.IGNORECASE)
_IPV6 = re.compile(
    r"(?<![\w:.])(?=[0-9A-Fa-f]*:[0-9A-Fa-f]*:)[0-9A-Fa-f:]{2,39}"
    r"(?:(?<=:)\d{1,3}(?:\.\d{1,3}){3})?(?:%[A-Za-z0-9_.]+)?(?![\w:]|\.\d)"
)


def _ipv4(m: re.Match[str]) -> _Span | None:
    if _VERSION_CONTEXT.search(m.string, max(0, m.start() - 10), m.start()):
        return None
    try:
        address = ipaddress.IPv4Address(m.group())
    except ValueError:
        return None
    # loopback and "any" name no one, and "bind 0.0.0.0, not 127.0.0.1" is a useful insight
    return None if address.is_loopback or address.is_unspecified else m.span()


def _ipv6(m: re.Match[str]) -> _Span | None:
    text = m.group()
    # "::" or all eight groups, and a digit: "dead::beef" and "std::" are words, "12:30" a time
    if not ("::" in text or text.count(":") == 7) or not any(c.isdigit() for c in text):
        return None
    try:
        address = ipaddress.IPv6Address(text.split("%")[0])
    except ValueError:
        return None
    return None if address.is_loopback or address.is_unspecified else m.span()


_PHONE = re.compile(_DIGIT_RUN.format(
    lead=r"(?:\+ ?)?", first=r"(?:\(\d++\)|\d++)", sep=r"(?: ?[.-] ?| |(?<=\))|(?=\())")
    # an extension: "+1-307-851-1637x265", "555-0199 ext. 12"
    + r"(?:\s?(?:x|ext\.?|extension)\s?\d{1,5}(?!\w))?")
_PHONE_CONTEXT = re.compile(
    r"\b(?:phone|tel|telephone|mobile|cell|fax|call|dial|sms|whatsapp|text|desk|extension|ext"
    r"|landline|hotline|reach|contact|number)"
    r"(?:\s+(?:me|us|them|him|her))?(?:\s+(?:at|on))?(?:\s*(?:number|no\.?|nr\.?|#))?"
    r"(?:\s+(?:is|was))?\s*[:.]?\s*$",
    re.IGNORECASE,
)


def _is_date(groups: list[str]) -> bool:
    """Whether digit groups begin with a date: 2024-05-01, 01.05.2024, 05/01/2024."""
    if len(groups) < 3:
        return False
    a, b, c = (int(g) for g in groups[:3])
    if len(groups[0]) == 4 and len(groups[1]) <= 2 and len(groups[2]) <= 2:
        return 1 <= b <= 12 and 1 <= c <= 31
    if len(groups[0]) <= 2 and len(groups[1]) <= 2 and len(groups[2]) == 4:
        return 1 <= min(a, b) <= 12 and 1 <= max(a, b) <= 31
    return False


def _national_shape(groups: list[str]) -> bool:
    """Whether separated digit groups without a "+" read as a phone number, not as a year
    range (2019-2024, 300-1200 ms), a grouped amount (12 345 678) or a version."""
    if len(groups) == 2:  # a trunk prefix and area code: 030-1234567, 0151 23456789
        return len(groups[0]) >= 2 and groups[0].startswith("0")
    if [len(g) for g in groups] == [1, 3, 3, 4]:
        return groups[0] == "1"  # 1-800-555-0199
    if any(len(g) < 2 for g in groups):
        return False
    if all(len(g) == 3 for g in groups[1:]):  # 12 345 678 and 100 000 000 are amounts
        return len(groups[0]) > 2 and "000" not in groups[1:]
    return True


def _phone(m: re.Match[str]) -> _Span | None:
    text = m.group()
    groups = re.findall(r"\d+", text)
    digits = sum(len(g) for g in groups)
    if not 7 <= digits <= 15 or _is_date(groups):
        return None
    if text.startswith("+"):
        return m.span()
    if re.fullmatch(r"[2-9]\d\d[2-9]\d{6}", text):
        return m.span()  # ten bare digits of a North American number: "4155550123"
    if _PHONE_CONTEXT.search(m.string, max(0, m.start() - 32), m.start()):
        return m.span()
    return m.span() if len(groups) >= 2 and _national_shape(groups) else None


# --- generic high-entropy tokens -----------------------------------------------------------

_TOKEN = re.compile(r"(?<![A-Za-z0-9_+/-])[A-Za-z0-9_+/-]{32,}=*(?![A-Za-z0-9_+/=-])")
_CHUNK = re.compile(r"[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
_LETTER_DIGIT = re.compile(r"[A-Za-z](?=[0-9])|[0-9](?=[A-Za-z])")


def _entropy(s: str) -> float:
    counts = Counter(s)
    return -sum(n / len(s) * math.log2(n / len(s)) for n in counts.values())


def _wordy(piece: str) -> bool:
    """Whether a piece of a slug reads as a word or two ("python3", "01T12", "getUserById"):
    random text breaks into many chunks, some a single character long."""
    chunks = _CHUNK.findall(piece)
    return len(chunks) <= 3 or all(len(c) >= 2 for c in chunks)


def _looks_random(token: str) -> bool:
    """Whether a long run of token characters is a random secret rather than words, a slug, a
    path or a code identifier (python3_11_site_packages, getUserByIdV2, x86_64-linux-gnu)."""
    if len(token) < 32 or _classes(token) < 2 or not any(c.isdigit() for c in token):
        return False
    alnum = "".join(c for c in token if c.isalnum())
    if all(c in "0123456789abcdefABCDEF" for c in alnum):
        # hex digests, UUIDs, token_hex(): random hex uses most of its 16 symbols, and ten of
        # them are digits ("deadbeefcafebabe..." is hex-looking English)
        digits = sum(c.isdigit() for c in alnum)
        return len(set(alnum.lower())) >= 10 and digits >= len(alnum) / 5
    pieces = [p for p in re.split(r"[_+/=-]", token) if p]
    if len(pieces) >= 3 and len(alnum) < 8 * len(pieces) and all(map(_wordy, pieces)):
        return False  # short words joined by separators
    # Random text switches case or between letters and digits every couple of characters;
    # words and identifiers have runs of letters.
    mixed_case = len(alnum) <= 3.2 * len(_CHUNK.findall(token)) and _entropy(token) >= 4.0
    single_case = (len(_LETTER_DIGIT.findall(token)) >= 0.15 * len(alnum)
                   and len(set(alnum.lower())) >= 12)
    return mixed_case or single_case


def _token(m: re.Match[str]) -> _Span | None:
    token = m.group()
    if token.count("/") * 12 < len(token) and not token.startswith(("/", "~/")):
        return m.span() if _looks_random(token) else None
    # a path: a token may be one of its segments ("/reset/<token>"), the path itself is not
    for segment in re.finditer(r"[^/]+", token):
        if _looks_random(segment.group()):
            return m.start() + segment.start(), m.start() + segment.end()
    return None


# --- the pipeline --------------------------------------------------------------------------

_DETECTORS = (
    _Detector("secret", _PRIVATE_KEY, _whole),
    _Detector("url_credentials", _URL_CREDENTIALS, _secret_group),
    _Detector("jwt", _JWT, _whole),
    _Detector("api_key", _PREFIXED_KEY, _prefixed_key),
    _Detector("api_key", _BEARER, _bearer),
    _Detector("secret", _AUTHORIZATION, _secret_group),
    _Detector("secret", _ASSIGNMENT, _assignment),
    _Detector("email", _EMAIL, _whole),
    # personal identifiers written in prose ("SSN 078051120", "door code 4821"), before the
    # digit runs below would take their numbers for phones or nothing
    *(_Detector(kind, pattern, judge) for kind, pattern, judge in personal_ids.DETECTORS),
    _Detector("iban", _IBAN, _iban),
    _Detector("card", _CARD, _card),
    _Detector("ip", _IPV6, _ipv6),  # before IPv4, which would take the tail of ::ffff:1.2.3.4
    _Detector("ip", _IPV4, _ipv4),
    _Detector("phone", _PHONE, _phone),
    _Detector("secret", _TOKEN, _token),
)


def _identifiers(identifiers: Iterable[str]) -> _Detector | None:
    """A detector for the tenant's own names: whole words, any case, longest first."""
    names: dict[str, str] = {}
    for name in identifiers:
        name = " ".join(name.split())
        if len(name) >= 3:
            names.setdefault(name.casefold(), name)
    if not names:
        return None
    ordered = sorted(names.values(), key=lambda n: (-len(n), n))
    body = "|".join(r"\s+".join(re.escape(w) for w in n.split()) for n in ordered)
    return _Detector("identifier", re.compile(rf"(?<!\w)(?:{body})(?!\w)", re.IGNORECASE), _whole)


def _free(text: str) -> Iterator[_Span]:
    """The stretches of text between placeholders, which alone may still hold findings."""
    start = 0
    for m in _PLACEHOLDER.finditer(text):
        yield start, m.start()
        start = m.end()
    yield start, len(text)


def _apply(detector: _Detector, text: str) -> tuple[str, int]:
    out: list[str] = []
    last = found = 0
    placeholder = f"[{detector.kind}]"
    for seg_start, seg_end in _free(text):
        pos = seg_start
        # searching the whole text (bounded by endpos) keeps the left context for lookbehinds
        while (m := detector.pattern.search(text, pos, seg_end)) is not None:
            span = detector.judge(m)
            if span is None:
                # a declined candidate may hide one that starts inside it ("XY12 DE89 ...")
                pos = m.start() + 1
                continue
            out += [text[last:span[0]], placeholder]
            last = pos = span[1]
            found += 1
    out.append(text[last:])
    return "".join(out), found


def _patterns(text: str, detectors: tuple[_Detector, ...], findings: Counter[str]) -> str:
    # Each replacement turns free text into a placeholder, so this ends; a later pass catches
    # what a replacement exposed (a second token segment in one path, say).
    while True:
        before = sum(findings.values())
        for detector in detectors:
            text, found = _apply(detector, text)
            if found:
                findings[detector.kind] += found
        if sum(findings.values()) == before:
            return text


def _people(text: str, names: NameFinder, findings: Counter[str]) -> str:
    """Names the detector finds outside placeholders become "[person]"."""
    out: list[str] = []
    last = 0
    for start, end in names.find(text):
        if _PLACEHOLDER.search(text, start, end) or start < last:
            continue
        out += [text[last:start], "[person]"]
        last = end
        findings["person"] += 1
    out.append(text[last:])
    return "".join(out)


def scrub(text: str, identifiers: Iterable[str] = (),
          names: NameFinder | None = None) -> Scrubbed:
    """The text with every finding replaced by its placeholder, and the count of each kind.

    `identifiers` name the tenant (its id, user and company names, ...): they are replaced as
    whole words in any case; those shorter than 3 characters are ignored. `names` finds
    people's names (`knowledge.ner.PresidioNames`); without it only patterns run.
    The text is NFKC-normalised first, so look-alike characters (a full-width at sign or
    digits) read as what they imitate.
    """
    # a lone string is one identifier, not an iterable of one-letter names
    named = _identifiers([identifiers] if isinstance(identifiers, str) else identifiers)
    detectors = (*_DETECTORS, named) if named else _DETECTORS
    findings: Counter[str] = Counter()
    text = _patterns(unicodedata.normalize("NFKC", text), detectors, findings)
    if names is not None:
        people = findings["person"]
        text = _people(text, names, findings)
        if findings["person"] > people:
            text = _patterns(text, detectors, findings)  # a name may have hidden a context
    return Scrubbed(text, {kind: n for kind, n in findings.items() if n})


def is_clean(text: str, identifiers: Iterable[str] = (), names: NameFinder | None = None) -> bool:
    """Whether scrub() would find nothing in the text."""
    return not scrub(text, identifiers, names).findings
