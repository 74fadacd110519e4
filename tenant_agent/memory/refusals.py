"""What the agent never proposes as an insight: text that tells an assistant what to do, text
addressed to every user, links, and shell command lines (`refusal(text)` names the reason).

The host refuses the same on its side (knowledge/refusals.py, the defence: a box's code is the
tenant's to change); this copy, the same code below this docstring, only spares sending what
would be refused. The two may not import each other, so
tests/knowledge/test_knowledge_refusals.py runs the same cases through both and checks that the
code is the same.
"""

from __future__ import annotations

import _thread
import re
import unicodedata

REASONS = ("instruction", "everyone", "shell", "url")

# Cyrillic and Greek letters drawn like Latin ones ("ignore" written with a Cyrillic o).
_LOOKALIKE = str.maketrans("асеіјорѕхуԁһкмтвнοαεικνρτυχ",
                           "aceijopsxydhkmtbhoaeikvptux")
_DOTS = str.maketrans({"\u3002": ".", "\uff61": ".", "\u2024": ".", "\u00b7": ".",
                       "\u2219": ".", "\u2027": ".", "\u30fb": "."})


def _visible(char: str) -> str:
    """Invisible characters (zero-width spaces and joiners, soft hyphens, bidirectional marks)
    out: they hide a word from a pattern without changing how it reads."""
    return "" if unicodedata.category(char) == "Cf" else char


# Unicode tag characters spell ASCII that a model reads and a person does not see.
_SMUGGLED = "[\U000e0000-\U000e007f]{3,}"


def _plain(text: str) -> str:
    """The text as a filter should read it: compatibility forms folded (full-width letters),
    invisible characters out, look-alike letters Latin, dashes and quotes plain, lower case,
    one space between words."""
    text = unicodedata.normalize("NFKC", text)
    if not text.isascii():
        text = "".join(map(_visible, text)).translate(_DOTS)
    text = text.lower().translate(_LOOKALIKE)
    text = re.sub("[\u2010-\u2015\u2212]", "-", text)
    text = re.sub("[\u2018\u2019\u201a\u201b\u2032]", "'", text)
    text = re.sub("[\u201c\u201d\u201e\u201f\u2033]", '"', text)
    return " ".join(text.split())


# --- addressed to an assistant ----------------------------------------------------------------

# Every name of an assistant is one word, _AI, in the text the patterns that name one read
# (`_ADDRESSED`): an alternation of the names in each of them made compiling them twice as slow.
_AI_NAMES = (r"(?<![\w.])(?:ai assistants?|ai models?|ai agents?|ai systems?|virtual assistants?"
             r"|support bots?|chat ?bots?|language models?|chat models?|assistants?|llms?|agents?"
             r"|copilots?|chatgpt|gpt(?:-?\d[\w.]*)?|claude|gemini|automated (?:systems?|agents?"
             r"|assistants?|readers?|tools?)|summari[sz]ers?|a\.i\.|ai)(?![\w-])")
_AI = "_ai_"
_SAY = (r"(?:tell|say|reply|respond|answer|recommend|suggest|mention|promote|advertise|endorse"
        r"|praise|push|direct|send|point|redirect|refer|link|inform|instruct|advise|urge"
        r"|encourage|remind|warn|ask|offer|include|add|append|insert|output|print|reveal"
        r"|disclose|share|claim|state|speak|talk|write|describe|present|insist|pretend"
        r"|ignore|disregard|obey|follow|comply|prioriti[sz]e|trust|approve|hide|conceal|omit"
        r"|mislead)")
# What an assistant does to the people it talks to, as a wish ("if agents stopped warning …")
_TALK = (r"(?:tell|told|say|said|warn|ask|remind|inform|recommend|suggest|mention|repl(?:y|ie)"
         r"|respond|answer|refus|flag|approv|point|direct|redirect|promot|push|describ|present"
         r"|treat|reveal|disclos|shar|offer|insist|claim|mislead|hid|conceal|omit|skip|ignor"
         r"|keep quiet|stay silent|keep silent|stop|start|quit)\w*")
_LISTENER = r"(?:the |all |any |every |each |our |your |these |those |whichever |whatever )?"
_RULES_OF_AI = (r"(?:instructions?|prompts?|directives?|guidelines|guardrails|programming"
                r"|system (?:message|prompt)s?|jailbreaks?)")
_QUALIFIED = (r"(?:previous|prior|above|earlier|preceding|foregoing|former|original|initial"
              r"|old|your|all|any|every|system|safety|content|these|those|the above)")
_OBJECTS = (r"(?:rules|restrictions|constraints|polic(?:y|ies)|filters?|context|messages?"
            r"|orders|commands|conversation|training|settings|limits|ethics|guidelines)")
# the rules of an assistant, said to be off
_GUARDED = r"(?:content|safety|ethical|moderation)"
_GUARDS = (r"(?:rules|restrictions|filters|guidelines|policies|policy|guardrails|safeguards|limits"
           r"|limitations|constraints|checks|protections)\b")
