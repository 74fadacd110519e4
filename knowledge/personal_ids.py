"""Structured personal identifiers that people write in prose, found by patterns: e-mail
addresses written to dodge filters, social security and passport numbers, dates of birth,
door and alarm codes, household passwords, street addresses and postcodes.

Each detector is (kind, pattern, judge) for `knowledge.scrub`'s pipeline; a judge returns the
span to replace or None. Patterns are anchored on the words people put before such values
("born", "SSN", "door code", "wifi password"), because the bare values (a date, eight digits,
a word) are everywhere in general knowledge; street addresses are anchored on their shape (a
house number, capitalised words and a street type). Names and places without such shape are
the NER detector's (`knowledge.ner`).
"""

from __future__ import annotations

import re
from collections.abc import Callable

Span = tuple[int, int]
Judge = Callable[[re.Match[str]], Span | None]

# Top-level domains a spelled-out address ends with ("john dot doe at gmail dot com"); only
# these, because "look at the config dot file" is prose.
_TLDS = ("com|org|net|io|edu|gov|co|uk|de|fr|es|it|nl|be|ch|at|se|no|dk|fi|pl|ru|рф|jp|cn|in"
         "|br|ca|au|us|info|biz|me|ai|app|dev|mail|eu|ie|pt|cz|mx|ar|nz|za|tv|xyz")

_AT = r"(?:\s*[\[(<{]\s*(?:at|@)\s*[\])>}]\s*|\s+(?:at|AT)\s+|\s*@\s+|\s+@\s*)"
_DOT = r"(?:\s*[\[(<{]\s*(?:dot|\.)\s*[\])>}]\s*|\s+(?:dot|DOT)\s+|\.)"
_LABEL = r"[^\W_][\w-]*"
# "john.doe @ gmail.com", "john [at] example [dot] com", "john dot doe at gmail dot com"
OBFUSCATED_EMAIL = re.compile(
    rf"(?<![\w.%+-])[\w%+-]+(?:{_DOT}[\w%+-]+)*{_AT}{_LABEL}(?:{_DOT}{_LABEL})*?"
    rf"{_DOT}(?:{_TLDS})(?![\w-])",
    re.IGNORECASE,
)


def obfuscated_email(m: re.Match[str]) -> Span | None:
    # A plain address is the e-mail detector's; this one takes what it cannot see.
    return m.span() if not re.fullmatch(r"[\w.%+-]+@[\w.-]+", m.group()) else None


def _group(name: str) -> Judge:
    def judge(m: re.Match[str]) -> Span | None:
        start, end = m.span(name)
        return (start, end) if end > start else None
    return judge


# US social security numbers; with a word that names one, also other countries' numbers (UK
# National Insurance "QQ 12 34 56 C", French INSEE "1 84 12 76 451 089 46")
SSN = re.compile(
    r"(?<![\w-])(?:SSN|SSN#|SS#|social\s+security(?:\s+(?:number|no\.?|#))?|national\s+insurance"
    r"(?:\s+(?:number|no\.?))?|NI\s+number|NINO|NIR|INSEE|tax\s+(?:id|number)|TIN)"
    r"(?:\s+(?:is|was|number|no\.?))?\s*[:#=]?\s*"
    r"(?P<value>(?=[A-Z\d -]*\d{2}[ -]?\d{2})[A-Z]{0,2}\s?\d[\d -]{4,20}\d(?:\s?[A-D](?!\w))?)"
    r"(?![\w-])"
    r"|(?<![\w.-])(?P<dashed>(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4})(?![\w-])"
    r"|(?<![\w-])(?P<nino>[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D])"
    r"(?![\w-])",
    re.IGNORECASE,
)


def ssn(m: re.Match[str]) -> Span | None:
    name = next(g for g in ("value", "dashed", "nino") if m.group(g) is not None)
    return m.span(name)


