"""Confirmation phrases: which messages hand the thread to the Cashier."""

from __future__ import annotations

import pytest

from server.chat.phrases import is_checkout_phrase

CONFIRMS = [
    "that's all",
    "That’s all, thanks!",
    "no, that's all",
    "that is all",
    "that's it",
    "That's it for me",
    "that will be all",
    "that'll be all thanks",
    "that'll do",
    "checkout",
    "Checkout?",
    "check out",
    "check out please",
    "I'd like to check out",
    "can I check out?",
    "order it",
    "ok order it",
    "place the order",
    "please place my order",
    "confirm my order",
    "I'm done",
    "i am done",
    "all done",
    "done",
    "Done, thanks",
    "ready to pay",
    "I'm ready to pay",
    "let's pay",
    "can I pay now?",
    "nothing else",
    "nothing else, thank you",
    "a latte. that's all",
    "proceed to checkout",
]

NOT_CONFIRMS = [
    "",
    "is that it?",
    "Is that all?",
    "that's it?",
    "don't check out yet",
    "do not place the order",
    "not yet",
    "that's not all",
    "I'm not done",
    "wait, I'm not done yet",
    "how do I check out?",
    "what's the total before I check out?",
    "check out the menu",
    "I want to check out your pastries",
    "two lattes please",
    "what is in my cart",
    "is the croissant done fresh?",
    "I'll pay later",
    "hello",
    "I'm ready to order",
    "done?",
]


@pytest.mark.parametrize("text", CONFIRMS)
def test_confirmation_phrases_hand_off(text: str) -> None:
    assert is_checkout_phrase(text)


@pytest.mark.parametrize("text", NOT_CONFIRMS)
def test_questions_negations_and_other_messages_do_not(text: str) -> None:
    assert not is_checkout_phrase(text)
