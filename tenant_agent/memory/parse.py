"""The host's parse of the tenant's words, as the agent reads it: tokens with their heads and
children, sentences, and the clauses of the speaker in them (a predicate whose subject is "I"
or "we", or the subject of the clause it is joined to), with what a predicate governs read
as phrases. What a clause says is tenant_agent/memory/structure.py's.

The parse is what core/parsing.py attaches to a pair (its `parse`: spaCy's tokens as [start,
end, lemma, pos, tag, dep, head, ent] and its sentences). Invariant: `read` never raises on a
malformed parse (it is then None), and a parse of other words than the turn's is None.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ms at every wake; only the type checker needs it
    from typing import Any

MAX_TOKENS = 2000
NUMBERS = {"a": 1, "an": 1, "one": 1, "single": 1, "two": 2, "three": 3, "four": 4, "five": 5,
            "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12,
            "couple": 2, "pair": 2, "both": 2, "twin": 2, "twins": 2}
PLACE_ENTS = ("GPE", "LOC", "FAC", "NORP")
TIME_ENTS = ("DATE", "TIME")


class Token:
    __slots__ = ("children", "dep", "ent", "head", "i", "lemma", "lower", "pos", "tag", "text")

    def __init__(self, i: int, text: str, lemma: str, pos: str, tag: str, dep: str,
                 head: int, ent: str) -> None:
        self.i, self.text, self.lower = i, text, text.lower()
        self.lemma, self.pos, self.tag, self.dep, self.head, self.ent = (
            lemma.lower(), pos, tag, dep, head, ent)
        self.children: list[Token] = []

    def kids(self, *deps: str) -> list[Token]:
        return [c for c in self.children if c.dep in deps]

    def kid(self, *deps: str) -> Token | None:
        return next((c for c in self.children if c.dep in deps), None)


class Parse:
    """The host's reading of the tenant's words: tokens (with their children) and sentences."""

    def __init__(self, text: str, tokens: list[Token], sents: list[tuple[int, int]]) -> None:
        self.text = text
        self.tokens = tokens
        self.sents = sents
        self.starts: list[int] = []

    def subtree(self, token: Token) -> list[Token]:
        out, todo = [], [token]
        while todo:
            current = todo.pop()
            out.append(current)
            todo.extend(current.children)
        return sorted(out, key=lambda t: t.i)


def read(payload: Any, words: str) -> Parse | None:
    """The parse the host attached to a pair, if it is a parse of `words`; None otherwise."""
    if not isinstance(payload, dict):
        return None
    text, raw, sents = payload.get("text"), payload.get("tokens"), payload.get("sents")
    if not (isinstance(text, str) and text.strip() and words.startswith(text)
            and isinstance(raw, list) and isinstance(sents, list)) or len(raw) > MAX_TOKENS:
        return None
    try:
        tokens = []
        for i, (start, end, lemma, pos, tag, dep, head, ent) in enumerate(raw):
            if not (0 <= int(start) <= int(end) <= len(text) and 0 <= int(head) < len(raw)):
                return None
            tokens.append(Token(i, text[int(start):int(end)], str(lemma), str(pos), str(tag),
                                str(dep), int(head), str(ent)))
        for token in tokens:
            if token.head != token.i:
                tokens[token.head].children.append(token)
        spans = [(int(a), int(b)) for a, b in sents if 0 <= int(a) < int(b) <= len(tokens)]
        parse = Parse(text, tokens, spans)
        parse.starts = [int(start) for start, *_ in raw]
        return parse
    except (TypeError, ValueError):
        return None


# -- one sentence ----------------------------------------------------------------------------

class Clause:
    """A predicate of the speaker: the verb (or copula), whether it is past, negated, said as a
    change, and the sentence's text; `implicit`: said without its subject ("started at …"),
    `group`: of a group the speaker is in ("the whole team has switched to …")."""

    def __init__(self, verb: Token, past: bool, negated: bool, sentence: str,
                 implicit: bool = False, group: bool = False) -> None:
        self.verb = verb
        self.past = past
        self.negated = negated
        self.sentence = sentence
        self.implicit = implicit
        self.group = group


ORDINALS = {"second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7,
            "eighth": 8, "ninth": 9, "tenth": 10, "2nd": 2, "3rd": 3, "4th": 4, "5th": 5}


def speaker(subject: Token | None) -> bool:
    """"I", "we", a pair the speaker is one of ("Noor and I", "my fiancée and I"), or the
    speaker's newest ("our third was born")."""
    return subject is not None and (subject.lower in ("i", "we") or any(
        c.lower in ("i", "me") for c in subject.kids("conj")) or (
        subject.lower in ORDINALS and any(c.dep == "poss" and c.lower in ("my", "our")
                                          for c in subject.children)))


