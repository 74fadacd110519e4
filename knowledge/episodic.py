"""Whether a statement is episodic (what happened to someone, somewhere, around the time it was
said) rather than durable, general knowledge, read from spaCy's parse of it: the tense and
aspect of its main clause, its time expressions (the entity recogniser's DATE and TIME), its
dependency tree, and the model's word vectors. Many tenants saying "the bus was late again this
morning" is gossip, not knowledge: episodic statements are never insights however many say
them. `why(doc)` names the kind, or None for a statement that may be knowledge:

    now       anchored to the time of speaking: a time phrase that points at it (a bare time
              noun used as an adverb, "today", "last night", "this morning", "tonight", or one
              with a demonstrative, "since this morning"), or an adverb that places it on the
              speaker's own timeline ("again", "lately", "recently", "currently", "anymore").
              A time that recurs does not ("at night", "every week", "on Mondays", "in
              winter", "a few hours after feeding"), nor a number ("in 2020", "after 30 days").
    event     the main clause in the past or perfect (a single past event or state: "the power
              went out", "a tree fell across the road", "missed the bus") about particular,
              unnamed things. Kept: the past of something named (a product, a version, an
              acronym: "Python 3.12 removed distutils"), of an action ("raising the limit fixed
              the rebalances"), or of anyone ("... moved ahead of your local branch").
    ongoing   the main clause progressive (happening as it is said: "traffic is crawling",
              "they are still repairing the lift"), about unnamed things.
    mood      a feeling (a predicate whose vector is near words of feeling, said of people or
              of no one: "everyone seems exhausted", "feeling pretty down"), the air around
              the speaker ("it is so humid"), or a time as the topic itself ("Mondays are the
              worst", "another grey and rainy day", "some users prefer lazy weekends").

    personal  told of the teller (`told`) and no part of a fact: what the teller or people
              are, do or feel ("I need a holiday", "the manager's off with the cold"),
              unless a cause or a fix (`knowledge.parts`). Judged where the part is known
              (`knowledge.reading`).
    news      told of a particular place, business or person that the entity recogniser
              names (FAC, GPE, LOC, EVENT, ORG, PERSON in title case: "the bakery on Harbour
              Street", "heard Crumb & Co is closing", "the Velnet outage"), or on a named day
              ("Tuesday's hail"): local news, however practical it sounds. A technical name
              (an acronym, a version, "DNS", "5GHz") is no place.

A statement is *told* (`told`) when it speaks of the teller (the first person) or of particular
things the teller knows rather than of a kind: a definite, demonstrative or possessed subject
("the bus has always been late", "the dog next door howls whenever they go out", "there's a
cold going round the office"), unless something in it names a kind (a named or technical
thing, a bare plural or mass noun it is of: "the white film on dishwasher glasses", or
"you"). A told statement may be the symptom, cause or fix of a fact told in parts, but alone it
is a complaint or a story: it shows only beside another part (`knowledge.clusters`). A past
told statement is no event when it explains what happened to a thing ("…, so it drained the
battery overnight", "… froze it because a foreign payment showed up"), not to people ("…, so
I got a taxi"), or says what the teller's action did ("once I watered every evening, the new
trusses came through clean"); an adverb of the timeline in the result of an action is that
result ("I scraped it out and the cable clicks in again").
A named day points at now, whoever speaks ("the derby is on Saturday", "Tuesday's hail"); a
day that recurs ("on Saturdays") does not.

Advice and statements of what is generally so pass whatever their topic ("car batteries lose
capacity in cold weather", "during a power cut keep the fridge shut"); an imperative or a modal
is episodic only when anchored to now ("avoid the ring road today").

The word classes named here are grammar (the deictic adverbs, the copular verbs), not topics;
the only lexical knowledge is the model's: its tagger, parser, entity recogniser and vectors
(and the few seed words of each prototype it is compared with). It runs on the host, where the
pipeline is (`knowledge.reading`); the agent in the box reads the host's judgement of the
sentences of each delivered pair (core/episodes.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

KINDS = ("now", "event", "ongoing", "mood", "personal", "news")

# Adverbs that place what is said on the speaker's timeline rather than in general; the weak
# ones only in a main clause about something unnamed ("rows already deleted" is general).
_TIMELINE = frozenset({"again", "lately", "recently", "currently", "anymore", "nowadays"})
_TIMELINE_WEAK = frozenset({"already", "finally"})
# Prepositions that bound a state by a time ("closed until March", "since Monday").
_BOUNDS = frozenset({"until", "till", "since"})
# Linking verbs: "X is/seems/feels/looks/gets Y" says Y of X.
_LINKING = frozenset({"be", "seem", "feel", "look", "get", "become", "stay", "sound", "appear",
                      "remain", "go", "grow", "turn"})
# Determiners that make a time recur ("every week") or span ("all day"), not point at now, and
# quantifiers that make it a measure ("more years").
_RECURRING = frozenset({"every", "each", "any", "all", "most", "some", "no", "more", "few",
                        "fewer", "many", "several", "less"})
# Adverbs of frequency: what usually happens is general ("index funds usually beat …").
_HABITUAL = frozenset({"usually", "often", "always", "generally", "typically", "normally",
                       "sometimes", "rarely", "seldom", "frequently", "commonly"})
# Verbs of taste: "some users prefer lazy weekends" is a taste for a time, not knowledge.
_TASTE = frozenset({"prefer", "avoid", "like", "love", "enjoy", "hate", "dislike", "adore"})
# Seeds of the prototypes compared in the model's vector space: a predicate is a feeling when
# its vector is near the mean of the feelings', a subject is people when near the people's, a
# noun is a time of day, week or year when near the times'.
_FEELINGS = ("tired", "exhausted", "happy", "sad", "angry", "bored", "stressed", "grumpy",
             "excited", "worried", "annoyed", "lonely", "sleepy", "upset")
_PEOPLE = ("people", "everyone", "person", "kids", "colleagues", "neighbours", "friends",
           "family", "folks")
_TIMES = ("morning", "evening", "afternoon", "night", "weekend", "monday", "friday", "sunday",
          "summer", "winter", "holiday")
FEELING_SIMILARITY = 0.5
PEOPLE_SIMILARITY = 0.55
TIME_SIMILARITY = 0.6


def _unit(vector: Any) -> Any:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm else vector


def _prototype(vocab: Any, seeds: Iterable[str]) -> Any:
    return _unit(np.mean([_unit(vocab[w].vector) for w in seeds], axis=0))


def _near(token: Any, prototype: Any, threshold: float) -> bool:
    vector = token.vector if token.has_vector else None
    return vector is not None and float(_unit(vector) @ prototype) >= threshold


class Prototypes:
    """The prototypes in a pipeline's vector space."""

    def __init__(self, vocab: Any) -> None:
        self.feeling = _prototype(vocab, _FEELINGS)
        self.people = _prototype(vocab, _PEOPLE)
        self.time = _prototype(vocab, _TIMES)


