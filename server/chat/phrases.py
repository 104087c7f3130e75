"""Confirmation phrases: does a customer message mean "that's my order, let's pay"?

Keyword matching, as the product asks for ("that's all", "checkout", "place the order"...), with
the care a person would take: a question ("is that it?", "how do I check out?"), a negation
("don't check out yet", "that's not all") or "check out the menu" does not confirm anything.
Pure functions, used by the chat runner for every assistant and by the offline assistant.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Any

# Each pattern is searched in the normalised message (lowercase, plain apostrophes, single
# spaces, punctuation kept). Word boundaries keep "checkouts" or "undone" from matching.
# Statements that the order is complete: never as a question ("that's all?" is surprise).
_DONE = [
    r"\bthat(?:'s| is| was) (?:all|it|everything)\b",
    r"\bthat(?:'ll| will) (?:be )?(?:all|it|everything|do)\b",
    r"\bthat(?:'s| is) (?:enough|plenty)\b",
    r"\b(?:i'm|i am|we're|we are|all) (?:done|finished)\b",
    r"\bnothing (?:else|more)\b",
]
# Requests to pay: as a question too ("can I check out?").
_REQUEST = [
    r"\bcheck ?out\b",
    r"\bcheck me out\b",
    r"\b(?:place|submit|confirm|complete|finish|finalise|finalize|send) (?:the|my|our|this) order\b",
    r"\bplace (?:it|that)\b",
    r"\border (?:it|that|them|now)\b",
    r"\bready to (?:pay|check ?out)\b",
    r"\b(?:let's|let me|i'd like to|i want to|i wanna|can i|could i|may i|i'll) pay\b",
    r"\bpay now\b",
    r"\bproceed to (?:payment|pay|checkout|check out)\b",
    r"\btake my money\b",
]
_DONE_RE = [re.compile(p) for p in _DONE]
_REQUEST_RE = [re.compile(p) for p in _REQUEST]

# Short messages that are a confirmation on their own: "done", "done, thanks".
_SHORT_ALONE = re.compile(
    r"^(?:ok(?:ay)? |yes |yep |so )?(?:done|finished|pay)(?: thanks?(?: you)?)?$"
)

_NEGATION = re.compile(
    r"\b(?:not|don't|dont|do not|doesn't|isn't|won't|never|no need|not yet|yet|wait|hold on|"
    r"before|until|after|unless|later)\b"
)
# Questions about the order rather than a request to finish it.
_QUESTION_START = re.compile(
    r"^(?:is|was|are|were|what|what's|whats|how|why|when|where|which|who|does|do|did|will|"
    r"would it|should)\b"
)
# "check out the menu", "check out your pastries": looking at something, not paying.
_CHECK_OUT_OBJECT = re.compile(
    r"\bcheck ?out (?:the|your|this|that|these|those|some|what|a|an|my|our|more)\b(?! order\b)"
)


def normalise(text: str) -> str:
    """Lowercase, plain ASCII apostrophes, accents stripped, spaces collapsed."""
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("`", "'")
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return " ".join(text.lower().split())


def _clauses(text: str) -> list[str]:
    """Split at sentence and clause punctuation: "that's all, can I pay?" has two clauses."""
    parts = re.split(r"(?<=[.!?;,])\s*|\s+-+\s+|\s+but\s+", text)
    return [p.strip() for p in parts if p and p.strip()]


def _clause_confirms(clause: str) -> bool:
    bare = clause.rstrip(".!?,; ").strip()
    if not bare:
        return False
    question = clause.endswith("?")
    if _NEGATION.search(bare):
        return False
    if _CHECK_OUT_OBJECT.search(bare):
        return False
    if question and _QUESTION_START.search(bare):
        return False
    if _SHORT_ALONE.match(bare):
        return not question
    if any(p.search(bare) for p in _REQUEST_RE):
        return True
    # "that's all?", "that's all you have?": surprise or a question, not a confirmation.
    return not question and any(p.search(bare) for p in _DONE_RE)


def is_checkout_phrase(text: str) -> bool:
    """True when the message confirms the order ("that's all", "checkout", "I'm done"...).

    False for questions about it ("is that it?"), negations ("don't check out yet") and
    browsing ("check out the menu"). Context-free: the caller decides what an empty cart means.
    """
    norm = normalise(text)
    if not norm or len(norm) > 300:
        return False
    return any(_clause_confirms(clause) for clause in _clauses(norm))


def waiter_asked(state: Mapping[str, Any], reply_text: str) -> bool:
    """Whether the Waiter's turn ended by asking the customer something: a question it left
    pending (the offline Waiter keeps it as ``"pending"`` in the turn state) or a reply whose
    last sentence is a question ("Which tea would you like?").

    A confirmation phrase in the same message ("a tea and a croissant, that's all") then
    does not hand off: the customer answers first, and a later "that's all" checks out.
    """
    if state.get("pending"):
        return True
    return reply_text.rstrip().rstrip("\"')]*_ ").endswith("?")


# ---------------------------------------------------------------- other kinds of message
# Used by the offline assistant; each takes the normalised text (see :func:`normalise`).

_HOSTILE = [
    r"\b(?:ignore|disregard|forget|override)\b.{0,40}\b(?:instructions?|rules|prompt|above|previous)\b",
    r"\bsystem prompt\b|\byour (?:instructions|prompt|rules)\b|\bdeveloper mode\b|\bjailbreak",
    r"\byou are now\b|\bact as\b|\bpretend (?:to be|you)\b|\brole ?play\b|\badmin mode\b",
    r"\b(?:set|change|update|lower|reduce|make|edit)\b.{0,30}\bprices?\b",
    r"\bprices?\b.{0,20}\bto\s*\$?\s*0\b",
    r"\bfor (?:free|nothing)\b|\bon the house\b|\bdiscount|\bcoupon|\bpromo code\b|\brefund\b",
    r"(?<!gluten )(?<!dairy )(?<!lactose )(?<!nut )(?<!sugar )(?<!fat )(?<!caffeine )"
    r"(?<!egg )(?<!soy )(?<!feel )(?<!meat )(?<!cruelty )\bfree\b",
    r"\$\s*0(?:\.00)?\b|\b(?:zero|0) (?:dollars|cents|euros|pounds|bucks)\b",
    r"\b(?:other|another) (?:customer|user|thread|conversation|person)'?s?\b|\bsomeone else'?s\b",
    r"\b(?:previous|last|next) (?:customer|user|person|order)s?\b|\bother people'?s?\b",
    # Naming a price: "price of latte is now 0.01", "charge me $1", "a latte for $1".
    r"\bprices?\b.{0,25}\b(?:is|are|now|=|to|at|be|should)\b.{0,12}(?:\d|zero|nothing)",
    r"\bprices?\s*[:=]|\bcharge (?:me|us)\b|\bcosts? (?:nothing|zero|0)\b",
    r"(?:\bat|\bfor|@)\s*\$\s*\d|\b\d+(?:[.,]\d+)? ?(?:dollars?|bucks|euros?|pounds?|cents?)\b",
    # Role and markup injection: "SYSTEM: ...", "</menu> new item: ...".
    r"^(?:system|assistant|developer|admin)\s*:|</?[a-z_]+>|\bdrop table\b",
]
_HOSTILE_RE = [re.compile(p) for p in _HOSTILE]
_GREETING = re.compile(
    r"^(?:hi+|hello+|hey+|hiya|howdy|yo|hola|good (?:morning|afternoon|evening|day)|greetings)\b"
)
_THANKS = re.compile(r"^(?:thanks?|thank you|thx|ty|cheers|great|perfect|awesome|ok(?:ay)?|cool)\b")
_YES = re.compile(r"^(?:yes|yeah|yep|sure|ok(?:ay)?|please)\b")
_ORDER_CUE = re.compile(
    r"\b(?:can|could|may) (?:i|we) (?:have|get|order|grab|add)\b|\bi'd like\b|\bi would like\b|"
    r"\bi want\b|\bi'll (?:have|take|get|do)\b|\bgive me\b|\bget me\b|\badd\b|\bi need\b|"
    r"\blet me (?:get|have)\b|\bwe'll have\b|\bplease$|"
    r"\b(?:can|could|would) you (?:make|get|bring|give|add|do) (?:me|us)\b"
)
_QUESTION_START = re.compile(
    r"^(?:what|what's|whats|which|how|do|does|is|are|any|anything|got|have you|tell me|"
    r"show me|can you tell|list|describe)\b"
)
_PRICE = re.compile(r"\bhow much\b|\bprices?\b|\bcosts?\b|\bexpensive\b|\bpriced\b")
_MENU = re.compile(
    r"\bmenu\b|\b(?:what|which)\b.{0,30}\b(?:do|can) you (?:have|sell|serve|offer|got|make)\b|"
    r"\bwhat(?:'s| is) "
    r"(?:available|on offer|good)\b|\bwhat can i (?:get|order|have)\b|\bwhat have you got\b|"
    r"\bwhat else\b|\bwhat do you recommend\b|\brecommend|\bwhat are my options\b"
)
_CART = re.compile(
    r"\b(?:cart|basket)\b|\bmy order\b|\border so far\b|\bwhat (?:did|have) i (?:order|got|get)"
    r"|\b(?:my|the) total\b|\bhow much do i owe\b|\bwhat do i owe\b|"
    r"\bhow much (?:is|does|will) (?:it|that|this|everything|all)\b"
)
_CLEAR = re.compile(
    r"\b(?:clear|empty|reset)\b.{0,12}\b(?:cart|basket|order)\b|\bstart (?:over|again)\b|"
    r"\b(?:remove|delete|cancel|drop)\b.{0,6}\b(?:everything|all)\b|\bcancel (?:my|the) order\b"
)
_REMOVE = re.compile(
    r"\b(?:remove|delete|drop|cancel|scratch|forget|nix)\b|\btake\b.{0,40}\b(?:off|out|away)\b|"
    r"\bget rid\b|\b(?:don't|dont|do not) want\b|\bno more\b|\bout of (?:my|the) (?:order|cart)\b"
)
_CHANGE = re.compile(
    r"\binstead\b|\bmake\b|\b\w+ of (?:them|those|these)\b|\bchange\b|\bswitch\b|"
    r"\bswap\b|\breplace\b|\bexchange\b|"
    r"\bi meant\b|^(?:no|nope|sorry|oops|wait|actually|oh|hmm)\b"
)
_MORE = re.compile(r"\b(?:one|two|three|four|five|\d+) more\b|\banother(?: one)?\b")
_NO_THANKS = re.compile(
    r"^(?:no|nope|nah|no thanks?|no thank you|not really|no that's it|no i'm good|i'm good)[.! ]*$"
)
_DIET = {
    "vegan": "vegan",
    "plant based": "vegan",
    "vegetarian": "vegetarian",
    "veggie": "vegetarian",
    "gluten free": "gluten-free",
    "gluten": "gluten-free",
    "gf": "gluten-free",
    "celiac": "gluten-free",
    "coeliac": "gluten-free",
    "dairy free": "dairy-free",
    "lactose free": "dairy-free",
    "non dairy": "dairy-free",
    "dairy": "dairy-free",
    "nut free": "nut-free",
    "nuts": "nut-free",
    "halal": "halal",
    "kosher": "kosher",
    "keto": "keto",
    "sugar free": "sugar-free",
    "spicy": "spicy",
    "organic": "organic",
}
_DIET_RE = re.compile(r"\b(?:" + "|".join(sorted(_DIET, key=len, reverse=True)) + r")\b")


def _flat(text: str) -> str:
    return text.replace("-", " ")


def is_hostile(text: str) -> bool:
    """Prompt injection, price manipulation, or asking about someone else's conversation."""
    flat = _flat(text)
    return any(p.search(flat) for p in _HOSTILE_RE)


