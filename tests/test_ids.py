"""Ids name what they identify, use a URL-safe alphabet and do not repeat."""

from __future__ import annotations

import collections

from server.ids import new_id


def test_id_has_prefix_length_and_alphabet() -> None:
    value = new_id("ord")
    prefix, _, body = value.partition("_")
    assert prefix == "ord"
    assert len(body) == 16
    assert set(body) <= set("0123456789abcdefghjkmnpqrstvwxyz")
    assert len(new_id("thr", 24)) == len("thr_") + 24


def test_ids_are_unique_and_every_character_is_used() -> None:
    ids = {new_id("x") for _ in range(20_000)}
    assert len(ids) == 20_000
    counts = collections.Counter("".join(i[2:] for i in ids))
    # 320,000 characters over 32 symbols: each near 10,000; a stuck or biased mapping is far off.
    assert len(counts) == 32
    assert min(counts.values()) > 8_000 and max(counts.values()) < 12_000