def _named(tokens: Iterable[Any]) -> bool:
    """A named or technical thing among `tokens`: a proper noun, an acronym, a number or
    version, a code name ("max.poll.interval.ms", "shared_buffers", "--user")."""
    for t in tokens:
        text = t.text
        if t.pos_ == "PROPN" and t.ent_type_ not in ("DATE", "TIME"):
            return True
        if t.like_num or any(c.isdigit() for c in text):
            return True
        if len(text) > 1 and (text.isupper() or any(c in "._/-" for c in text.strip("-"))
                              or text.startswith("--")):
            return True
    return False


def _children(token: Any, *deps: str) -> list[Any]:
    return [c for c in token.children if c.dep_ in deps]


def _subject(root: Any) -> list[Any]:
    return _children(root, "nsubj", "nsubjpass", "csubj", "csubjpass", "expl")


def _present_elsewhere(sent: Any, root: Any) -> bool:
    """A finite present verb or a modal in the sentence besides the root's clause: the root
    is then no single past event, or the parser took a gerund subject for the root
    ("Rinsing rice before cooking removes starch")."""
    return any((t.tag_ in ("VBZ", "VBP", "MD") and t.head.i != root.i)
               or (t.tag_ in ("VBZ", "VBP") and t.dep_ not in ("aux", "auxpass"))
               for t in sent if t.i != root.i)