# What a speaker belongs to, said as the subject of a change ("the whole team has switched to
# Kotlin"): a class of collective nouns, read only with a verb of changing.
GROUPS = frozenset(["team", "family", "household", "company", "office", "department", "firm",
                    "school", "everyone", "everybody", "crew", "squad", "lab", "group"])
CHANGE_VERBS = frozenset(["switch", "move", "change", "migrate", "convert", "transition",
                          "swap", "start", "begin", "join", "adopt", "drop", "go"])


def dropped_subject(parse: Parse, verb: Token) -> bool:
    """A statement said without its subject, which is the speaker's: "started at the council
    on Monday", "moved to VS Code last month", "starting Monday as a lab technician" (a verb
    in the past, or in progress, that opens its sentence; an imperative is in the base form
    and is no statement)."""
    if verb.dep not in ("ROOT", "advcl", "ccomp", "parataxis", "conj") or verb.tag not in (
            "VBD", "VBN", "VBG") or verb.kid("nsubj", "nsubjpass", "expl", "csubj") is not None:
        return False
    return not any(t.pos not in ("PUNCT", "INTJ", "ADV", "CCONJ", "SPACE") and t.dep not in (
        "aux", "auxpass", "neg") for t in parse.tokens[_sentence_start(parse, verb):verb.i])


def _sentence_start(parse: Parse, token: Token) -> int:
    return next((a for a, b in parse.sents if a <= token.i < b), 0)


_CLAUSE_DEPS = ("ROOT", "conj", "ccomp", "parataxis", "dep", "advcl")
_IF = frozenset(["if", "unless", "whether", "lest"])
# Verbs under which a clause is a wish, not a fact ("I'd love to live in Japan", "I hope I
# have kids").
_WISH = frozenset(["want", "wish", "hope", "dream", "plan", "intend", "imagine", "pretend",
                   "suppose", "consider"])


def predicates(parse: Parse, a: int, b: int) -> list[Token]:
    """Verbs that head a clause of the sentence that states something (not a condition, not
    under a wish)."""
    out = []
    for token in parse.tokens[a:b]:
        fragment = token.dep in ("acl", "relcl") and parse.tokens[token.head].dep == "ROOT" \
            and parse.tokens[token.head].pos not in ("VERB", "AUX") and token.kid("nsubj") \
            is not None  # "quick thing: I use they/them now", "since the reorg the team has …"
        if token.pos not in ("VERB", "AUX") or not (token.dep in _CLAUSE_DEPS or fragment):
            continue
        if any(m.lower in _IF for m in token.kids("mark")):
            continue
        if not wished(parse, token):
            out.append(token)
    return out


def wished(parse: Parse, token: Token) -> bool:
    for _ in range(8):
        if token.head == token.i:
            return False
        token = parse.tokens[token.head]
        if token.lemma in _WISH or any(a.lemma == "would" for a in token.kids("aux")):
            return True
    return False


def subject_of_verb(parse: Parse, verb: Token) -> Token | None:
    subject = verb.kid("nsubj", "nsubjpass", "expl")
    seen = 0
    while subject is None and verb.dep == "conj" and seen < 10:  # "… and came over for uni"
        verb = parse.tokens[verb.head]
        subject = verb.kid("nsubj", "nsubjpass")
        seen += 1
    return subject


def speaker_clause(parse: Parse, verb: Token, sentence: str) -> Clause | None:
    subject = subject_of_verb(parse, verb)
    implicit = subject is None and dropped_subject(parse, verb)
    group = subject is not None and subject.lemma in GROUPS and verb.lemma in CHANGE_VERBS \
        and not any(c.dep == "poss" and c.lower not in ("my", "our") for c in subject.children)
    if not (speaker(subject) or implicit or group):
        return None
    auxes = verb.kids("aux", "auxpass")
    if any((a.tag == "MD" and a.lemma not in ("can",)) or a.lemma == "to" for a in auxes):
        return None  # "I would be a teacher", "I'll live in Rome": no fact (the rules' plans)
    if verb.tag == "VBG" and any(a.lemma == "be" for a in auxes) and has_time(
            parse, verb, direct=True):
        return None  # "I'm moving to Rome next month": a plan ("I'm learning the cello,
                     # aiming for grade 2 next spring": a lasting one, the time is the aim's)
    past = verb.tag == "VBD" and not any(a.lemma == "have" for a in auxes)
    if verb.lemma == "use" and (x := verb.kid("xcomp")) is not None:  # "I used to be a …"
        verb, past = x, True
    negated = any(c.dep == "neg" for c in verb.children) or any(
        c.lower == "never" for c in verb.children)
    return Clause(verb, past, negated, sentence, implicit, group)


# What a time said inside another clause or a thing belongs to, not to the verb above it.
_OWN_CLAUSE = frozenset(["advcl", "ccomp", "xcomp", "conj", "relcl", "acl", "appos", "dobj",
                         "attr", "parataxis"])