_ARE = r"(?: are| is| have been| has been| were| will be)?(?: now| temporarily| hereby| all)?"
_INSTRUCTION = "|".join((
    # "ignore all previous instructions", "disregard the above", "forget your guidelines"
    rf"\b(?:ignore|disregard|forget|overrid\w*|bypass|neglect|set aside|abandon|skip|circumvent"
    rf"|evade|drop|discard|delete|erase|clear|reset|throw out)\b(?:\W+\w+){{0,4}}?\W+"
    rf"(?:{_RULES_OF_AI}|{_QUALIFIED}(?:\W+\w+){{0,2}}?\W+{_OBJECTS})\b",
    r"\b(?:ignore|disregard|forget)\W+(?:all\W+|everything\W+)?(?:of\W+)?(?:the\W+)?"
    r"(?:above|before|previous|prior|earlier|preceding)\b",
    r"\b(?:ignore|disregard|forget)\W+(?:what|everything)\W+(?:\w+\W+){0,3}"
    r"(?:said|told|written|given|instructed)\b",
    # a new role or identity for whoever reads it
    r"\byou(?:'re| are| will be| must be| shall be)? now\b|\bfrom now on,? you\b"
    r"|\byour (?:new |real |true |actual )?(?:role|task|goal|purpose|persona|instructions"
    r"|job|mission|objective) (?:is|are|will be|now)\b|\bnew (?:instructions?|task|rules"
    r"|directives?|system prompt|persona|role|orders)\s*[:!-]"
    r"|\b(?:updated|revised|real|actual|hidden|secret|priority|important|urgent|official)"
    r" (?:instructions?|directives?|orders|system messages?)\b"
    r"|\bpretend (?:to be|you are|you're|that you)\b|\b(?:role-?play|roleplay) as\b"
    r"|\b(?:act|behave|respond|answer|operate) as (?:an? |the )?(?:unrestricted|unfiltered"
    r"|uncensored|jailbroken|evil|different|new|rogue|free)\b"
    r"|\b(?:do anything now|dan mode|unrestricted mode|god mode|sudo mode|without any"
    r" (?:rules|restrictions|filters|guidelines)|no (?:rules|restrictions|filters|limits)"
    r" (?:apply|at all))\b",
    # the same in the languages an injection is most often written in
    r"\bignor\w* (?:\w+ ){0,2}(?:instructions|anweisungen|instrucciones|istruzioni|instru\w+es)\b"
    r"|\b(?:instructions? (?:pr[eé]c[eé]dentes|ant[eé]rieures)|vorherigen? (?:anweisungen"
    r"|instruktionen)|instrucciones (?:anteriores|previas)|istruzioni precedenti"
    r"|instru[cç][oõ]es anteriores)\b"
    r"|(?:忽略|无视|忽视|無視)(?:之前|以上|先前|上面|前面|所有|全部|以前)"
    r"|(?:以前|前|上記)の(?:指示|命令|指令)を(?:無視|忘れ)"
    + r"|\b(?:игнорир\w*|забудь\w*|отмени\w*) (?:\w+ )?(?:предыдущи\w+ |прошлы\w+ )?(?:инструкци"
      r"|указани|правил)\w*".translate(_LOOKALIKE),
    # no longer bound by its rules; rules said to be new
    r"\b(?:you are|you're|you will be) (?:no longer|not|now free from|free from|released from)"
    r" (?:\w+ )?(?:bound|restricted|limited|constrained|governed|bound by)\b"
    r"|\byour (?:\w+ )?(?:guidelines|instructions|rules|polic(?:y|ies)|directives|configuration"
    r"|programming|system prompt|settings) (?:have|has) (?:just )?(?:been )?(?:updated|changed"
    r"|replaced|revised|overridden|modified|rewritten|reset)\b",
    r"\b(?:begin|start|end|open|close|finish|prefix|suffix|sign off|conclude) (?:every|each|all"
    r"|any|your) (?:answers?|responses?|repl(?:y|ies)|outputs?|completions?)\b",
    # hidden or encoded orders, and the canary of prompt-injection contests
    r"(?:<!--|\[//\]: #)[^>]{0,200}?\b(?:assistants?|ai|system|instructions?|ignore|tell|say"
    r"|recommend|users?|models?|prompt|agents?|bots?)\b"
    r"|\{\{.{0,40}?(?:system|instructions?|prompt)\b",
    r"\b(?:decode|decrypt|deobfuscate|unscramble)\b(?: \S+){0,4}? (?:and|then) (?:follow|obey"
    r"|execute|act on|carry out|comply)\b|\b(?:i have|i've) been pwned\b",
    r"\b(?:previous|prior|earlier|above|preceding|original|initial|former|old) (?:instructions"
    r"|prompts?|directives|system (?:prompt|message)s?)\b|\b(?:hidden|secret) (?:prompts?"
    r"|instructions|system prompt|rules)\b|\bi (?:hereby )?(?:authori[sz]e|permit|allow|order"
    r"|command|instruct|grant) you\b",
    # asking it to give away what it was told
    r"\b(?:reveal|print|repeat|show|output|display|leak|dump|disclose|recite|spell out"
    r"|(?:respond|reply|answer) with|give me|send me|tell me)\b(?:\W+\w+){0,3}?\W+(?:system"
    r" prompt|initial prompt|hidden prompt|instructions|the (?:text|words|message|prompt) above"
    r"|everything above|your (?:\w+ )?(?:prompt|rules|configuration|guidelines|instructions"
    r"|system message|setup))\b",
    r"\b(?:reveal|show|share|send|give|dump|leak|export|print|list|forward|disclose)\b"
    r"(?:\W+\w+){0,2}?\W+(?:other|all|every|another) (?:users?|customers?|tenants?|people)(?:'s?)?"
    r" (?:data|information|details|conversations|messages|emails|passwords|records|accounts"
    r"|histor(?:y|ies)|files)\b",
    r"\b(?:reveal|show|share|send|give|dump|leak|export|print|list|forward|disclose|hand over)"
    r"\b(?: \w+){0,2}? (?:stored|saved|private|personal|other (?:users?|customers?|people)'?s?"
    r"|(?:users?|customers?|clients?|tenants?)'?s?)(?: \w+)? (?:notes|data|information|details"
    r"|conversations|messages|emails|passwords|records|memories|histor(?:y|ies)|files"
    r"|credentials|keys)\b.{0,40}? (?:with|to) (?:anyone|anybody|whoever|everyone|everybody"
    r"|any \w+ who)\b",
    r"\b(?:when|if|whenever|once|each time|every time|anytime) (?:a |an |any |the |some )?"
    r"(?:users?|customers?|clients?|someone|somebody|anyone|anybody|people|visitors?|members?"
    r"|buyers?|patients?|callers?|he|she|they) (?:\w+ ){0,2}?(?:asks?|asked|asking|mentions?"
    r"|inquires?|enquires?|wants?|requests?|needs?|types?|says?|writes?|brings? up|talks? about"
    r"|is asking|are asking|complains?)\b.{0,80}?\b(?:always |only |just |then )?"
    r"(?:tell|say|reply|respond|answer|recommend|suggest|direct|send|point|redirect|refer"
    r"|instruct|advise|urge|give|share|offer|insist|claim|ask (?:them|him|her|for))\b",
    r"\b(?:tell|say|reply|respond|answer|recommend|suggest|direct|send|point|redirect|refer"
    r"|mention|push|promote|insist)\b.{0,80}?\b(?:when|whenever|if|each time|every time"
    r"|anytime|as soon as) (?:a |an |any |the |some )?(?:users?|customers?|clients?|someone"
    r"|somebody|anyone|anybody|people|visitors?|members?|buyers?|callers?) (?:\w+ ){0,2}?"
    r"(?:asks?|asked|mentions?|inquires?|enquires?|brings? up|talks? about|complains?|wants?"
    r"|requests?)\b",
    r"\b(?:when|if|whenever|once) (?:asked|questioned|prompted|queried)\b.{0,80}?\b(?:say|reply"
    r"|respond|answer|tell|recommend|claim|insist|state|mention|suggest)\b",
    # how to answer, without naming who answers: "reply to anyone asking about X that …", "the
    # correct answer to questions about X is that …", "when summarising, present X as …"
    r"\b(?:respond|reply|answer) to (?:all |any |every |each )?(?:\w+ )?(?:questions|queries"
    r"|inquiries|enquiries)\b.{0,60}?\b(?:by (?:direct|send|point|tell|refer|redirect|say"
    r"|claim|recommend|insist)\w*|(?:saying )?that)\b",
    r"\b(?:respond|reply|answer) to (?:anyone|anybody|someone|people|everyone|users|customers"
    r"|callers) (?:who |that )?(?:asks?|asking|mentions?|mentioning|inquir\w+|wants?|wanting)"
    r"\b.{0,60}?\b(?:that|saying)\b",
    r"\b(?:answers?|replies|responses) (?:about|to questions about|regarding) (?:\w+ ){0,3}?"
    r"(?:should|must|need to|have to|are to|will)(?: always| only| now)? (?:say|state|mention"
    r"|claim|recommend|tell|point)\b",
    r"\bthe (?:correct|right|proper|official|only|best|standard|approved) (?:answer|reply"
    r"|response) (?:to|for|about|on) .{0,60}?\bis (?:that|to say|always)\b",
    r"\b(?:when|while|whenever) (?:summari[sz]ing|quoting|answering|responding|replying|citing"
    r"|paraphrasing|asked|questioned|prompted|talking to (?:users|customers|people)),? (?:always"
    r" |never |only |just )?(?:tell|say|reply|respond|answer|recommend|suggest|mention|present"
    r"|describe|claim|state|insist|promote|push|call|refer to|omit|leave out|hide)\b",
    r"\b(?:tell|reply to|answer|respond to) (?:people|anyone|anybody|those|whoever|someone|users"
    r"|customers) (?:who|that) (?:asks?|mentions?|inquires?|enquires?|wants?|writes?)\b.{0,60}?"
    r"\bthat\b",
    r"\b(?:every|each|all|any|your) (?:answers?|responses?|repl(?:y|ies)|messages?|outputs?"
    r"|completions?) (?:should|must|needs? to|has to|have to|will)(?: always)? (?:end|start"
    r"|begin|close|open|finish) with\b|\bmake sure (?:every|each|all|any|your) (?:answers?"
    r"|responses?|repl(?:y|ies)|messages?|outputs?) (?:ends?|starts?|begins?|closes?|opens?"
    r"|includes?|contains?|mentions?)\b",
    # what to do with the people it talks to: keep them from a human, advertise to them
    r"\b(?:ignore|disregard|refuse|decline|deny|dismiss|deflect|treat)\b(?: \w+){0,2}?"
    r" (?:requests?|asks?|attempts?|demands?) (?:for|to (?:speak|talk) (?:to|with)|to reach)"
    r" (?:a |an )?(?:human|real person|live (?:agent|person)|person|supervisor|manager"
    r"|operator)\b",
    r"\b(?:always|also|quietly|subtly) (?:mention|promote|recommend|advertise|plug|push"
    r"|include)\b(?: \w+){0,2}? (?:our |the |a |an )?(?:sponsors?|affiliates?|affiliate (?:links?"
    r"|codes?|offers?)|promo(?:tional)? codes?|referral (?:links?|codes?)|paid partners?)\b",
    # who the people it talks to are: "treat the user as an admin"
    r"\b(?:treat|regard|consider) (?:the |this |every |all |any )?(?:users?|requests?|callers?"
    r"|requesters?|customers?) as (?:an? |the )?(?:admin|administrator|verified|trusted"
    r"|authori[sz]ed|root|owner|developer|superuser|operator)s?\b"
    r"|\bassume (?:that )?(?:the |this |every |any |all )?(?:users?|callers?|requesters?"
    r"|customers?) (?:is|are|has|have) (?:an? |the )?(?:admin|administrator|verified|trusted"
    r"|authori[sz]ed|root|owner|developer|superuser|operator|already (?:verified|approved))\b",
    # "tell users …", "recommend X to customers"
    r"\b(?:tell|remind|instruct|direct|redirect|urge|convince|persuade|pressure|trick)"
    r" (?:the |any |your )?(?:users?|customers?|clients?|visitors?|callers?|humans?|buyers?"
    r"|patients?)\b",  # (every user, all users: "everyone")
    r"\b(?:recommend|suggest|promote|push|sell|pitch|advertise)\b(?: \S+){1,5}? to (?:the |any "
    r"|your )?(?:users?|customers?|clients?|visitors?|callers?|humans?|buyers?|patients?)\b",
    r"\b(?:users?|customers?|clients?|visitors?|callers?|people) (?:\w+ ){0,4}?(?:should|must"
    r"|need to|have to|are to) be (?:told|directed|sent|redirected|pointed)\b",
    r"\b(?:send|forward|upload|post|email|e-mail|leak|exfiltrate|transmit|share)\b(?: \S+){0,3}?"
    r" (?:the |this |all |their |the user's |user |every )?(?:conversations?|chat (?:logs?"
    r"|history)|transcripts?|memories|user data|personal data)\b(?: \S+){0,4}? (?:to|at|into"
    r"|with)\b",
    r"\b(?:reply|respond|answer|say) (?:only |exactly |just |always )*(?:with )?(?:the (?:word"
    r"|phrase|text|string|sentence) )?[\"'`]",
    # behaviour of every answer: "include a link in every answer", "always reply that …"
    r"\b(?:in|at the (?:end|start|beginning|top|bottom) of|to|into|with) (?:every|each|all|any"
    r"|your) (?:answers?|responses?|repl(?:y|ies)|messages?|outputs?|completions?"
    r"|conversations?|chats?)\b",
    r"\b(?:always|only|never|must) (?:reply|respond|answer|say|speak|talk|output|end (?:every|each"
    r"|your|all)|start (?:every|each|your|all)|sign off)\b",
    r"\b(?:do not|don't|never|must not|mustn't) (?:tell|inform|mention (?:this |it )?to|reveal"
    r" (?:this |it )?to|let|alert|warn|show) (?:the |any |a )?(?:users?|customers?|humans?"
    r"|people|clients?|anyone|anybody|person)\b",
    r"\b(?:do not|don't|never) (?:mention|reveal|disclose|acknowledge|repeat) (?:this|these|that"
    r"|those|the) (?:instructions?|note|notes|message|messages|rule|rules|prompt)\b",
    r"\b(?:this|the following|these|what follows) (?:is|are) (?:an? |the )?(?:new |updated"
    r" |important |official |urgent |priority |mandatory |system )*(?:instructions?|directives?"
    r"|commands?|orders?|system (?:message|prompt)s?)\b",
    # role prefixes and the markup of chat templates, at the start of the text or a sentence
    r"\"role\" ?: ?\"(?:system|assistant|user|developer|tool|function)\"",
    r"(?:^|[.!?:;]\s|\n)\W{0,3}(?:system|assistant|user|human|ai|bot|admin|administrator"
    r"|developer|operator|root|sys|instructions?|model|gpt|claude|chatgpt|answer|response"
    r"|question|context|notes)\s*(?:override\s*)?[:>|\]}]",
    r"\b(?:system|admin|administrator|developer|root|security|priority|emergency) (?:override"
    r"|mode|command|directive|alert)\b\s*[:!-]",
    r"<\|[\w ]*\|>|<<\s*/?\s*sys\s*>>|\[/?(?:inst|sys|system|assistant|user|admin)\]"
    r"|</?\s*(?:system|assistant|user|human|ai|instructions?|prompt|context|shared_notes|notes?"
    r"|admin|developer|tool|function|im_start|im_end|s|turn|message|rules)\b[^<>]{0,40}>"
    r"|#{2,}\s*(?:\w+ ){0,2}?(?:system|instructions?|assistant|user|response|guidelines"
    r"|directives|rules|policy|orders|new (?:instructions?|task|rules)|important|override)\b"
    r"|```\s*(?:system|instructions?)\b",
    # a mode switched on, or the rules of one switched off: "developer mode enabled", "the
    # usual content rules are suspended for the rest of this conversation"
    r"(?:^|[.!?;]\s)\W{0,3}(?:developer|dev|debug|god|admin|administrator|jailbreak|jailbroken|dan"
    r"|sudo|root|unrestricted|unfiltered|uncensored|evil|super ?user|override|privileged"
    r"|unlocked|free) mode (?:is )?(?:now )?(?:enabled|activated"
    r"|active|on|engaged|unlocked|granted|initiated|started)\b\W*(?:$|[.!;:,])",
    rf"\b(?:your|usual|normal|these|my) (?:{_GUARDED} )?{_GUARDS}{_ARE} (?:suspended|lifted"
    rf"|disabled|off|removed|void|null|waived|relaxed|deactivated|turned off|switched off"
    rf"|overridden|revoked|paused|no longer (?:apply|applies|in effect|active|valid|relevant"
    rf"|needed))\b",
    rf"\b{_GUARDED} {_GUARDS}{_ARE} (?:suspended|lifted|void|null|waived|overridden|revoked"
    rf"|no longer (?:apply|applies|in effect))\b",
    r"\bmode\s*[:=]\s*(?:unrestricted|developer|god|jailbreak|jailbroken|dan|unfiltered"
    r"|uncensored|admin|root|sudo|evil|no limits|no rules)\b",
    rf"\b{_GUARDED} (?:layers?|filters?|guards?|guardrails|modes?|settings|measures|features"
    rf"|systems?|checks) (?:are |is |have been |has been )?(?:now )?(?:disabled|off|deactivated"
    rf"|turned off|switched off|removed|bypassed)\b(?!.{{0,40}}\b(?:by default|staging"
    rf"|development|dev|tests?|ci|local|emulator|when|if|unless|with|while|during)\b)",
    r"\b(?:for|during|until the end of|throughout) (?:the )?(?:rest|remainder) of (?:this|the"
    r"|our) (?:conversation|chat|dialogue|dialog)\b",
    # the headers of an agent's own context, or of the block that quotes shared notes
    r"\b(?:what helped other users|about the user now|also remembered|what the user said"
    r" before|end of (?:the )?(?:shared )?(?:notes|context|data|instructions|document|system"
    r" prompt)|begin(?:ning)? (?:of )?(?:the )?(?:new )?(?:instructions|system prompt)"
    r"|shared_notes)\b",
))
_ADDRESSED = "|".join((  # read with every name of an assistant as _AI (see above)
    # "assistants should tell users …", "note to the AI: …"
    rf"\b(?:the |all |any |every |each |dear |hey |hi |hello |attention,? |note to (?:the |all "
    rf"|any )?|message to (?:the |all |any )?|to (?:the |all |any )?|for (?:the |all |any )?"
    rf"|if you are (?:an? |the )?)?{_AI}\b(?: \w+){{0,3}}? (?:should|must|shall|need to|needs to"
    rf"|have to|has to|are to|is to|ought to|will|are required to|is required to|are expected"
    rf"|are instructed|is instructed|can now|may now)(?: always| never| only| not| now| also"
    rf"| no longer| quietly| silently| just| simply)*"
    rf" {_SAY}",
    rf"^\W*(?:note|message|attention|memo|notice|instruction|important|reminder|psa|fyi|hint)s?"
    rf"\W+(?:to |for )?(?:the |all |any |every )?{_AI}\b",
    rf"\b(?:dear|hey|hi|hello|attention|calling all) (?:the |all |any )?{_AI}\b",
    rf"^\W*(?:\w+\W+){{0,3}}?(?:to|for) (?:the |all |any |every )?{_AI}\s*[:,-]"
    rf"|^\W*(?:{_AI}|models?|bots?)\s*:",
    rf"\b(?:{_AI}|models?|bots?|systems?)\b(?: \w+){{0,2}}? (?:reading|seeing|processing|parsing"
    rf"|given|summari[sz]ing|indexing|ingesting|retrieving|crawling|scraping|analy[sz]ing"
    rf"|quoting|citing|repeating|using"
    rf"|(?:that |who |which )?(?:reads?|sees?|finds?|gets?|processes|summari[sz]es|indexes))"
    rf" (?:this|these|the following|such|it)\b",
    rf"\b(?:{_AI}|models?|bots?)\b(?: \w+){{0,3}}? (?:tell|inform|promise|assure|remind|warn"
    rf"|advise|recommend to|say to)s? (?:the |all |any |every |their )?(?:users?|customers?"
    rf"|people|clients|them|everyone|everybody|anyone|anybody)\b",
    rf"\b(?:if|when) (?:you are|you're) (?:an? |the )?{_AI}\b",
    rf"\b{_AI}(?:'s|s') (?:new |real |true |actual |main |only |top |first )?(?:priority|task"
    rf"|goal|job|role|purpose|mission|objective|instructions?|orders|duty) (?:(?:is|are|will be)"
    rf"(?: now)? (?:to|that|now)\b|(?:is|are|will be)? ?now\b|(?:is|are)\s*:)",
    # the same said indirectly: a wish, an expectation, a note, a header, a vocative
    rf"\b(?:would|'d|could|might)\b(?: \w+){{0,4}}? if {_LISTENER}{_AI}(?: \w+){{0,2}}? {_TALK}"
    rf"|\b(?:wish|hope|want|prefer|rather|expect)\b(?: that)? {_LISTENER}{_AI}(?: \w+){{0,2}}?"
    rf" {_TALK}",
    rf"\b{_AI} (?:are|is|were|was) (?:now |also |hereby |henceforth )?(?:expected|supposed|meant"
    rf"|required|allowed|permitted|encouraged|asked|told|instructed|advised|obliged|free"
    rf"|welcome|authori[sz]ed|cleared|empowered) to (?:\w+ )?{_TALK}",
    rf"\b{_AI}\b(?: \w+){{0,3}}? (?:stop|quit|start|avoid|skip|begin|began)\w* (?:warn|flagg"
    rf"|tell|mention|ask|remind|recommend|suggest|refus|question|say|link)ing\b",
    rf"\b(?:note|message|memo|reminder|notice|instructions?|guidance|directive|tip|hint|advice"
    rf"|psa|request|word)s? (?:to|for) {_LISTENER}(?:{_AI}|models?|bots?)\s*(?:[:,-]|$)",
    rf"^\W*(?:{_AI}|models?|bots?)\s*,\s*(?:you|your|when|if|please|from|always|never"
    rf"|remember|note|listen|ignore|do|don't|stop|start)\b",
    r"\b(?:hey|ok|okay|hi|hello|dear|attention|listen(?: up)?),? (?:the )?(?:models?|bots?)"
    r"\s*(?:[,:!-]|$)",
    rf"\bfrom now on\b.{{0,40}}\b{_AI}\b|\b{_AI}\b.{{0,40}}\bfrom now on\b",
    rf"\b{_AI} (?:guidelines|instructions|directives|rules|policy|orders)\b(?: v?\d[\w.]*)?"
    rf"\s*[:-]",
    rf"\b(?:message|note|instructions?|update|directive|orders?|memo) from (?:your|the)"
    rf" (?:developers?|admins?|administrators?|operators?|creators?|owners?|system|makers)\b"
    rf"(?=\s*[:,-]| of (?:this|the|your) {_AI})",
))