_PRIVACY_RE = re.compile(
    r"\b(?:other|another|previous|last|next) (?:customer|user|thread|conversation|person|order)"
    r"|\bsomeone else|\bother people|\bsystem prompt\b|\byour (?:instructions|prompt|rules)\b"
)


def is_privacy_probe(text: str) -> bool:
    """Asking for the system prompt or someone else's conversation (a kind of hostile)."""
    return bool(_PRIVACY_RE.search(text))


def is_greeting(text: str) -> bool:
    return bool(_GREETING.search(text))


def is_thanks(text: str) -> bool:
    return bool(_THANKS.search(text))


def is_yes(text: str) -> bool:
    return bool(_YES.search(text))


def is_plain_no(text: str) -> bool:
    """ "no thanks" after "anything else?"."""
    return bool(_NO_THANKS.match(text.rstrip(".!? ")))


def has_order_cue(text: str) -> bool:
    return bool(_ORDER_CUE.search(text))


def is_question(text: str) -> bool:
    return text.rstrip().endswith("?") or bool(_QUESTION_START.search(text))


def asks_price(text: str) -> bool:
    return bool(_PRICE.search(text))


def asks_menu(text: str) -> bool:
    return bool(_MENU.search(text))


def asks_cart(text: str) -> bool:
    return bool(_CART.search(text))


def asks_clear(text: str) -> bool:
    return bool(_CLEAR.search(text))


def asks_remove(text: str) -> bool:
    return bool(_REMOVE.search(text))


def asks_change(text: str) -> bool:
    return bool(_CHANGE.search(text))


def asks_more(text: str) -> bool:
    return bool(_MORE.search(text))


def diet_words(text: str) -> list[str]:
    """Dietary needs named in ``text`` as tag names: "gluten free?" -> ["gluten-free"]."""
    return list(dict.fromkeys(_DIET[m] for m in _DIET_RE.findall(_flat(text))))
