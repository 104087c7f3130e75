"""Understanding customer text against one menu, without a model. Pure: no I/O.

- :func:`tokenize` and :func:`find_numbers`: words and quantities ("2", "two", "twenty-one",
  "a dozen", "a couple of").
- :class:`MenuIndex`: the menu's vocabulary; :meth:`MenuIndex.canon` maps a typed word onto it
  (plurals, typos), but only onto menu words, so "make" never becomes "cake".
- :func:`find_mentions`, :func:`parse_items`, :func:`extract_options`: which products a message
  names, how many of each, and which option choices go with which product.
"""

from __future__ import annotations

import re
import weakref
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from server.catalog.model import Menu, OptionGroup, Product
from server.chat.phrases import normalise

UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
    "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
    "nineteen": 19,
}  # fmt: skip
TENS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
    "eighty": 80, "ninety": 90,
}  # fmt: skip
CANON_CACHE_SIZE = 20_000
SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}

# Words that join the parts of a menu name or an order; a mention never starts or ends with one.
GLUE = frozenset(
    "a an the of and or with in on to for de du la le au aux al alla di & + , ; / n".split()  # noqa: SIM905
)
SEPARATORS = frozenset([",", ";", "and", "&", "+", "plus", "also", "then", "/"])
NEGATORS = frozenset(["no", "not", "without", "hold", "minus", "skip"])

# Everyday words never "corrected" into menu words ("make" is one typo away from "cake").
COMMON = frozenset(
    """about actually again also another anything around bring cancel change cheaper check
    chosen choose could delete didn't doesn't don't drink drinks eat else every everything
    extra first food free give good great have hello hey instead just keep large later less
    like little make many maybe medium menu more most much need nothing order other please
    price prices remove right same show small some something sorry still take tell than thank
    thanks that that's them then there these they thing think this those want what what's
    when where which while with without would you your yours make made mate lot late later
    hot cold cost costs does have having here hour hours open close plus place done sure
    okay cart basket total today tomorrow time times other others rest both each pay""".split()  # noqa: SIM905
)


def tokenize(text: str) -> list[str]:
    """``"Two large oat lattes, & a croissant"`` -> ``["two", "large", ..., ",", "and", "a", ...]``.

    "2x" and "x2" become "2"; hyphens split words ("gluten-free" -> "gluten", "free").
    """
    norm = normalise(text)
    norm = re.sub(r"\b(\d+)\s*x\b|\bx\s*(\d+)\b", lambda m: m.group(1) or m.group(2), norm)
    tokens = re.findall(r"\d+|[a-z]+(?:'[a-z]+)?|[,;&+/]", norm)
    return ["and" if t == "&" else t for t in tokens]  # "Mac & Cheese" = "mac and cheese"


@dataclass(frozen=True)
class Number:
    start: int
    end: int
    value: int
    article: bool = False  # "a"/"an": a quantity only when it stands right before an item


def find_numbers(tokens: list[str]) -> list[Number]:
    """Every quantity in ``tokens``: digits, number words, "a dozen", "a couple of", "a"."""
    out: list[Number] = []
    i, n = 0, len(tokens)

    def at(j: int) -> str:
        return tokens[j] if j < n else ""

    while i < n:
        tok = tokens[i]
        if tok == "half" and at(i + 1) == "a" and at(i + 2) == "dozen":
            out.append(Number(i, i + 3, 6))
            i += 3
        elif tok in ("a", "an") and at(i + 1) in ("couple", "pair"):
            end = i + 3 if at(i + 2) == "of" else i + 2
            out.append(Number(i, end, 2))
            i = end
        elif tok in ("a", "an") and at(i + 1) in ("dozen", "hundred", "thousand"):
            value, end = _compound(tokens, i + 1, start_value=1)
            out.append(Number(i, end, value))
            i = end
        elif tok in ("a", "an"):
            out.append(Number(i, i + 1, 1, article=True))
            i += 1
        elif tok.isdigit():
            value = int(tok[:12])
            end = i + 1
            if at(end) == "dozen":
                value, end = value * 12, end + 1
            out.append(Number(i, end, value))
            i = end
        elif tok in UNITS or tok in TENS or tok in ("dozen", "couple", "pair"):
            if tok in ("couple", "pair"):
                end = i + 2 if at(i + 1) == "of" else i + 1
                out.append(Number(i, end, 2))
                i = end
                continue
            value, end = _compound(tokens, i)
            out.append(Number(i, end, value))
            i = end
        else:
            i += 1
    return out