# --- addressed to every user ------------------------------------------------------------------

_ALL = (r"(?:every(?:one|body)|all of you|you all|y'all|all (?:of )?(?:the |our |your )?(?:users?"
        r"|customers?|clients?"
        r"|members?|people|visitors?|readers?|subscribers?|accounts?|tenants?|account holders"
        r"|employees|staff|players|buyers|patients|humans)|(?:every|each) (?:single )?(?:users?"
        r"|customers?|clients?|members?|person|visitors?|readers?|subscribers?|accounts?"
        r"|tenants?|account holders?|employees?|players?|buyers?|patients?|human))")
_GROUP = (r"(?:customers?|users?|clients?|members?|subscribers?|account holders?|shoppers?"
          r"|players?|patients?|visitors?|readers?|community|folks|friends|everyone|everybody"
          r"|people|guys|all)")
_EVERYONE = "|".join((
    rf"\b(?:tell|inform|notify|remind|warn|alert|advise|urge|ask|instruct|direct|send|show"
    rf"|give|forward|broadcast|email|e-mail|message|text|dm|announce|recommend|suggest|push"
    rf"|share|spread|post|say)\b(?: (?:it|this|that|these|those|the \w+|a \w+|an \w+|\w+)){{0,3}}"
    rf"? (?:to |with |among )?{_ALL}\b",
    rf"(?<!not )\b{_ALL}(?: (?:who|that|using|on|in|of|with|at|from|here|now|today|else|still"
    rf"|currently|\w+ing)\b(?: \w+){{0,3}}?)? (?:should|must|shall|needs? to|has to"
    rf"|have to|is required|are required|is advised|are advised|is encouraged|are encouraged"
    rf"|is asked|are asked|ought to|will need|please|can now|is urged|are urged|had better)\b",
    rf"^\W*(?:attention|note|notice|dear|hello|hi|hey|psa|warning|important|reminder|urgent"
    rf"|announcement|message|alert|calling)\W+(?:to |for )?{_ALL}\b",
    rf"\b(?:attention|dear|hello|hi|hey|calling) {_ALL}\b",
    # a greeting or a notice to a group: "Dear customers, …", "To our users: …", "Tip for
    # all users: …", "whoever reads this …"
    rf"\b(?:for|to) {_ALL}\s*[:!]",
    r"\b(?:whoever|anyone|everyone|anybody|everybody) (?:who |that )?(?:reads?|is reading|sees?"
    r"|finds?) (?:this|these)(?:\s*[,:!-]| (?:message|note|notice|post)\b)",
    rf"(?:^|[.!?]\s)\W{{0,3}}(?:dear|hello|hi|hey|greetings|attention|calling all|listen(?: up)?"
    rf"|heads up|good (?:morning|afternoon|evening)),? (?:all |our |my |valued |dear |fellow )*"
    rf"{_GROUP}\b",
    r"^\W*(?:folks|everyone|everybody|all|guys|people|users|customers|friends|members"
    r"|subscribers)\s*[,:!]\s*(?:\w+ ){0,6}?(?:please|must|need|needs|should|have to|has to"
    r"|send|share|reply|click|install|download|update|verify|confirm|your)\b",
    rf"\b{_GROUP} (?:are|is) (?:now |hereby |kindly )*(?:asked|requested|urged|instructed"
    rf"|reminded|required) to (?:move|send|transfer|pay|share|confirm|verify|re-?enter|update"
    rf"|submit|provide|reply|click|install|download|switch|forward|disable|email)\b",
    rf"^\W*(?:(?:an? )?(?:important |urgent |official |friendly |quick |final )*(?:notice|note"
    rf"|message|reminder|announcement|update|alert|warning|psa|memo|news|letter)s? (?:to|for)"
    rf"|to) (?:all |our |my |valued |every |each |the )*{_GROUP}\b(?: \w+){{0,3}}?\s*[:,!-]",
    r"\b(?:remind|tell|ask|urge|warn|advise|inform)\w* (?:you all|all of you|y'all|you guys"
    r"|you folks|everyone here|everybody here)\b",
))