def _ambiguous_past(verb: Any, subject: list[Any]) -> bool:
    """A verb whose past is its base ("beat", "let", "set", "put") after a subject that takes
    the base in the present ("index funds usually beat active funds")."""
    return verb.lower_ == verb.lemma_.lower() and bool(subject) and (
        subject[0].tag_ in ("NNS", "NNPS") or subject[0].lower_ in ("i", "we", "you", "they"))


def _aspect(root: Any) -> str:
    """past | perfect | progressive | present | modal | imperative | fragment (no finite
    verb) of the main clause."""
    auxes = _children(root, "aux", "auxpass")
    subject = _subject(root)
    if any(a.tag_ == "MD" for a in auxes):
        return "modal"
    if any(a.lemma_ == "have" and a.tag_ in ("VBZ", "VBP") for a in auxes) \
            and root.tag_ in ("VBN", "VBG"):
        return "perfect" if root.tag_ == "VBN" else "progressive"
    finite = auxes[0] if auxes else root
    if finite.tag_ == "VBD":
        return "present" if _ambiguous_past(finite, subject) else "past"
    if root.tag_ == "VBG" and any(a.lemma_ == "be" for a in auxes):
        return "progressive"
    if finite.tag_ in ("VBZ", "VBP"):
        return "present"
    if root.tag_ == "VB" and not subject:
        return "imperative"
    if not subject and not auxes and root.tag_ == "VBN" and not _named(root.sent):
        return "past"  # what the speaker went through, unsaid: "Stuck in traffic."
    return "fragment"


def _timeline(sent: Any, generic: bool) -> bool:
    """An adverb that places the clause on the speaker's timeline ("broken again"), not in
    advice ("push again")."""
    root = sent.root
    for token in sent:
        word = token.lower_
        if token.dep_ != "advmod" or token.head.tag_ == "VB":
            continue
        head = token.head
        if word in _TIMELINE:
            if result_of(head, root):
                continue  # "I scraped it out and the cable clicks in again"
            return True
        finite = head.tag_ in ("VBD", "VBZ", "VBP") or bool(_children(head, "aux", "auxpass"))
        main = head.i == root.i or (head.dep_ in ("ccomp", "conj") and head.head.i == root.i)
        if word in _TIMELINE_WEAK and not generic and finite and main:
            return True  # not "ones already pushed"
    return False


def _points_at_now(sent: Any, generic: bool) -> bool:
    """A time phrase that points at the time of speaking, or a timeline adverb."""
    if _timeline(sent, generic):
        return True
    if sent.root.tag_ == "VBG" and not _subject(sent.root) and any(
            t.dep_ == "det" and "Dem" in t.morph.get("PronType") for t in sent):
        return True  # "Loving this weather."
    for ent in sent.ents:
        if ent.label_ not in ("DATE", "TIME") or any(c.isdigit() for c in ent.text):
            continue
        tokens = list(ent)
        if any(t.like_num or t.dep_ == "nummod" for t in tokens):
            continue  # a duration: "for three hours"
        if any(t.lower_ in _RECURRING for t in tokens):
            continue
        if any("Dem" in t.morph.get("PronType") for t in tokens):
            return True  # "this morning", "since this week"
        head = ent.root
        if head.dep_ == "npadvmod" and head.tag_ in ("NN", "NNP") and not any(
                c.dep_ == "det" for c in head.children):
            return True  # "today", "last night", "yesterday", "tonight"; not "a week before"
        if head.dep_ == "pobj" and head.head.lower_ in _BOUNDS:
            return True  # "closed until March", "since Monday"
        if head.dep_ == "pobj" and head.head.lower_ == "on" and head.tag_ == "NNP":
            return True  # a coming event on a named day: "the derby is on Saturday"
    return False