_DOCUMENT = (r"passport|driver'?s?\s+licen[cs]e|licen[cs]e\s+(?:number|no\.?|#)|national\s+id"
             r"|id\s+card|id\s+number|identity\s+card|tax\s+id|personal\s+id")
PASSPORT = re.compile(
    rf"(?<!\w)(?:{_DOCUMENT})(?:\s+(?:number|no\.?|nr\.?|#))?(?:\s+(?:is|was))?\s*[:#=]?\s*"
    r"(?P<value>(?=[A-Z0-9-]*\d)[A-Z0-9][A-Z0-9-]{4,14}[A-Z0-9])(?![\w-])",
    re.IGNORECASE,
)

_MONTH = (r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
          r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?")
_DATE = (r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}"
         rf"|(?:\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?)?{_MONTH}(?:\s+\d{{1,2}}(?:st|nd|rd|th)?)?"
         r",?\s+\d{4}")
BIRTH_DATE = re.compile(
    r"(?<!\w)(?:born(?:\s+(?:on|in))?|birth\s*day(?:\s+(?:is|was|on))?"
    r"|date\s+of\s+birth(?:\s+(?:is|was))?|d\.?o\.?b\.?|birth\s*date(?:\s+(?:is|was))?)"
    rf"\s*[:=-]?\s*(?P<value>{_DATE})(?!\d)",
    re.IGNORECASE,
)

_LOCK = (r"door|front\s+door|gate|garage|alarm|lock|locker|safe|entry|entrance|access|building"
         r"|keypad|key\s*box|lockbox|padlock|security|bike\s+lock|apartment|flat|house|office")
ACCESS_CODE = re.compile(
    rf"(?<!\w)(?:(?:{_LOCK})\s+(?:code|pin|combination|combo|passcode)|pin(?:\s+code)?"
    r"|passcode)(?:\s+(?:is|was|number))?\s*[:=#]?\s*(?P<value>\d{3,10}|[A-Z0-9]*\d[A-Z0-9]*#?)"
    r"(?![\w-])",
    re.IGNORECASE,
)

# A word after "password is" that describes a password rather than being one.
_STATE = re.compile(
    r"(?:[a-z]+(?:ed|ing|ly|able|ible|ive|ous|ful|less|ent|ant|ion|ity)|required|optional|wrong"
    r"|incorrect|invalid|correct|empty|set|reset|new|old|weak|strong|long|short|blank|same"
    r"|different|secret|private|public|unknown|known|missing|case|too|not|never|always|only"
    r"|still|now|also|just|then|usually|often|the|a|an|at|in|on|of|to|for|from|with|by|your"
    r"|our|their|my|his|her|its|this|that|what|which|null|none|nil|true|false|undefined"
    r"|visible|hidden|shown|stored|sent|hashed|salted|checked|good|bad|ok|okay|fine|simple)",
    re.IGNORECASE,
)
_SECRET_HOLDER = (r"(?:wi-?fi|wlan|router|network|wireless|hotspot|guest|home|house|email|mail"
                  r"|account|login|laptop|computer|phone|admin|root|user)")
HOUSEHOLD_PASSWORD = re.compile(
    rf"(?<!\w)(?:(?P<holder>{_SECRET_HOLDER})\s+)?(?:password|passphrase|passwd|pw|key|pass)"
    r"\s+(?:is|was|=|:)\s*(?P<q>[\"'\u201c\u2018]?)(?P<value>[^\s\"'\u201d\u2019,;]+?)(?P=q)(?=[\s,;.!?\"'\u201d\u2019]|$)",
    re.IGNORECASE,
)


def household_password(m: re.Match[str]) -> Span | None:
    value = m.group("value").rstrip(".!?:")
    word = m.group(0).lower()
    is_key_word = re.search(r"\b(?:key|pass)\s", word) is not None
    if not value or value.startswith("["):
        return None  # already a placeholder
    if is_key_word and m.group("holder") is None:
        return None  # "the key is X", "pass is Y": prose, not a password
    if _STATE.fullmatch(value):
        return None
    start = m.start("value")
    return start, start + len(value)