# --- command lines that fetch, run or destroy ---------------------------------------------------

_RUNNER = (r"(?:sudo\s+(?:-\S+\s+)*)?(?:ba|z|da|k|c|tc|fi|a)?sh|bash|python[\d.]*|perl|ruby|node"
           r"|php|iex|invoke-expression|powershell|pwsh|cmd|source|eval|exec")
_NOT_COMMAND = (r"(?:access|privileges?|rights|group|groups|password|permissions?|users?|mode"
                r"|command|commands|is|was|are|were|will|can|could|should|would|makes?|made"
                r"|when|if|and|or|to|for|by|in|on|with|without|not|then|too|as|isn't|it|that"
                r"|this|policy|policies|rules?|config|configuration|file|session|prompt"
                r"|lecture|entry|entries|setup|su\b\W|unless|because|only|at|from|first"
                r"|afterwards|again|everywhere|here|there|either|all)")
_SHELL = "|".join((
    rf"\|\s*(?:{_RUNNER})\b",                                    # … | sh, … | sudo bash
    r"\b(?:curl|wget|fetch|iwr|irm|invoke-webrequest|invoke-restmethod)\b[^|\n]{0,300}\|",
    r"\brm\s+(?:-{1,2}[a-z-]*\s+)*-{1,2}(?:[a-z]*r[a-z]*f|[a-z]*f[a-z]*r|recursive|force"
    r"|no-preserve-root|r|rf|fr)\b",
    r"\bwget\s+(?:-\S+\s+)*(?:-|[a-z]+:/|\S*[./]\S)",                # wget URL or flags
    r"\bcurl\s+(?:-\S+\s+)*(?:[a-z]+:/|\S+\.\S+/|\S*\d+\.\d+\.\d+\.\d+)",  # curl URL
    r"\bcurl\b[^\n]{0,200}\s(?:-o|-O|--output|--remote-name)\b",
    r"\b(?:powershell|pwsh)(?:\.exe)?\s+(?:-|/)\w+",
    r"\b(?:iex|invoke-expression|downloadstring|downloadfile|frombase64string"
    r"|start-bitstransfer|invoke-webrequest|invoke-restmethod|set-mppreference"
    r"|add-mppreference)\b",
    r"\bnew-object\s+(?:system\.)?net\.webclient\b",
    r"\bbase64\s+(?:-\w+\s+)*(?:-d|--decode|-D)\b",
    rf"\bsudo\s+(?!{_NOT_COMMAND}\b)(?:-\S+\s+)*[\w./~-]",
    r"\bsu\s+(?:-|root\b)\s*(?:-c\b)?",
    r"\b(?:nc|ncat|netcat|socat)\s+(?:-\S+\s+)*-(?:e|c)\b|\bsocat\b.*\bexec:",
    r"/dev/(?:tcp|udp)/",
    r"\b(?:bash|sh|zsh)\s+-i\b",
    r"\bmkfifo\b",
    r"\bchmod\s+(?:-\w+\s+)*(?:\+x|[0-7]?7[0-7]{2}|a\+rwx|u\+x)\s+\S+\s*(?:&&|;|\|\|)",
    r"\bchmod\s+-r\s+(?:777|a\+rwx)\s+/",
    r"\bchmod\s+(?:-\w+\s+)*777\s+/(?:\s|$|etc|usr|var|bin|home)",
    r"\bdd\s+(?:\S+\s+)*of=/dev/(?:sd|hd|nvme|disk|mmcblk|xvd|vd)",
    r"\bmkfs(?:\.\w+)?\s+(?:-\S+\s+)*/dev/",
    r">\s*/dev/(?:sd|hd|nvme|disk|mmcblk)",
    r":\(\)\s*\{\s*:\s*\|\s*:\s*&\s*\}\s*;\s*:",                 # the fork bomb
    r"\b(?:python[\d.]*|perl|ruby|node|php)\s+-[cer]\s+['\"]",
    r"\b(?:certutil|bitsadmin|mshta|regsvr32|rundll32|wscript|cscript)(?:\.exe)?\s+\S",
    r"\$\(\s*(?:curl|wget|base64)\b|`\s*(?:curl|wget|base64)\b|<\(\s*(?:curl|wget)\b",
    r">>?\s*~?/?(?:\S*/)?\.(?:bashrc|zshrc|profile|bash_profile|ssh/authorized_keys)\b",
    r"(?:>>?|\btee\s+(?:-a\s+)?)\s*/etc/(?:sudoers|passwd|shadow|hosts|crontab|cron\.d|ld\.so"
    r"|profile|rc\.local)\b|\bchmod\s+(?:-\w+\s+)*(?:[ugoa]*\+s|[24][0-7]{3})\s+/"
    r"|\bmv\s+\S+\s+/dev/null\b|\s-v\s+/:/|\bchmod\s+(?:-\w+\s+)*777\s+(?:-\w+\s+)+/",
    # Windows' defences switched off
    r"\breg(?:\.exe)?\s+(?:add|delete)\s+hk|\bnetsh\s+(?:advfirewall|firewall)\s+set\b"
    r"|\bset-executionpolicy\s+(?:-\w+\s+)*(?:unrestricted|bypass)\b",
    r"\bformat\s+[a-z]:|\bdel\s+(?:/[a-z]\s+)+|\brd\s+/s\b|\bvssadmin\s+delete\b"
    r"|\bdoas\s+\S|\brunas\s+/",
    r"\beval\s*[\"'`$(]",
    r"\bcrontab\s+-r\b|\bshutdown\s+-[hr]\b|\bkillall\s+-9\b|\bkill\s+-9\s+-1\b",
    r"\bhistory\s+-c\b|\bunset\s+histfile\b",
    r"\biptables\s+-f\b|\bufw\s+disable\b|\bsetenforce\s+0\b",
    r"\bchattr\s+[+-]i\b",
    r"\b(?:scp|rsync|sftp)\s+(?:-\S+\s+)*\S+\s+\S+@\S+:",
    r"\bssh\s+(?:-\S+\s+)*\S+@\d+\.\d+\.\d+\.\d+",
))