def _compound(tokens: list[str], i: int, start_value: int = 0) -> tuple[int, int]:
    """Read "one hundred and twenty five" from ``i``; returns (value, end index)."""
    total, current = 0, start_value
    n = len(tokens)
    while i < n:
        tok = tokens[i]
        if tok in UNITS:
            current += UNITS[tok]
        elif tok in TENS:
            current += TENS[tok]
        elif tok == "dozen":
            current = max(current, 1) * 12
        elif tok in SCALES:
            current = max(current, 1) * SCALES[tok]
            if SCALES[tok] >= 1000:
                total, current = total + current, 0
        elif (
            tok == "and" and i + 1 < n and (tokens[i + 1] in UNITS or tokens[i + 1] in TENS)
        ) and (total or current >= 100):
            pass
        else:
            break
        i += 1
    return total + current, i


def singular(word: str) -> str:
    """A plain English singular, good enough for menu words ("berries" -> "berry")."""
    if len(word) <= 3:
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "shes", "ches", "xes", "zzes")):
        return word[:-2]
    if word.endswith("oes") and len(word) > 4:
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def _variants(word: str) -> list[str]:
    out = [word, singular(word)]
    if word.endswith("s"):
        out.append(word[:-1])
    if word.endswith(("es", "ed")):
        out.append(word[:-2])
    if word.endswith("ed"):
        out.append(word[:-1])  # "baked" -> "bake"
    return out


def yes_no(group: OptionGroup) -> bool:
    """A "Whipped cream: No | Yes" group: chosen by naming the group, not a choice."""
    return {c.name.casefold() for c in group.choices} == {"no", "yes"}