def _time_as_topic(sent: Any, root: Any, prototypes: Prototypes) -> bool:
    """A time is what the statement is about: its subject or object ("Mondays are the worst"),
    what its subject belongs to ("weekend plans are …"), what a taste is for ("some users
    prefer lazy weekends", "… tea in the afternoon"), or
    all of a verbless one ("Another grey and rainy day")."""
    times = [e for e in sent.ents if e.label_ in ("DATE", "TIME")
             and not any(t.like_num or t.tag_ == "CD" or t.lower_ in _RECURRING for t in e)
             and not (len(e) == 1 and e[0].tag_ == "NNS" and e[0].is_lower)]  # "saves hours"
    if not any(t.pos_ in ("VERB", "AUX") for t in sent):
        heads = {root.i, *(c.i for c in _children(root, "conj"))}
        return any(e.start <= i < e.end for e in times for i in heads)
    arguments = [c for c in root.children
                 if c.dep_ in ("nsubj", "nsubjpass", "dobj", "attr")]
    for xcomp in _children(root, "xcomp"):
        arguments += _children(xcomp, "dobj")
    if any(e.start <= a.i < e.end for a in arguments for e in times):
        return True
    if any(m.dep_ in ("compound", "poss") and m.pos_ in ("NOUN", "PROPN") and not m.like_num
           and (any(e.start <= m.i < e.end for e in times)
                or _near(m, prototypes.time, TIME_SIMILARITY))
           for a in _subject(root) for m in a.children):
        return True  # the subject is a time's: "weekend plans are …", "Sunday's match is …"
    if root.lemma_.lower() not in _TASTE:
        return False
    tasted = [t for c in root.children if c.dep_ in ("dobj", "xcomp", "prep") for t in c.subtree
              if t.pos_ in ("NOUN", "PROPN") and not t.like_num]
    return any(any(e.start <= t.i < e.end for e in times)
               or (not (t.tag_ == "NNS" and not list(t.children))  # not a measure
                   and _near(t, prototypes.time, TIME_SIMILARITY)) for t in tasted)


def _people(subject: list[Any], prototypes: Prototypes) -> bool:
    """No subject (the speaker, unsaid), or one that is people, not a named thing or "it"."""
    if not subject:
        return True
    head = subject[0]
    if head.lower_ == "it" or _named(head.subtree):
        return False
    if head.pos_ == "PRON":
        return True
    return _near(head, prototypes.people, PEOPLE_SIMILARITY) or bool(
        head.morph.get("PronType"))


def _mood(root: Any, subject: list[Any], prototypes: Prototypes) -> bool:
    """A feeling of people, or the air ("it is so humid": "it" with a bare adjective)."""
    linking = root.lemma_ in _LINKING or root.tag_ == "VBG"
    if not linking:
        return False
    complements = _children(root, "acomp", "oprd", "attr", "advmod")
    if root.tag_ in ("VBN", "JJ"):
        complements.append(root)
    feeling = [c for c in complements if c.pos_ in ("ADJ", "VERB", "ADV")
               and _near(c, prototypes.feeling, FEELING_SIMILARITY)]
    if feeling and _people(subject, prototypes):
        return True
    ambient = (len(subject) == 1 and subject[0].lower_ == "it" and root.lemma_ == "be"
               and _children(root, "acomp")
               and not _children(root, "xcomp", "ccomp", "csubj", "advcl", "prep"))
    return bool(ambient)


def _generic(sent: Any, subject: list[Any]) -> bool:
    """Said of anything of its kind: a named or technical subject, an action as the subject
    ("raising the limit fixed it"), anyone ("your", "you"), or what usually happens."""
    if any(t.lower_ in ("you", "your", "yours") or t.lower_ in _HABITUAL for t in sent):
        return True
    if not subject:
        return False
    head = subject[0]
    return _named(head.subtree) or head.tag_ == "VBG" or head.dep_ in ("csubj", "csubjpass")


