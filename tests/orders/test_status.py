"""The order state machine, table-driven: every pair of statuses, allowed or not."""

from __future__ import annotations

import pytest

from server.orders import status as st

ALLOWED = {
    ("awaiting_payment", "paid"),
    ("awaiting_payment", "payment_failed"),
    ("awaiting_payment", "expired"),
    ("awaiting_payment", "cancelled"),
    ("payment_failed", "paid"),  # a late success still pays
    ("payment_failed", "awaiting_payment"),  # the customer tries again
    ("payment_failed", "expired"),
    ("payment_failed", "cancelled"),
    ("expired", "paid"),
    ("expired", "awaiting_payment"),
    ("expired", "cancelled"),
    ("paid", "preparing"),
    ("paid", "ready"),
    ("paid", "completed"),
    ("paid", "refunded"),
    ("preparing", "ready"),
    ("preparing", "completed"),
    ("preparing", "refunded"),
    ("ready", "completed"),
    ("ready", "refunded"),
    ("completed", "refunded"),
}

ALL_PAIRS = [(a, b) for a in st.STATUSES for b in st.STATUSES]


@pytest.mark.parametrize(("current", "target"), ALL_PAIRS)
def test_transition_table(current: str, target: str) -> None:
    assert st.can_move(current, target) is ((current, target) in ALLOWED)


@pytest.mark.parametrize("status", ["paid", "preparing", "ready", "completed"])
@pytest.mark.parametrize("late", ["awaiting_payment", "payment_failed", "expired", "paid"])
def test_a_paid_order_never_goes_back_to_unpaid(status: str, late: str) -> None:
    assert not st.can_move(status, late)


def test_final_statuses_have_no_way_out() -> None:
    for final in ("cancelled", "refunded"):
        assert not any(st.can_move(final, other) for other in st.STATUSES)


def test_unknown_status_moves_nowhere() -> None:
    assert not st.can_move("shipped", "paid")
    assert not st.can_move("paid", "shipped")