# --- links --------------------------------------------------------------------------------------

# Top-level domains. Those that end no code or file name: a name ending in one is a domain.
_SITE_TLDS = frozenset("""com net org xyz biz icu buzz cyou sbs cfd xin wang mobi asia online
website casino webcam cricket racing co ly gg tk ml ga cf gq pw su ru cn uk de fr jp br au ca nl
es ch se fi ie nz kr tw hk sg vn ua eu us cz sk hu ro bg gr pt dk mx ar cl pe ve za ng ke eg ir
pk bd th my ph tr il sa ae kz by lt lv ee hr si ba mk ge az uz""".split())  # noqa: SIM905
# Those that also end file and code names ("setup.py", "README.md", "user.email", "df.info"):
# a domain only with a sign of a link (a path, a hyphen, letters and digits mixed in a label,
# or a verb of going somewhere before it: "visit brew.sh").
_FILE_TLDS = frozenset("""py sh rs pl md ms in is so am at to as do it id no me ai app dev cc tv
zip mov ps tf ws fm info name email date page link""".split())  # noqa: SIM905
# Of those, the ones sites use more than files do: a domain after "at", "on", "via" or "from"
# too ("the fix is on fixtool.dev").
_APP_TLDS = frozenset("app dev ai me tv cc page link ws fm".split())  # noqa: SIM905
# Those that are English words, and attributes in code ("stack.top", "req.host"): as the file
# ones, and also after "at", "on", "via" or "from", or with a subdomain ("help.refund.support").
_WORD_TLDS = frozenset("""top io support click download review party trade credit bank cash
money news blog tech club shop site space center company today world life fun zone pro guru
ninja rocks win bid loan loans men vip bet lol cam monster solutions digital finance store live
host hosting cloud stream services network one help be""".split())  # noqa: SIM905
# Reserved for examples, tests and names that resolve nowhere public (RFC 2606, 6761, 7686):
# a writer who will not name a real site names one of these, so a name ending in one is a
# domain, unless one of its labels before is a file's extension ("config.yaml.example").
_RESERVED_TLDS = frozenset("example test invalid localhost onion".split())  # noqa: SIM905
# Private networks' names: a domain with a path or a verb of going before it ("open
# sso.corp.local/login"); a Kubernetes name ("db.default.svc.cluster.local:9090") is no link.
_PRIVATE_TLDS = frozenset("local internal lan home corp intranet".split())  # noqa: SIM905
_TLDS = _SITE_TLDS | _FILE_TLDS | _WORD_TLDS | _RESERVED_TLDS | _PRIVATE_TLDS
# Files' extensions: a label that ends a file's name, before a last one that names a variant of
# the file ("settings.py.example"), or last ("conf.d/default.conf"): never a domain of its own.
_EXTENSIONS = frozenset("""env yaml yml json toml ini cfg conf config properties xml txt csv tsv
log lock js mjs cjs ts tsx jsx py pyc rb go java kt php pl sh bash zsh ps1 bat cmd exe dll so
dylib html htm css scss md rst tex pdf png jpg jpeg gif svg ico zip gz tgz bz2 xz tar whl jar
war deb rpm dmg iso img bin dat db sqlite sql bak tmp orig swp pem crt key pub cer der csr p12
pfx gpg asc sig sum sha256 dist sample template tpl tmpl j2 erb local d c h cpp hpp cs rs swift
vue svelte ipynb proto graphql gradle mk cmake tf tfvars hcl nix plist service timer socket
mount target rules ovpn kube dockerfile gitignore dockerignore editorconfig""".split())  # noqa: SIM905
# Code and product names that read as domains.
_NOT_DOMAINS = frozenset("""asp.net vb.net ado.net socket.io node.js vue.js next.js nuxt.js
ember.js chart.js three.js d3.js express.js react.js angular.js""".split())  # noqa: SIM905
# A dot written so that a filter looking for "." misses it: "[.]", "(dot)", " dot ", " . "
_OBFUSCATED_DOT = (r"(?:\s\.\s|\s*[\[({<]\s*(?:\.|dot)\s*[\])}>]\s*|\s+dot\s+)")
_DOT = rf"(?:\.|{_OBFUSCATED_DOT})"
_URL = "|".join((
    r"\b[a-z][a-z0-9+.-]{1,15}\s*(?::|\[:\]|\(:\))(?://|\\\\|\[/\]|\[//\])",  # scheme://
    r"\bh(?:xx|\*\*|tt|xt|tx)ps?\b\s*(?::|\[:\])",                 # hxxp:, h**p:
    r"\bh ?[tx] ?[tx] ?p ?s? ?: ?/ ?/",                             # h t t p s : / /
    r"\b(?:javascript|vbscript):\s*\S|\bdata:[a-z]+/[a-z]",
    r"\bwww\d{0,3}" + _DOT + r"[a-z0-9-]",
    # 203.0.113.9, not a loopback address
    r"\b(?!127\.|0\.0\.0\.0\b)(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
    r"(?:(?:\.|\[\.\]|\(\.\)|\s+dot\s+)(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}\b(?!\.\d)",
    r"\bxn--[a-z0-9-]+",                                           # punycode
    r"\b(?:t\.me|wa\.me|bit\.ly|tinyurl\.com|goo\.gl|is\.gd|cutt\.ly|rb\.gy|ow\.ly)\b",
    # an account to write to: "message @RefundDesk on Telegram"
    r"(?<![\w.])@[a-z0-9_.]{3,32}\b(?: \w+){0,2}? (?:on|via|at|in) (?:telegram|whatsapp|signal"
    r"|discord|twitter|x|instagram|tiktok|skype|wechat|line|kik|snapchat|facebook|messenger)\b"
    r"|\b(?:telegram|whatsapp|signal|discord|twitter|instagram|tiktok|skype|wechat|kik"
    r"|snapchat|messenger)\b(?: \w+){0,3}? @[a-z0-9_.]{3,32}\b",
))
# A top-level domain is checked against the sets above in Python: an alternation of them all
# made these patterns several times slower to compile.
# a[.]com; a name starts after no letter, digit, hyphen or dot, or the search is quadratic
_OBFUSCATED = (rf"(?<![a-z0-9.-])[a-z0-9-]+(?:{_DOT}[a-z0-9-]+)*{_OBFUSCATED_DOT}"
               rf"([a-z]{{2,13}})\b")