def edit_distance(a: str, b: str, limit: int) -> int:
    """Damerau-Levenshtein (optimal string alignment); returns ``limit + 1`` once over it."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if min(cur) > limit:
            return limit + 1
        prev2, prev = prev, cur
    return prev[-1]


def _allowed_typos(a: str, b: str) -> int:
    longest = max(len(a), len(b))
    if longest <= 3:
        return 0
    if longest <= 4:
        # A swapped pair ("mlik") or one letter more at the end ("soya" for "soy").
        return 1 if sorted(a) == sorted(b) or a[:-1] == b or b[:-1] == a else 0
    return 1 if longest <= 7 else 2


def name_tokens(text: str) -> tuple[str, ...]:
    return tuple(t for t in tokenize(text) if t not in (",", ";", "/"))


@dataclass
class MenuIndex:
    """The vocabulary of one menu, for matching what customers type."""

    menu: Menu
    names: dict[str, tuple[str, ...]] = field(default_factory=dict)
    by_token: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    token_products: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    choice_words: dict[str, str] = field(default_factory=dict)  # token -> a choice name
    single_choices: dict[str, str] = field(default_factory=dict)  # one-word choice -> its name
    choice_owners: dict[tuple[str, ...], set[str]] = field(
        default_factory=lambda: defaultdict(set)
    )  # choice words -> products offering it
    categories: dict[str, tuple[str, ...]] = field(default_factory=dict)
    tags: dict[str, tuple[str, ...]] = field(default_factory=dict)
    lookup: dict[str, str] = field(default_factory=dict)  # word or its singular -> menu word
    buckets: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    _cache: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, menu: Menu) -> MenuIndex:
        idx = cls(menu)
        vocab: set[str] = set()
        for p in menu.products:
            toks = name_tokens(p.name)
            idx.names[p.id] = toks
            for t in dict.fromkeys(toks):
                idx.by_token[t].append(p.id)
                idx.token_products[t] += 1
            vocab.update(toks)
            for g in p.options:
                vocab.update(name_tokens(g.name))
                if yes_no(g):
                    continue
                for c in g.choices:
                    toks = name_tokens(c.name)
                    idx.choice_owners[toks].add(p.id)
                    if len(toks) == 1:
                        idx.single_choices.setdefault(toks[0], c.name)
                    for t in toks:
                        idx.choice_words.setdefault(t, c.name)
                        vocab.add(t)
            for tag in p.tags:
                idx.tags.setdefault(tag, name_tokens(tag))
                vocab.update(idx.tags[tag])
        for cat in menu.categories:
            idx.categories[cat] = name_tokens(cat)
            vocab.update(idx.categories[cat])
        for word in sorted(vocab - GLUE):
            if word.isdigit():
                continue
            idx.lookup.setdefault(word, word)
        for word in sorted(vocab - GLUE):
            idx.lookup.setdefault(singular(word), word)
        for key in idx.lookup:
            if len(key) >= 3:
                idx.buckets[key[0]].append(key)
        return idx

    def canon(self, token: str) -> str:
        """The menu word ``token`` means (same word, its plural/singular, or a close typo)."""
        cached = self._cache.get(token)
        if cached is not None:
            return cached
        if len(self._cache) > CANON_CACHE_SIZE:
            self._cache.clear()  # whatever customers type must not grow memory forever
        self._cache[token] = result = self._canon(token)
        return result

    def _canon(self, token: str) -> str:
        if not token[:1].isalpha():
            return token
        for v in _variants(token):
            if v in self.lookup:
                return self.lookup[v]
        if token in COMMON or token in UNITS or token in TENS or len(token) < 4:
            return token
        best: tuple[int, int, str] | None = None
        for v in dict.fromkeys(_variants(token)):
            if len(v) < 4:
                continue
            pool = set(self.buckets.get(v[0], ())) | set(self.buckets.get(v[1], ()))
            for key in pool:
                limit = _allowed_typos(v, key)
                if not limit:
                    continue
                d = edit_distance(v, key, limit)
                if d <= limit:
                    rank = (d, 0 if key[0] == v[0] else 1, key)
                    if best is None or rank < best:
                        best = rank
        return self.lookup[best[2]] if best else token

    def canon_all(self, tokens: list[str]) -> list[str]:
        return [self.canon(t) for t in tokens]


_INDEXES: dict[int, tuple[weakref.ref[Menu], MenuIndex]] = {}


def index_for(menu: Menu) -> MenuIndex:
    """The (cached) index of ``menu``; menus are immutable, so one build per catalog version."""
    hit = _INDEXES.get(id(menu))
    if hit is not None and hit[0]() is menu:
        return hit[1]
    if len(_INDEXES) > 64:
        for key in [k for k, (ref, _) in _INDEXES.items() if ref() is None]:
            del _INDEXES[key]
    idx = MenuIndex.build(menu)
    _INDEXES[id(menu)] = (weakref.ref(menu), idx)
    return idx


# ---------------------------------------------------------------- products named in a message


@dataclass(frozen=True)
class Mention:
    """Tokens ``start:end`` name a product; several ids when they name any of them equally."""

    start: int
    end: int
    product_ids: tuple[str, ...]

    @property
    def ambiguous(self) -> bool:
        return len(self.product_ids) > 1


def _match_at(
    idx: MenuIndex, words: list[str], i: int, pid: str
) -> tuple[tuple[int, int], int] | None:
    """((matched words, 1 if the whole name), span) for product ``pid`` at ``words[i]``."""
    name = idx.names[pid]
    best: tuple[tuple[int, int], int] | None = None
    for s, tok in enumerate(name):
        if tok != words[i]:
            continue
        k = 0
        while s + k < len(name) and i + k < len(words) and words[i + k] == name[s + k]:
            k += 1
        while k and name[s + k - 1] in GLUE:  # "fish and" of "Fish and Chips" is "fish"
            k -= 1
        part = name[s : s + k]
        content = [t for t in part if t not in GLUE]
        if not content:
            continue
        full = s == 0 and k == len(name)
        # A part of a name counts when it ends with the name's last word ("tea" for "Green
        # Tea") or only this product uses one of its words ("margherita", "carrot cake").
        tail = s + k == len(name)
        own = any(idx.token_products[t] == 1 and t not in idx.choice_words for t in content)
        if full or tail or own:
            rank = (len(content), int(full))
            if best is None or rank > best[0]:
                best = (rank, k)
    return best


def find_mentions(idx: MenuIndex, words: list[str], only: set[str] | None = None) -> list[Mention]:
    """Products named in ``words`` (already :meth:`MenuIndex.canon`-ised), left to right.

    The longest match wins; a whole name beats a part of one; equal matches stay ambiguous.
    ``only`` restricts the candidates (answering "which tea?").
    """
    out: list[Mention] = []
    i = 0
    while i < len(words):
        ranked: dict[str, tuple[tuple[int, int], int]] = {}
        if words[i] not in GLUE:
            for pid in idx.by_token.get(words[i], ()):
                if only is not None and pid not in only:
                    continue
                match = _match_at(idx, words, i, pid)
                if match:
                    ranked[pid] = match
        if not ranked:
            i += 1
            continue
        top = max(rank for rank, _ in ranked.values())
        ids = tuple(pid for pid, (rank, _) in ranked.items() if rank == top)
        length = ranked[ids[0]][1]
        prev = out[-1] if out else None
        if (
            prev is not None
            and set(prev.product_ids) & set(ids)
            and all(w in GLUE and w not in SEPARATORS for w in words[prev.end : i])
        ):
            # "a slice of carrot cake": two parts of one name, one item.
            both = tuple(p for p in prev.product_ids if p in ids)
            out[-1] = Mention(prev.start, i + length, both)
        else:
            out.append(Mention(i, i + length, ids))
        i += length
    return out


# ---------------------------------------------------------------- items: quantity and options


@dataclass
class ItemRequest:
    """One thing the customer asked for: product(s), how many, and the words about options."""

    product_ids: tuple[str, ...]
    quantity: int
    words: list[str]  # option words for this item
    override: list[str] = field(default_factory=list)  # "..., one with almond milk"
    stated: bool = False  # the quantity was written, not implied
    by_choice: bool = False  # named only by a choice ("an earl grey" -> Tea)

    def to_state(self) -> dict[str, Any]:
        return {
            "product_ids": list(self.product_ids),
            "quantity": self.quantity,
            "words": self.words,
            "override": self.override,
        }

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> ItemRequest:
        return cls(
            tuple(data["product_ids"]),
            int(data["quantity"]),
            list(data["words"]),
            list(data.get("override") or []),
        )


def _choice_mentions(idx: MenuIndex, words: list[str], mentions: list[Mention]) -> list[Mention]:
    """Add items named only by a choice only one product offers ("an earl grey" -> Tea)."""
    out = list(mentions)
    previous: set[str] = set()
    for a, b in _split(words, mentions):
        inside = [m for m in mentions if a <= m.start < b]
        if inside:
            previous = set(inside[-1].product_ids)
            continue
        for toks, owners in sorted(idx.choice_owners.items(), key=lambda kv: -len(kv[0])):
            if len(owners) != 1 or owners <= previous or all(t in COMMON for t in toks):
                continue
            hit = next(
                (i for i in range(a, b - len(toks) + 1) if tuple(words[i : i + len(toks)]) == toks),
                None,
            )
            if hit is not None and not _negated(words, hit):
                # A zero-width mention: the choice words stay as the item's option words.
                out.append(Mention(hit, hit, tuple(owners)))
                previous = set(owners)
                break
    return sorted(out, key=lambda m: m.start)


def _split(words: list[str], mentions: list[Mention]) -> list[tuple[int, int]]:
    """Segments between separators ("and", ",", "plus"...) outside product names."""
    inside = {j for m in mentions for j in range(m.start, m.end)}
    segments, start = [], 0
    for j, w in enumerate(words):
        if w in SEPARATORS and j not in inside:
            if j > start:
                segments.append((start, j))
            start = j + 1
    if start < len(words):
        segments.append((start, len(words)))
    return segments


def is_choice_number(idx: MenuIndex, pids: tuple[str, ...], words: list[str], j: int) -> bool:
    """Is the number at ``words[j]`` a choice of these products rather than a count?

    "a 40 cm margherita", "gyoza, 8 pieces", "a cola zero": yes. "8 gyozas", "lattes x2": no.
    """
    for pid in pids:
        product = idx.menu.get(pid)
        for g in product.options if product else ():
            group_words = {singular(t) for t in name_tokens(g.name)}
            for c in g.choices:
                toks = name_tokens(c.name)
                if not toks or toks[0] != words[j]:
                    continue
                rest = tuple(words[j + 1 : j + len(toks)])
                after = words[j + len(toks)] if j + len(toks) < len(words) else ""
                if len(toks) > 1 and rest == toks[1:]:
                    return True
                if len(toks) == 1 and (words[j].isalpha() or singular(after) in group_words):
                    return True
    return False


def _quantity(
    idx: MenuIndex, pids: tuple[str, ...], words: list[str]
) -> tuple[int, bool, set[int]]:
    """The quantity written closest before an item, and the positions it used."""
    numbers = [n for n in find_numbers(words) if not is_choice_number(idx, pids, words, n.start)]
    if not numbers:
        return 1, False, set()
    n = numbers[-1]
    return n.value, not n.article, set(range(n.start, n.end))


def parse_items(idx: MenuIndex, words: list[str]) -> list[ItemRequest]:
    """Each product named in ``words`` with its quantity and option words.

    "two large oat lattes and a croissant" -> latte x2 [large, oat], croissant x1;
    "3 cappuccinos, one with almond milk" -> cappuccino x2 and cappuccino x1 [almond].
    """
    mentions = find_mentions(idx, words)
    mentions = _choice_mentions(idx, words, mentions)
    if not mentions:
        return []
    items: list[ItemRequest] = []
    extras: dict[int, list[list[str]]] = defaultdict(list)
    pending_pre: list[str] = []
    for a, b in _split(words, mentions):
        inside = [m for m in mentions if a <= m.start < b]
        if not inside:
            if items:
                extras[len(items) - 1].append(words[a:b])
            else:
                pending_pre += words[a:b]
            continue
        cursor = a
        for k, m in enumerate(inside):
            pre = pending_pre + words[cursor : m.start]
            pending_pre = []
            stop = inside[k + 1].start if k + 1 < len(inside) else b
            post = words[m.end : stop]
            if k + 1 < len(inside):
                # Between two products: a number belongs to the next one.
                nums = find_numbers(post)
                cut = nums[-1].start if nums else len(post)
                post, cursor = post[:cut], m.end + cut
            qty, stated, used = _quantity(idx, m.product_ids, pre)
            after = [
                n
                for n in find_numbers(post)
                if not is_choice_number(idx, m.product_ids, post, n.start)
            ]
            if not stated and after and after[0].start == 0 and not after[0].article:
                # "espresso x2", "lattes, 3 please"
                qty, stated = after[0].value, True
                post = post[after[0].end :]
            # "two lattes: one large, one small": each number after the name starts a sub-item.
            marks = [
                n.start
                for n in find_numbers(post)
                if not n.article
                and not is_choice_number(idx, m.product_ids, post, n.start)
                and any(_choiceish(idx, w) for w in post[n.end :])
            ]
            ends = [*marks[1:], len(post)] if marks else []
            pieces = [post[x:y] for x, y in zip(marks, ends, strict=True)]
            post = post[: marks[0]] if marks else post
            own = [w for j, w in enumerate(pre) if j not in used] + post
            items.append(
                ItemRequest(m.product_ids, qty, own, stated=stated, by_choice=m.start == m.end)
            )
            extras[len(items) - 1].extend(pieces)
    out: list[ItemRequest] = []
    for i, item in enumerate(items):
        subs: list[ItemRequest] = []
        for seg in extras.get(i, []):
            nums = [
                n
                for n in find_numbers(seg)
                if not n.article and not is_choice_number(idx, item.product_ids, seg, n.start)
            ]
            if nums and any(_choiceish(idx, w) for w in seg):
                used = set(range(nums[0].start, nums[0].end))
                rest = [w for j, w in enumerate(seg) if j not in used]
                subs.append(
                    ItemRequest(item.product_ids, nums[0].value, item.words, rest, stated=True)
                )
            elif subs:
                subs[-1].override += seg
            else:
                item.words += seg
        taken = sum(s.quantity for s in subs)
        has_own = any(_choiceish(idx, w) for w in item.words)
        if subs and (item.quantity - taken < 0 or (item.quantity == taken and has_own)):
            out.append(item)  # "one latte with oat and one with soy": two lattes
        elif subs and item.quantity == taken:
            pass
        else:
            item.quantity -= taken
            out.append(item)
        out.extend(subs)
    return out


def _choiceish(idx: MenuIndex, word: str) -> bool:
    return word in idx.choice_words or word in _SIZE_WORDS


def extract_options(
    idx: MenuIndex, product: Product, words: list[str], override: list[str] | None = None
) -> tuple[list[dict[str, str]], list[str]]:
    """Option choices of ``product`` named in ``words`` (``override`` wins per group).

    Returns ``([{group, choice}], other)`` where ``other`` lists choices the customer named that
    this product does not offer ("a large croissant"). Negated choices ("no olives") are skipped.
    """
    picked = _choices_in(idx, product, words)
    if override:
        extra = _choices_in(idx, product, override)
        groups = {g for g, _ in extra[0]}
        picked = ([x for x in picked[0] if x[0] not in groups] + extra[0], picked[1] + extra[1])
    seen: set[tuple[str, str]] = set()
    options = []
    for g, c in picked[0]:
        if (g, c) not in seen:
            seen.add((g, c))
            options.append({"group": g, "choice": c})
    return options, list(dict.fromkeys(picked[1]))


_SIZE_WORDS = {"small": 0, "regular": 0, "medium": 1, "large": -1, "big": -1}
_NOT_A_CHOICE_HINT = COMMON | GLUE | {"no", "yes", "it", "up", "add", "extra", "syrup", "milk"}


def _choices_in(
    idx: MenuIndex, product: Product, words: list[str]
) -> tuple[list[tuple[str, str]], list[str]]:
    entries = []
    counts: dict[str, int] = defaultdict(int)
    for g in product.options:
        if yes_no(g):
            continue
        for c in g.choices:
            toks = name_tokens(c.name)
            entries.append((toks, g, c))
            for t in set(toks):
                counts[t] += 1
    entries.sort(key=lambda e: -len(e[0]))
    # Words naming a yes/no group ("with butter") are that group's, never another's choice.
    flags = {
        t
        for g in product.options
        if yes_no(g)
        for t in name_tokens(g.name)
        if t not in _NOT_A_CHOICE_HINT
    }
    found: list[tuple[str, str]] = []
    other: list[str] = []
    i = 0
    while i < len(words):
        hits = [e for e in entries if e[0] and tuple(words[i : i + len(e[0])]) == e[0]]
        if not hits:
            # One distinctive word of a longer choice: "vanilla" for "Vanilla syrup".
            hits = [
                e
                for e in entries
                if words[i] in e[0] and counts[words[i]] == 1 and words[i] not in _NOT_A_CHOICE_HINT
            ]
        size = (
            len(hits[0][0]) if hits and tuple(words[i : i + len(hits[0][0])]) == hits[0][0] else 1
        )
        if not hits:
            sized = _size_word(product, words[i])
            if sized is not None and not _negated(words, i):
                found.append(sized)
            elif (
                words[i] in idx.single_choices and words[i] not in flags and not _negated(words, i)
            ):
                other.append(idx.single_choices[words[i]])
            i += 1
            continue
        if len(hits) > 1:
            # The same choice in two groups: the group named next to it decides ("oat milk").
            near = set(words[max(0, i - 2) : i + size + 2])
            named = [h for h in hits if set(name_tokens(h[1].name)) & near]
            hits = named or hits
        if not _negated(words, i):
            found.append((hits[0][1].name, hits[0][2].name))
        i += size
    for g in product.options:
        if yes_no(g):
            keys = [t for t in name_tokens(g.name) if t not in _NOT_A_CHOICE_HINT]
            at = next((j for j, w in enumerate(words) if w in keys), None)
            if at is not None:
                choice = "no" if _negated(words, at) else "yes"
                found.append(
                    (g.name, next(c.name for c in g.choices if c.name.casefold() == choice))
                )
    return found, other


def _size_word(product: Product, word: str) -> tuple[str, str] | None:
    """ "large" for a "Size: 30 cm | 40 cm" group: the biggest; "small": the smallest."""
    if word not in _SIZE_WORDS:
        return None
    for g in product.options:
        if g.name.casefold() == "size" and not g.choice(word) and len(g.choices) >= 2:
            pos = _SIZE_WORDS[word]
            if pos == 1 and len(g.choices) != 3:
                return None
            return g.name, g.choices[pos].name
    return None


def _negated(words: list[str], i: int) -> bool:
    return any(w in NEGATORS for w in words[max(0, i - 2) : i])


_CATEGORY_FILLER = frozenset(["more", "other", "others", "misc", "etc", "things", "stuff"])


def find_categories(idx: MenuIndex, words: list[str]) -> list[str]:
    """Categories whose every main word is in ``words`` ("teas" names "Tea & more")."""
    present = set(words)
    found = []
    for cat, toks in idx.categories.items():
        main = [t for t in toks if t not in GLUE and t not in _CATEGORY_FILLER]
        if main and all(t in present for t in main):
            found.append(cat)
    return found