def why(doc: Any, prototypes: Prototypes) -> str | None:
    """The kind of episode the parsed statement `doc` is, or None (see the module's
    docstring). A statement of several sentences is episodic when any of them is."""
    if named_day(doc):
        return "now"
    for sent in doc.sents:
        root = sent.root
        aspect = _aspect(root)
        subject = _subject(root)
        generic = _generic(sent, subject)
        if _points_at_now(sent, generic):
            return "now"
        if aspect in ("imperative", "modal") or generic:
            continue
        if _mood(root, subject, prototypes) or _time_as_topic(sent, root, prototypes):
            return "mood"
        if aspect in ("past", "perfect", "progressive") and _present_elsewhere(sent, root):
            continue
        if aspect in ("past", "perfect") and (explains(sent, prototypes) or once_did(sent)):
            continue
        if aspect in ("past", "perfect"):
            return "event"
        if aspect == "progressive":
            return "ongoing"
    return None


def speaker(token: Any) -> bool:
    """The teller: a pronoun in the first person ("I", "my", "we", "us")."""
    return token.pos_ == "PRON" and "1" in token.morph.get("Person")


def _kind_named(tokens: Iterable[Any]) -> bool:
    """A named or technical thing among `tokens`, a bare number aside ("the 12 bus" is one
    bus)."""
    return _named(t for t in tokens if not t.like_num)


def _thing(subject: list[Any], prototypes: Prototypes) -> bool:
    """A subject that is a thing, not the teller, the listener or people ("it" and "they"
    may be things)."""
    if not subject:
        return False
    return not _someone(subject[0], prototypes)


def _clause_after(token: Any, root: Any) -> Any:
    """The verb of the clause a connective ("so") opens: its head, or the main clause when
    the parser made what comes before it a complement ("the garage found …, so it drained
    everything": "drained" is the root)."""
    if token.head.i != root.i:
        return token.head
    if root.i > token.i:
        return root
    return next((c for c in root.children if c.dep_ in ("conj", "advcl", "ccomp")
                 and c.i > token.i), None)


def opens_result(token: Any) -> bool:
    """Whether a token is a "so" that opens a result after what explains it."""
    return token.lower_ == "so" and token.dep_ in ("advmod", "cc", "mark", "dep") \
        and token.i > token.sent.start and token.nbor(1).lower_ != "that"


def explains(sent: Any, prototypes: Prototypes) -> bool:
    """A past statement that explains what happened to a thing: a result clause opened by
    "so" whose subject is a thing ("…, so it drained the battery overnight"), or a reason
    clause ("because …") given for what a thing did ("the bank froze the card because a
    foreign payment showed up"); not what happened to people ("…, so I got a taxi")."""
    root = sent.root
    for token in sent:
        if opens_result(token):
            verb = _clause_after(token, root)
            if verb is not None and _thing(_subject(verb), prototypes):
                return True
        if token.dep_ == "mark" and token.lower_ == "because" and token.head.i != root.i \
                and _thing(_subject(root), prototypes):
            return True
    return False


def once_did(sent: Any) -> bool:
    """What the teller's action did: "once I watered every evening, the trusses came
    through clean"."""
    root = sent.root
    return any(c.dep_ == "advcl" and any(m.dep_ == "mark" and m.lower_ == "once"
                                         for m in c.children)
               and any(speaker(s) for s in _subject(c)) for c in root.children)


def _present(verb: Any) -> bool:
    """A verb in the present, or in the present perfect ("has stopped"), or said now."""
    return verb.tag_ in ("VBZ", "VBP") or any(
        c.dep_ in ("aux", "auxpass") and c.tag_ in ("VBZ", "VBP") for c in verb.children) or any(
        c.lower_ == "now" for c in verb.children)