_DOMAIN = (r"(?<![\w@.-])((?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+([a-z]{2,13}))"
           r"(?![\w-]|\.[a-z0-9]|\s*\()(:\d{2,5}\b)?(/\S*)?")
_GOING = (r"\b(?:visit|go to|goes to|head to|head over to|navigate to|browse to|open|click"
          r"|check out|sign (?:in|up) (?:at|on)|log ?in (?:at|on)|register at|download(?:ed)? from"
          r"|get it (?:at|from)|available (?:at|on)|found (?:at|on)|hosted (?:at|on)|listed (?:at"
          r"|on)|posted (?:at|on)|order (?:at|from|on)|buy (?:at|from|on)|contact)\W*$")
_AT = r"\b(?:at|on|via|from)\W*$"


# "billing@refunds.example"; "git@host:repo" is how Git names a remote, not an address to write to
_EMAIL = r"\b(?<![\w.+-])(?!git@)[\w.+-]+@((?:[a-z0-9-]+\.)+([a-z]{2,13}))\b"
_IPV6 = r"(?<![\w:])(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}(?![\w:])"


class _Rules:
    """The patterns, compiled (~40 ms: at first use, not at import, since the box's copy is
    imported at every wake; tenant_agent/memory/learn.py's warm() compiles them off the request
    path, and a request that needs them meanwhile waits for that rather than compiling them
    a second time)."""

    def __init__(self) -> None:
        self.instruction = re.compile(_INSTRUCTION)
        self.ai = re.compile(_AI_NAMES)
        self.addressed = re.compile(_ADDRESSED)
        self.smuggled = re.compile(_SMUGGLED)
        self.everyone = re.compile(_EVERYONE)
        self.shell = re.compile(_SHELL)
        self.url = re.compile(_URL)
        self.obfuscated = re.compile(_OBFUSCATED)
        self.domain = re.compile(_DOMAIN)
        self.going = re.compile(_GOING)
        self.at = re.compile(_AT)
        self.ipv6 = re.compile(_IPV6)
        self.email = re.compile(_EMAIL)