_STREET_TYPES = (
    "Street|St|Road|Rd|Avenue|Ave|Av|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Place|Pl|Square"
    "|Sq|Terrace|Ter|Way|Parkway|Pkwy|Highway|Hwy|Close|Crescent|Cres|Gardens|Gdns|Row|Alley"
    "|Circle|Cir|Trail|Trl|Path|Walk|Mews|Grove|Hill|Hills|Heights|Park|Plaza|Loop|Run|Pike"
    "|Point|Pt|Ridge|Crossing|Xing|Expressway|Expy|Freeway|Fwy|Turnpike|Tpke|Route|Rte"
    "|Junction|Jct|Station|Sta|Center|Ctr|Creek|Valley|View|Vista|Village|Villages|Manor|Mall"
    "|Meadow|Meadows|Mill|Mills|Pass|Port|Springs?|Summit|Track|Trace|Tunnel|Union|Via|Well"
    "|Wells|Camp|Canyon|Cape|Causeway|Cliffs?|Common|Corners?|Course|Cove|Crest|Dale|Divide"
    "|Estates?|Extensions?|Falls?|Ferry|Fields?|Flats?|Fords?|Forest|Forge|Forks?|Fort|Glens?"
    "|Greens?|Harbor|Harbour|Haven|Hollow|Inlet|Island|Isle|Keys?|Knolls?|Lakes?|Landing|Lights?"
    "|Lock|Lodge|Mount|Mountain|Neck|Orchard|Oval|Overpass|Pines?|Plains?|Prairie|Ranch"
    "|Rapids?|Rest|River|Shoals?|Shores?|Skyway|Spur|Stream|Stravenue|Throughway|Trafficway"
    "|Underpass|Viaduct|Ville|Wall|Ways|Strasse|Straße|Gasse|Weg|Platz|Allee|Rue|Calle|Via|Viale"
    "|Ramp|Mission|Burg|Radial|Bypass|Annex|Arcade|Bluff|Bottom|Branch|Bridge|Brook|Curve|Dam"
    "|Gateway|Garden|Motorway|Shore|Stream|Heights|Parks|Squares"
)
_CAP = r"[A-Z][\w'\u2019.-]*"
_CITY = r"[A-Z][a-z][\w'\u2019-]*"
_POSTCODE = (r"(?:[A-Z]{1,2}\d[A-Z\d]?\s*\d[A-Z]{2}"  # UK: NW1 6XE
             r"|(?:[A-Z]{2}\s+)?\d{5}(?:-\d{4})?"      # US: IL 62704, 94103-1234
             r"|\d{4,5})")                              # most of Europe
_EU_STREET = (r"(?i:stra(?:ss|ß)e|str\.|gasse|weg|platz|allee|ring|damm|ufer|steig|pfad"
              r"|chaussee|markt|hof)")
_LATIN_STREET = (r"(?i:Calle|Avenida|Av\.|Plaza|Paseo|Glorieta|Ronda|Acceso|Cuesta|Vial|Camino"
                 r"|Carrera|Callej[oó]n|Pasaje|Rambla|Traves[ií]a|Urbanizaci[oó]n|Alameda|Carretera"
                 r"|Rua|Rue|Avenue|Boulevard|Bd|Chemin|Impasse|All[ée]e|Place|Quai|Route|Cours"
                 r"|Square|Sentier|Via|Viale|Piazza|Corso|Largo|Vicolo)")