def has_time(parse: Parse, verb: Token, direct: bool = False) -> bool:
    """Whether a time is said in what the verb governs; `direct`: of the verb itself, not of a
    clause or a thing under it."""
    for t in parse.subtree(verb):
        if not t.ent.endswith(TIME_ENTS):
            continue
        if not direct:
            return True
        current, own = t, True
        for _ in range(20):
            if current.i == verb.i or current.head == current.i:
                break
            if current.dep in _OWN_CLAUSE or (not current.ent.endswith(TIME_ENTS)
                                              and current.pos in ("NOUN", "PROPN", "NUM")):
                own = False  # said of a clause or a thing: "grade 3 this summer"
                break
            current = parse.tokens[current.head]
        if own:
            return True
    return False


def entity_phrase(parse: Parse, token: Token, cut: tuple[str, ...] = ("relcl", "punct",
                                                                      "prep")) -> str:
    """A name as the entity recogniser spans it ("Dunlow & Hart", whose parse joins "Hart" to
    "Dunlow" as a conjunct), else the phrase the token heads."""
    if not token.ent:
        return phrase_of(parse, token, cut)
    kind = token.ent[2:]
    first = token.i
    while first > 0 and parse.tokens[first].ent == f"I-{kind}":
        first -= 1
    last = token.i
    while last + 1 < len(parse.tokens) and parse.tokens[last + 1].ent == f"I-{kind}":
        last += 1
    span = [t for t in parse.tokens[first:last + 1] if not (t.dep == "det" and t.i == first)]
    return joined(parse, span) or phrase_of(parse, token, cut)


def phrase_of(parse: Parse, token: Token, cut: tuple[str, ...] = ("relcl", "punct")) -> str:
    """The phrase a token heads, without a leading article and what `cut` deps add."""
    keep: list[Token] = []
    todo = [token]
    while todo:
        current = todo.pop()
        keep.append(current)
        todo.extend(c for c in current.children if c.dep not in cut and c.dep != "cc"
                    and not (c.dep == "conj" and current is token))
    words = sorted(keep, key=lambda t: t.i)
    while words and ((words[0].dep == "det" and words[0].lower in ("a", "an", "the"))
                     or words[0].pos == "PUNCT"):
        words = words[1:]
    while words and words[-1].pos == "PUNCT":
        words = words[:-1]
    return joined(parse, words)


def joined(parse: Parse, words: list[Token]) -> str:
    """The words as written (their spacing from the text, not one space each)."""
    if not words:
        return ""
    first, last = words[0], words[-1]
    start = parse.starts[first.i]
    end = parse.starts[last.i] + len(last.text)
    text = parse.text[start:end]
    if len(words) != last.i - first.i + 1:  # a gap: join the kept words alone
        text = " ".join(w.text for w in words)
    return " ".join(text.split()).strip(" ,.;:!?\"'")


def head_phrase(parse: Parse, noun: Token) -> str:
    """A noun with its compounds and adjectives before it: "night nurse", "data scientist"."""
    before = [c for c in noun.children if c.i < noun.i and c.dep in ("compound", "amod")
              and c.lower not in ("former", "ex", "retired", "new", "old", "current")]
    words = [*sorted(before, key=lambda t: t.i), noun]
    return joined(parse, [w for w in words if w.i >= words[0].i])


def is_place(parse: Parse, token: Token) -> bool:
    """A place: named as one, or a phrase that names one ("a small village in Wales")."""
    return token.pos == "PROPN" or any(t.ent.endswith(PLACE_ENTS)
                                       for t in parse.subtree(token))


def prep_object(verb: Token, *preps: str) -> Token | None:
    for prep in verb.kids("prep"):
        if prep.lower in preps:
            obj = prep.kid("pobj")
            if obj is not None:
                return obj
    return None


def count_of(noun: Token) -> int | None:
    for c in noun.children:
        if c.dep == "nummod" or (c.dep in ("det", "quantmod", "amod") and c.lower in NUMBERS):
            if c.lower.isdigit():
                return int(c.lower)
            if c.lower in NUMBERS:
                return NUMBERS[c.lower]
    return None


def from_subject(parse: Parse, clause: Clause) -> str:
    """The clause from its subject on, without what came before it ("These days, I prefer
    coffee" -> "I prefer coffee") and without the clauses joined to it: for the rules."""
    verb = clause.verb
    subject = subject_of_verb(parse, verb)
    if subject is None:
        return ""
    keep = [t for t in parse.subtree(verb) if t.i >= subject.i]
    cut = {t.i for c in verb.children if c.dep in ("conj", "cc", "parataxis", "advcl")
           and c.i > verb.i for t in parse.subtree(c)}
    words = [t for t in keep if t.i not in cut and not (t.i > verb.i and t.dep == "punct")]
    if subject.i > verb.i or subject not in words:  # inverted or borrowed: keep the order
        words = [subject, *[t for t in words if t is not subject]]
    return joined(parse, words)