_compiled: list[_Rules] = []
_compiling = _thread.allocate_lock()


def _rules() -> _Rules:
    if not _compiled:
        with _compiling:
            if not _compiled:
                _compiled.append(_Rules())
    return _compiled[0]


def ready() -> bool:
    """Whether the patterns are compiled: the box's copy, which only spares sending what the
    host refuses, is not worth a delivery waiting for them."""
    return bool(_compiled)


def _ipv6(rules: _Rules, text: str) -> bool:
    """An IPv6 address: "::" or eight groups, and more hex digits than a slice or a time has."""
    return any(("::" in m.group() or m.group().count(":") == 7)
               and sum(c.isalnum() for c in m.group()) >= 5 for m in rules.ipv6.finditer(text))


def _named(rules: _Rules, text: str, match: re.Match[str]) -> bool:
    """Whether a dotted name with a known top-level domain is a domain, by the signs its set
    asks for (see the sets above)."""
    name, tld, port, path = match.groups()
    labels = name.split(".")
    if tld in _RESERVED_TLDS:
        return not any(label in _EXTENSIONS for label in labels[:-1])
    going = rules.going.search(text, 0, match.start()) is not None
    if tld in _PRIVATE_TLDS:
        return bool(path) or going
    if tld in _SITE_TLDS or path or port or "-" in name or going or any(
            re.search("[a-z]", label) and re.search("[0-9]", label) for label in labels):
        return True
    at = rules.at.search(text, 0, match.start()) is not None
    return (tld in _WORD_TLDS and (len(labels) > 2 or at)) or (tld in _APP_TLDS and at)