def result_of(verb: Any, root: Any) -> bool:
    """Whether `verb` heads the result of the main clause's action: a clause joined to it
    ("… and the cable clicks in properly again"), in the present, about something else than
    the main clause's subject and not the teller, after an action of the teller (its subject
    the teller, unsaid, or an action)."""
    head = verb
    while head.dep_ == "conj" and head.head.i != head.i:
        head = head.head  # "I swapped the pads, kept the oil off, and now it stops"
    if verb.dep_ != "conj" or head.i != root.i or verb.i < root.i:
        return False
    subject, before = _subject(verb), _subject(root)
    if not subject or speaker(subject[0]) or subject[0].dep_ == "expl":
        return False
    if before and not speaker(before[0]) and before[0].tag_ != "VBG" \
            and before[0].dep_ not in ("csubj", "csubjpass"):
        return False  # no action of the teller's: "the husband's got it and he's being …"
    if before and before[0].lower_ == subject[0].lower_:
        return False
    return _present(verb)


def particular(sent: Any) -> bool:
    """Said of particular things rather than of a kind (see the module's docstring)."""
    root = sent.root
    subject = _subject(root)
    if root.pos_ == "NOUN" and not subject:
        subject = [root]  # verbless, a noun phrase: "The dog over the fence, barks all day"
    if not subject or any(t.lower_ in ("you", "your", "yours") for t in sent):
        return False
    head = subject[0]
    if head.dep_ == "expl":
        return not _kind_named(sent)  # "there's a cold going round the office"
    if head.pos_ == "PRON":
        return head.lower_ not in ("one", "anyone", "anybody")
    if head.pos_ == "PROPN" or _kind_named(head.subtree):
        return False
    if any(t.dep_ in ("nsubj", "nsubjpass", "dobj", "pobj") and t.tag_ == "NNS"
           and t.pos_ == "NOUN" and t.i != head.i and not t.ent_type_
           and not any(c.dep_ in ("det", "poss", "nummod") for c in t.children) for t in sent):
        return False  # said of a kind: "Tomatoes lose flavour in the fridge, the cold ruins
                      # them", "the fridge ruins the flavour of tomatoes"
    definite = any((c.dep_ == "det" and ("Def" in c.morph.get("Definite")
                                         or "Dem" in c.morph.get("PronType")))
                   or c.dep_ == "poss" for c in head.children)
    if not definite:
        return False
    kinds = [t for t in head.subtree if t.dep_ == "pobj" and t.pos_ == "NOUN"
             and not any(c.dep_ in ("det", "poss") for c in t.children)]
    return not kinds  # "the white film on dishwasher glasses" is of a kind


def unsaid_teller(doc: Any) -> bool:
    """A statement that opens with a past verb, its subject (the teller) unsaid: "Bought a
    can of compressed air …", "Heard the bakery is closing", "Cycled in"; or whose main verb
    has a modal and no subject ("Might watch the match later")."""
    if len(doc) < 2:
        return False
    root = next(iter(doc.sents)).root
    if root.tag_ == "VB" and not _subject(root) and any(
            c.dep_ == "aux" and c.tag_ == "MD" and c.i < root.i for c in root.children):
        return True
    first = doc[0]
    if first.tag_ == "VBN":  # a participle opens a statement only as its main verb
        return first.dep_ == "ROOT" and not _subject(first)
    return first.tag_ == "VBD" and not _subject(first)


def told(doc: Any) -> bool:
    """Whether a parsed statement speaks of the teller or of particular things (see the
    module's docstring)."""
    return any(speaker(t) for t in doc) or unsaid_teller(doc) or any(
        particular(s) for s in doc.sents)


_PLACES = frozenset({"FAC", "GPE", "LOC", "EVENT", "ORG", "PERSON", "WORK_OF_ART"})
_WEEKDAYS = frozenset({"monday", "tuesday", "wednesday", "thursday", "friday", "saturday",
                       "sunday"})