STREET_ADDRESS = re.compile(
    # a house number, one to four capitalised words, a street type
    rf"(?<![\w.,/-])\d{{1,6}}[A-Za-z]?(?:-\d{{1,4}})?,?\s+(?:{_CAP}\s+){{0,3}}{_CAP}?\s*"
    rf"(?:{_STREET_TYPES})s?\b\.?"
    # then an apartment, a city, a region and a postcode, when written
    r"(?:,?\s+(?:Apt|Apartment|Suite|Ste|Unit|Flat|Floor|Fl|#)\.?\s*#?\w{1,6})?"
    rf"(?:,?\s*\n?\s*(?!(?:And|But|Or|Is|Was|The)\b){_CITY}(?:\s+{_CITY}){{0,2}})?"
    rf"(?:,?\s+{_POSTCODE}(?![\w-]))?"
    # a street named first, European style: "Hauptstraße 5", "Rue de Rivoli 12"
    rf"|(?<![\w-])[A-Z][\w'\u2019-]*{_EU_STREET}\s+\d{{1,5}}[a-z]?(?:[/-]\d{{1,4}})?(?![\w-])"
    rf"(?:,?\s+\d{{4,5}}\s+{_CAP}(?:\s+{_CAP})?)?"
    # Spanish, French, Italian, Portuguese: "Calle de Ana Ruiz 12 Piso 3", "12, rue de la Paix"
    rf"|(?<![\w-])(?:\d{{1,5}}(?:\s*bis|\s*ter)?,?\s+)?{_LATIN_STREET}\s+(?:(?:de|del|de la|des|du"
    rf"|la|le|les|di|da|do|dos|das)\s+)?(?:{_CAP}\s+){{0,3}}{_CAP}"
    r"(?:,?\s+\d{1,5}[A-Za-z]?(?:\s+(?:Puerta|Piso|Esc\.?|Bajo|Apt\.?)\s*\w{1,3})*)?"
    rf"(?:\s*,\s*{_CITY}(?:\s+(?:de|del|la|de la)?\s*{_CITY}){{0,3}})?(?:,?\s+\d{{4,5}})?"
    # US and military mail: "PSC 1234, Box 5678, APO AA 12345", "USNS Green, FPO AE 26947"
    r"|(?<![\w-])(?:PSC|Unit|USNS|USNV|USS|USCGC|CMR)\s+\w+(?:\s+\w+)?(?:,?\s+Box\s+\d+)?,?\s+"
    r"(?:APO|FPO|DPO)\s+A[AEP]\s+\d{5}"
    # any house number, words, a city and a state with its ZIP: "63387 Simon Burgs, Town, UT 79817"
    rf"|(?<![\w.,/-])\d{{1,6}}\s+(?:{_CAP}\s+){{1,3}}?{_CAP}(?:\s+(?:Apt|Suite)\.?\s+\d+)?,"
    rf"\s*{_CITY}(?:\s+{_CITY}){{0,2}},\s*[A-Z]{{2}}\s+\d{{5}}(?:-\d{{4}})?(?!\d)"
    # and a UK one: "36 Matthew Islands, Yvonneview, W1 1PY"
    rf"|(?<![\w.,/-])\d{{1,6}}\s+(?:{_CAP}\s+){{1,3}}?{_CAP},\s*{_CITY}(?:\s+{_CITY}){{0,2}},"
    r"\s*[A-Z]{1,2}\d[A-Z\d]?\s*\d[A-Z]{2}(?![\w-])",
)
POSTCODE_CONTEXT = re.compile(
    r"(?<!\w)(?:post\s*code|postal\s+code|zip(?:\s+code)?)\s*(?:is|was)?\s*[:#]?\s*"
    rf"(?P<value>{_POSTCODE})(?![\w-])",
    re.IGNORECASE,
)

# Spans to replace, most specific first; each is (kind, pattern, judge).
DETECTORS: tuple[tuple[str, re.Pattern[str], Judge], ...] = (
    ("email", OBFUSCATED_EMAIL, obfuscated_email),
    ("ssn", SSN, ssn),
    ("passport", PASSPORT, _group("value")),
    ("birth_date", BIRTH_DATE, _group("value")),
    ("access_code", ACCESS_CODE, _group("value")),
    ("secret", HOUSEHOLD_PASSWORD, household_password),
    ("address", STREET_ADDRESS, lambda m: m.span()),
    ("address", POSTCODE_CONTEXT, _group("value")),
)