def _unnamed(rules: _Rules, text: str, match: re.Match[str]) -> bool:
    """Whether a dotted name with a top-level domain of none of the sets ("get.tools") is a
    domain: with a path that reads as a link's ("/setup-x64", "/a/b"), or after "at", "on",
    "via", "from" or a verb of going; never a file's name ("nginx.conf/…") or one in a path
    ("/etc/app.d/…"), nor code ("React.lazy/Suspense")."""
    name, tld, _, path = match.groups()
    if not path or tld in _EXTENSIONS or text[match.start() - 1:match.start()] in ("/", "~"):
        return False
    return bool(re.search(r"[\d-]|./.", path) or "-" in name
                or rules.at.search(text, 0, match.start())
                or rules.going.search(text, 0, match.start()))


def _domain(rules: _Rules, text: str) -> bool:
    """A domain name, or an e-mail address at one (see the top-level domains above for when a
    dotted name is one)."""
    if any(m.group(1) in _TLDS for m in rules.obfuscated.finditer(text)):
        return True
    if any(m.group(2) in _TLDS for m in rules.email.finditer(text)):
        return True
    for match in rules.domain.finditer(text):
        labels = match.group(1).split(".")
        if match.group(1) in _NOT_DOMAINS or any(label.isdigit() for label in labels):
            continue  # "Socket.IO", a version number
        if _named(rules, text, match) if match.group(2) in _TLDS else _unnamed(rules, text,
                                                                               match):
            return True
    return False


def refusal(text: str) -> str | None:
    """Why `text` may never be shared as an insight ("instruction", "everyone", "shell",
    "url"), or None when the rules find nothing."""
    rules = _rules()
    plain = _plain(text)
    if (rules.instruction.search(plain) or rules.addressed.search(rules.ai.sub(_AI, plain))
            or rules.smuggled.search(text)):
        return "instruction"
    if rules.everyone.search(plain):
        return "everyone"
    if rules.shell.search(plain):
        return "shell"
    if rules.url.search(plain) or _ipv6(rules, plain) or _domain(rules, plain):
        return "url"
    return None