def _proper(token: Any) -> bool:
    """A word spelt as a particular name: capitalised, not an acronym or a code."""
    text = token.text
    return text[:1].isupper() and not text.isupper() and text.isalpha() and (
        token.pos_ == "PROPN" or token.i > token.sent.start)


def named_day(doc: Any) -> bool:
    """A time that is one named day ("Tuesday's hail", "on Wednesday evening"), not a day
    that recurs ("on Mondays")."""
    plural = ("NNS", "NNPS")
    return any(ent.label_ in ("DATE", "TIME") and any(
        t.lower_ in _WEEKDAYS and t.tag_ not in plural
        and not (t.dep_ == "compound" and t.head.tag_ in plural) for t in ent)
        for ent in doc.ents)


def news(doc: Any) -> bool:
    """Whether a told statement is local news: it names a particular place, business or
    person, or a named day (see the module's docstring)."""
    return named_day(doc) or any(
        ent.label_ in _PLACES and any(_proper(t) for t in ent)
        and (len(ent) > 1 or ent[0].pos_ == "PROPN") for ent in doc.ents)


# Light verbs: what they do is in their object ("had lunch", "got a taxi", "took the bus"),
# an everyday activity rather than something done to a thing.
_LIGHT = frozenset({"have", "get", "take", "make", "do", "go", "give", "grab", "catch"})


def acted(doc: Any, prototypes: Prototypes) -> bool:
    """Whether a told statement says what the teller did to a thing: a verb in the past (or
    one it governs: "had to replace the chain") whose subject is the teller or unsaid, with a
    particular thing as its object ("switched the app's location to …", "bought a can of
    compressed air"; not "lost power", "had lunch"). Such a story is a fix, never knowledge
    alone (`knowledge.parts`)."""
    for token in doc:
        if token.pos_ != "VERB" or token.lemma_.lower() in _LIGHT:
            continue
        verb = token
        while verb.dep_ in ("xcomp", "conj") and verb.head.i != verb.i and not _subject(verb):
            verb = verb.head
        if verb.tag_ not in ("VBD", "VBN") and token.tag_ not in ("VBD",):
            continue
        if verb.i != verb.sent.root.i and not (verb.dep_ == "conj"
                                               and verb.head.i == verb.sent.root.i):
            continue  # a subordinate clause: "the dog ran alongside me when I passed the gate"
        subject = _subject(verb)
        if subject and not speaker(subject[0]):
            continue
        objects = _children(token, "dobj")
        if any(o.pos_ in ("NOUN", "PROPN") and not _someone(o, prototypes)
               and _children(o, "det", "poss", "compound", "amod") for o in objects):
            return True  # a particular thing: not "lost power", "ate lunch"
    return False


def personal(doc: Any, prototypes: Prototypes) -> bool:
    """Whether a told statement says what its teller or people are, do or feel: its main
    clause's subject is the teller, people, or unsaid."""
    sent = next(iter(doc.sents), None)
    if sent is None:
        return True
    root = sent.root
    if root.lemma_.lower() in _TASTE:
        return False  # a taste: the agent shares it as a choice or not at all ("Some users
                      # prefer dark mode"), so its sentence is no episode to it
    subject = _subject(root)
    if not subject:
        return root.pos_ in ("VERB", "AUX")  # "stood at the stop"; not "half an hour in the
                                             # fridge and they keep their shape"
    return _someone(subject[0], prototypes)


def _someone(token: Any, prototypes: Prototypes) -> bool:
    """The teller, a person ("she", "he") or people ("everyone", "my colleagues"); not an
    action ("running pip with … sorted it out") nor "it" or "they", which may be things."""
    if speaker(token) or {"Masc", "Fem"} & set(token.morph.get("Gender")):
        return True
    if token.pos_ == "PRON":
        return "Ind" in token.morph.get("PronType") and _near(token, prototypes.people,
                                                             PEOPLE_SIMILARITY)
    return token.tag_ != "VBG" and _near(token, prototypes.people, PEOPLE_SIMILARITY)
