"""The refund ledger (domain only): ``reconcile``, ``Balance``, ``check_refund``, ``check_void`` and
``intent_key``, over an order 360 folded from canonical payment events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recoverydesk.domain.errors import Conflict
from recoverydesk.domain.events import CanonicalEvent, EventSource, EventType, OrderFacts
from recoverydesk.domain.ledger import (
    Balance,
    EntryKind,
    EntryStatus,
    LedgerEntry,
    LedgerRefusal,
    Reported,
    check_refund,
    check_void,
    intent_key,
    reconcile,
    reported_refunds,
)
from recoverydesk.domain.orders import OrderView

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
REF = "7001"


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def ev(kind: str, minute: float, eid: str, source: EventSource, **data: Any) -> CanonicalEvent:
    return CanonicalEvent(
        id=eid,
        source=source,
        type=EventType(kind),
        occurred_at=at(minute),
        order=OrderFacts(ref=REF),
        data=data,
    )


def authorized(amount: str, minute: float = 0) -> CanonicalEvent:
    return ev("payment.authorized", minute, f"psp:auth:{minute}", EventSource.PSP, amount=amount)


def captured(amount: str, capture_id: str = "c1", minute: float = 1) -> CanonicalEvent:
    return ev(
        "payment.captured",
        minute,
        f"psp:capture:{capture_id}",
        EventSource.PSP,
        amount=amount,
        capture_id=capture_id,
    )


def refunded(
    amount: str, refund_id: str, minute: float = 10, intent: str | None = None
) -> CanonicalEvent:
    data: dict[str, Any] = {"amount": amount, "refund_id": refund_id}
    if intent is not None:
        data["intent"] = intent
    return ev(
        "payment.refunded", minute, f"shopify:refund:{refund_id}", EventSource.SHOPIFY, **data
    )


def voided(minute: float = 2) -> CanonicalEvent:
    return ev("payment.voided", minute, f"psp:void:{minute}", EventSource.PSP)


def order_of(*events: CanonicalEvent) -> OrderView:
    order = OrderView(ref=REF)
    for event in sorted(events, key=lambda e: e.sort_key):
        order.apply(event)
    return order


def entry(
    amount: str,
    key: str,
    status: EntryStatus = EntryStatus.SENT,
    *,
    kind: EntryKind = EntryKind.REFUND,
    reference: str | None = None,
    minute: float = 5,
) -> LedgerEntry:
    return LedgerEntry(
        order_ref=REF,
        kind=kind,
        key=key,
        amount=Decimal(amount),
        currency="USD",
        actor="stopship",
        created_at=at(minute),
        status=status,
        reference=reference,
    )


def balance(**fields: Any) -> Balance:
    values: dict[str, Any] = {
        "authorized": Decimal("100"),
        "captured": Decimal("100"),
        "voided": False,
        "refunded_reported": Decimal("0"),
        "refunded_elsewhere": Decimal("0"),
        "elsewhere": (),
        "sent_unreported": Decimal("0"),
        "pending": Decimal("0"),
    }
    values.update({k: Decimal(v) if isinstance(v, str) else v for k, v in fields.items()})
    return Balance(**values)


# --- reconcile: matching reported refunds to the desk's entries ----------------------------------


def test_a_reported_refund_confirms_the_entry_with_its_provider_reference() -> None:
    # given a desk refund of 30.00 the provider accepted as re_1, and another sent one of 30.00
    mine = entry("30.00", "rd:1", reference="re_1", minute=5)
    other = entry("30.00", "rd:2", reference="re_2", minute=4)
    order = order_of(authorized("100"), captured("100"), refunded("30.00", "re_1"))
    # when the ledger reconciles
    money, changed = reconcile(order, [other, mine])
    # then re_1 confirms the entry that carries its reference, not the older one of same amount
    assert changed == [mine]
    assert (mine.status, mine.confirmed_by) == (EntryStatus.CONFIRMED, "re_1")
    assert (other.status, other.confirmed_by) == (EntryStatus.SENT, None)
    # and nothing counts as refunded elsewhere; the other entry is sent and unreported
    assert money.refunded_elsewhere == 0
    assert money.elsewhere == ()
    assert (money.refunded_reported, money.sent_unreported) == (Decimal("30.00"), Decimal("30.00"))
    assert money.refunded == Decimal("60.00")
    assert money.refundable == Decimal("40.00")


def test_a_reported_refund_confirms_the_entry_whose_key_it_names_as_intent() -> None:
    # given a pending desk refund (no provider reference yet) and an event naming its key
    mine = entry("25.00", "rd:m:case-9:refund:25", EntryStatus.PENDING)
    order = order_of(
        authorized("100"),
        captured("100"),
        refunded("25.00", "sh_77", intent="rd:m:case-9:refund:25"),
    )
    # when the ledger reconciles
    money, changed = reconcile(order, [mine])
    # then the entry is confirmed by that refund, and no longer reserved
    assert changed == [mine]
    assert (mine.status, mine.confirmed_by) == (EntryStatus.CONFIRMED, "sh_77")
    assert (money.pending, money.refunded_elsewhere) == (Decimal(0), Decimal(0))
    assert money.refundable == Decimal("75.00")


def test_a_reported_refund_that_names_no_desk_entry_is_never_matched_on_its_amount() -> None:
    # given two sent desk refunds of 20.00 and a pending one, and a storefront refund of 20.00
    # that names neither the provider's reference nor the desk's intent
    old = entry("20.00", "rd:b", minute=3)
    new = entry("20.00", "rd:a", minute=4)
    pending = entry("20.00", "rd:c", EntryStatus.PENDING, minute=1)
    order = order_of(authorized("100"), captured("100"), refunded("20.00", "anon"))
    # when the ledger reconciles
    money, changed = reconcile(order, [new, pending, old])
    # then nothing is confirmed on the amount alone: the refund counts as made elsewhere, and the
    # desk's own still count, so what is left to refund can only be too small, never too large
    assert changed == []
    assert (old.status, new.status, pending.status) == (
        EntryStatus.SENT,
        EntryStatus.SENT,
        EntryStatus.PENDING,
    )
    assert [r.refund_id for r in money.elsewhere] == ["anon"]
    assert (money.sent_unreported, money.pending) == (Decimal("40.00"), Decimal("20.00"))
    assert money.refundable == Decimal("20.00")


def test_a_reported_refund_of_another_amount_is_counted_elsewhere() -> None:
    # given a sent desk refund of 20.00 and a storefront refund of 15.00
    mine = entry("20.00", "rd:a")
    order = order_of(authorized("100"), captured("100"), refunded("15.00", "admin_1"))
    # when the ledger reconciles
    money, changed = reconcile(order, [mine])
    # then the storefront refund is elsewhere; the desk one is still sent and unreported
    assert changed == []
    assert money.elsewhere == (Reported("admin_1", Decimal("15.00")),)
    assert money.refunded_elsewhere == Decimal("15.00")
    assert money.refunded == Decimal("35.00")
    assert money.refundable == Decimal("65.00")


def test_refunds_elsewhere_are_counted_and_never_refunded_again() -> None:
    # given 80.00 captured and refunds from the storefront admin and the PSP dashboard
    order = order_of(
        authorized("80"),
        captured("80"),
        refunded("30.00", "admin_1"),
        refunded("50.00", "psp_2", minute=11),
    )
    # when the ledger reconciles (the desk has no entries)
    money, _ = reconcile(order, [])
    # then both are elsewhere, nothing is left, and a new refund is refused
    assert money.refunded_elsewhere == Decimal("80.00")
    assert {r.refund_id for r in money.elsewhere} == {"admin_1", "psp_2"}
    assert money.refundable == 0
    with pytest.raises(LedgerRefusal) as refused:
        check_refund(money, Decimal("0.01"))
    assert refused.value.code == "refund_exceeds_captured"


def test_a_refund_reported_twice_is_counted_once() -> None:
    # given the same refund id reported by the storefront and the PSP
    order = order_of(
        authorized("100"),
        captured("100"),
        refunded("40.00", "re_1"),
        ev(
            "payment.refunded",
            12,
            "psp:refund:re_1",
            EventSource.PSP,
            amount="40.00",
            refund_id="re_1",
        ),
    )
    # when the ledger reconciles
    money, _ = reconcile(order, [])
    # then 40.00 is refunded, not 80.00
    assert (money.refunded_reported, money.refunded_elsewhere) == (Decimal("40.00"),) * 2


def test_reconcile_is_idempotent() -> None:
    # given a reported refund confirming a desk entry
    mine = entry("30.00", "rd:1", reference="re_1")
    order = order_of(authorized("100"), captured("100"), refunded("30.00", "re_1"))
    first, changed = reconcile(order, [mine])
    # when the ledger reconciles again
    second, changed_again = reconcile(order, [mine])
    # then nothing changes the second time, and the money is the same
    assert changed == [mine]
    assert changed_again == []
    assert first == second


def test_a_confirmed_entry_stays_with_its_refund_and_is_not_matched_again() -> None:
    # given an entry already confirmed by re_1, and a second reported refund of the same amount
    mine = entry("30.00", "rd:1", EntryStatus.CONFIRMED)
    mine.confirmed_by = "re_1"
    order = order_of(
        authorized("100"), captured("100"), refunded("30.00", "re_1"), refunded("30.00", "re_2")
    )
    # when the ledger reconciles
    money, changed = reconcile(order, [mine])
    # then re_2 is elsewhere: one entry confirms one refund
    assert changed == []
    assert money.elsewhere == (Reported("re_2", Decimal("30.00")),)


def test_only_refund_entries_take_part_in_matching() -> None:
    # given a sent void of 30.00 and a reported refund of 30.00
    void = entry("30.00", "rd:void", kind=EntryKind.VOID)
    order = order_of(authorized("100"), captured("100"), refunded("30.00", "re_1"))
    # when the ledger reconciles
    money, changed = reconcile(order, [void])
    # then the void is not taken for the refund
    assert changed == []
    assert void.confirmed_by is None
    assert money.refunded_elsewhere == Decimal("30.00")


def test_pending_reservations_reduce_what_is_refundable() -> None:
    # given 100.00 captured and a desk refund of 70.00 reserved (pending)
    order = order_of(authorized("100"), captured("100"))
    reserved = entry("70.00", "rd:1", EntryStatus.PENDING)
    # when the ledger reconciles
    money, _ = reconcile(order, [reserved])
    # then a concurrent second request sees only 30.00 left
    assert (money.pending, money.refundable) == (Decimal("70.00"), Decimal("30.00"))
    check_refund(money, Decimal("30.00"))
    with pytest.raises(LedgerRefusal) as refused:
        check_refund(money, Decimal("30.01"))
    assert refused.value.code == "refund_exceeds_captured"


@pytest.mark.parametrize(
    ("status", "held"),
    [
        (EntryStatus.PENDING, True),
        (EntryStatus.SENT, True),
        (EntryStatus.CONFIRMED, True),
        (EntryStatus.REFUSED, False),
        (EntryStatus.SKIPPED, False),
    ],
)
def test_refused_and_skipped_entries_hold_no_money(status: EntryStatus, held: bool) -> None:
    # given a desk refund of 60.00 in some status, and nothing reported
    order = order_of(authorized("100"), captured("100"))
    # when the ledger reconciles
    money, _ = reconcile(order, [entry("60.00", "rd:1", status)])
    # then only a pending, sent or confirmed refund reduces what is left; a confirmation that
    # no reported refund backs any more counts as sent, not as nothing
    assert status.holds_money is held
    expected = Decimal("40.00") if held else 100
    assert money.refundable == expected


def test_the_refundable_amount_never_goes_below_zero() -> None:
    # given 50.00 captured, 40.00 refunded elsewhere and a pending reservation of 30.00
    order = order_of(authorized("50"), captured("50"), refunded("40.00", "admin_1"))
    money, _ = reconcile(order, [entry("30.00", "rd:1", EntryStatus.PENDING)])
    # then nothing is left, not -20.00
    assert money.refundable == 0


def test_reported_refunds_carry_the_intent_of_the_first_event() -> None:
    # given a refund first reported with an intent, then again without
    order = order_of(
        refunded("10.00", "re_1", minute=1, intent="rd:k"),
        ev(
            "payment.refunded",
            2,
            "psp:refund:re_1",
            EventSource.PSP,
            amount="10.00",
            refund_id="re_1",
        ),
    )
    # then the reported refund keeps the intent
    assert reported_refunds(order) == [Reported("re_1", Decimal("10.00"), "rd:k")]


@pytest.mark.parametrize(
    ("reference", "intent"),
    [pytest.param("re_9", None, id="by-reference"), pytest.param(None, "rd:1", id="by-intent")],
)
def test_a_reference_match_wins_over_an_amount_match_of_another_refund(
    reference: str | None, intent: str | None
) -> None:
    """BUG: ``reconcile`` walks the reported refunds one at a time in refund-id order and gives
    each the best match *for it*. A storefront refund ``adm_1`` of 30.00 (sorted first) takes
    the desk's sent entry of 30.00 by amount, although a later-sorted reported refund ``re_9``
    names that entry by provider reference (or by its key as ``intent``). ``re_9`` then finds
    its entry taken and is counted as refunded elsewhere. The totals still add up, but the desk's
    own refund is reported as made elsewhere (timeline, KPIs) and the entry is confirmed by the
    wrong refund id. Expected (the module docstring: "by provider reference, then by idempotency
    key, then by amount"): reference and intent matches over all reported refunds come before
    any amount match."""
    # given the desk's refund of 30.00, sent (known by its provider reference or its key)
    mine = entry("30.00", "rd:1", reference=reference)
    # and both it and a storefront refund of the same amount reported
    order = order_of(
        authorized("100"),
        captured("100"),
        refunded("30.00", "adm_1"),
        refunded("30.00", "re_9", intent=intent),
    )
    # when the ledger reconciles
    money, _ = reconcile(order, [mine])
    # then the entry is confirmed by its own refund, and the storefront one is elsewhere
    assert mine.confirmed_by == "re_9"
    assert money.elsewhere == (Reported("adm_1", Decimal("30.00")),)


def test_voided_comes_from_the_order_or_from_a_sent_void_entry() -> None:
    # given an authorization, and a void entry in some status
    order = order_of(authorized("100"))
    pending = entry("100", "rd:v", EntryStatus.PENDING, kind=EntryKind.VOID)
    sent = entry("100", "rd:v", EntryStatus.SENT, kind=EntryKind.VOID)
    refused = entry("100", "rd:v", EntryStatus.REFUSED, kind=EntryKind.VOID)
    # then only a sent (or confirmed) void, or a voided event, makes it voided
    assert reconcile(order, [pending])[0].voidable is True
    assert reconcile(order, [refused])[0].voidable is True
    assert reconcile(order, [sent])[0].voided is True
    assert reconcile(order_of(authorized("100"), voided()), [])[0].voided is True


# --- Balance -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "voidable"),
    [
        ({"captured": "0"}, True),
        ({"captured": "0", "voided": True}, False),
        ({"captured": "0", "authorized": "0"}, False),
        ({"captured": "0.01"}, False),
    ],
)
def test_only_an_uncaptured_unvoided_authorization_is_voidable(
    fields: dict[str, Any], voidable: bool
) -> None:
    assert balance(**fields).voidable is voidable


def test_refundable_is_captured_less_refunded_less_reserved() -> None:
    money = balance(refunded_reported="10", sent_unreported="20", pending="30")
    assert (money.refunded, money.refundable) == (Decimal("30"), Decimal("40"))


# --- check_refund and check_void -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("money", "amount", "code"),
    [
        pytest.param(balance(), "0", "invalid_amount", id="zero"),
        pytest.param(balance(), "-5", "invalid_amount", id="negative"),
        pytest.param(balance(captured="0"), "5", "nothing_captured", id="only-authorized"),
        pytest.param(balance(captured="0", authorized="0"), "5", "nothing_captured", id="no-money"),
        pytest.param(balance(), "100.01", "refund_exceeds_captured", id="above-captured"),
        pytest.param(balance(refunded_reported="60"), "40.01", "refund_exceeds_captured",
                     id="above-what-is-left"),
        pytest.param(balance(pending="100"), "1", "refund_exceeds_captured", id="all-reserved"),
    ],
)  # fmt: skip
def test_check_refund_refuses_with_the_rule_code(money: Balance, amount: str, code: str) -> None:
    # when a refund the ledger forbids is checked / then it is refused with its rule's code
    with pytest.raises(LedgerRefusal) as refused:
        check_refund(money, Decimal(amount))
    assert refused.value.code == code
    assert isinstance(refused.value, Conflict)


def test_check_refund_says_to_void_when_only_authorized() -> None:
    with pytest.raises(LedgerRefusal, match="void the authorization"):
        check_refund(balance(captured="0"), Decimal("5"))
    with pytest.raises(LedgerRefusal, match="nothing to refund"):
        check_refund(balance(captured="0", authorized="0"), Decimal("5"))


@pytest.mark.parametrize(
    ("money", "amount"),
    [
        (balance(), "100"),
        (balance(), "0.01"),
        (balance(refunded_reported="60", pending="10"), "30"),
    ],
)
def test_check_refund_allows_up_to_what_is_left(money: Balance, amount: str) -> None:
    check_refund(money, Decimal(amount))  # does not raise


@pytest.mark.parametrize(
    ("money", "code"),
    [
        pytest.param(balance(), "payment_captured", id="captured"),
        pytest.param(balance(captured="0", voided=True), "already_voided", id="voided"),
        pytest.param(balance(captured="0", authorized="0"), "nothing_to_void", id="no-auth"),
        pytest.param(balance(voided=True), "payment_captured", id="captured-wins"),
    ],
)
def test_check_void_refuses_with_the_rule_code(money: Balance, code: str) -> None:
    with pytest.raises(LedgerRefusal) as refused:
        check_void(money)
    assert refused.value.code == code


def test_check_void_allows_an_uncaptured_authorization() -> None:
    check_void(balance(captured="0"))  # does not raise


# --- intent_key ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("one", "other"),
    [("120.00", "120"), ("120.50", "120.5"), ("0.10", "0.1"), ("1E+2", "100"), ("100", "100.000")],
)
def test_the_same_amount_written_differently_gives_the_same_key(one: str, other: str) -> None:
    key = intent_key("acme", "case-9", EntryKind.REFUND, Decimal(one))
    assert key == intent_key("acme", "case-9", EntryKind.REFUND, Decimal(other))
    assert "E" not in key


def test_the_key_names_merchant_scope_action_and_amount() -> None:
    assert (
        intent_key("acme", "case-9", EntryKind.REFUND, Decimal("120.00"))
        == "rd:acme:case-9:refund:120"
    )
    base = intent_key("acme", "case-9", EntryKind.REFUND, Decimal("120"))
    others = {
        intent_key("other", "case-9", EntryKind.REFUND, Decimal("120")),
        intent_key("acme", "case-10", EntryKind.REFUND, Decimal("120")),
        intent_key("acme", "case-9", EntryKind.VOID, Decimal("120")),
        intent_key("acme", "case-9", EntryKind.REFUND, Decimal("120.01")),
    }
    assert base not in others
    assert len(others) == 4


@given(st.decimals(min_value=Decimal("0.01"), max_value=Decimal("1000000"), places=2))
def test_intent_key_depends_only_on_the_value_of_the_amount(amount: Decimal) -> None:
    padded = Decimal(f"{amount}000")
    assert intent_key("m", "s", EntryKind.REFUND, amount) == intent_key(
        "m", "s", EntryKind.REFUND, padded
    )


# --- a property: whatever arrives, the money stays consistent ------------------------------------

AMOUNTS = st.sampled_from(["5.00", "10.00", "12.50", "20.00", "30.00", "50.00"])
STATUSES = st.sampled_from(list(EntryStatus))


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[CanonicalEvent], list[LedgerEntry]]:
    """Captures, desk refund entries in any status (with or without the provider's reference
    ``re_<n>``), and reported refunds: the desk's own (by its reference, maybe naming its key as
    intent), refunds made elsewhere, and repeats of either. The data is consistent: a reported
    refund's id and intent never point at two different entries."""
    entries: list[LedgerEntry] = []
    for n in range(draw(st.integers(0, 5))):
        made = entry(draw(AMOUNTS), f"rd:{n}", draw(STATUSES), minute=draw(st.integers(0, 9)))
        made.reference = draw(st.sampled_from([None, f"re_{n}"]))
        entries.append(made)
    events: list[CanonicalEvent] = [authorized("200")]
    for n in range(draw(st.integers(0, 3))):
        events.append(captured(draw(AMOUNTS), f"c{n}", minute=1 + n))
    for n in range(draw(st.integers(0, 6))):
        desk = draw(st.integers(0, 5))
        refund_id, intent = draw(
            st.sampled_from(
                [
                    (f"re_{desk}", None),  # the desk's refund, by its provider reference
                    (f"re_{desk}", f"rd:{desk}"),  # ... naming its idempotency key too
                    (f"admin_{n}", None),  # made elsewhere
                    ("admin_0", None),  # reported again
                ]
            )
        )
        events.append(refunded(draw(AMOUNTS), refund_id, minute=10 + n, intent=intent))
    return events, entries


def fresh(entries: Sequence[LedgerEntry]) -> list[LedgerEntry]:
    return [replace(e, detail=dict(e.detail)) for e in entries]


@given(history=histories(), shuffle=st.randoms(use_true_random=False))
@settings(max_examples=300, deadline=None)
def test_reconcile_keeps_the_money_consistent(
    history: tuple[list[CanonicalEvent], list[LedgerEntry]], shuffle: Any
) -> None:
    # given any captures, reported refunds and desk entries
    events, original = history
    order = order_of(*events)
    entries = fresh(original)
    reported = {r.refund_id: r.amount for r in reported_refunds(order)}
    # when the ledger reconciles
    money, changed = reconcile(order, entries)
    refunds = [e for e in entries if e.kind is EntryKind.REFUND]
    # then the refundable amount is never negative and is captured less refunded less reserved
    assert money.refundable >= 0
    assert money.refundable == max(money.captured - money.refunded - money.pending, 0)
    assert money.captured == order.payment.captured
    # and every reported refund is counted exactly once: confirming one entry, or elsewhere
    assert money.refunded_reported == sum(reported.values(), Decimal(0))
    confirmed_now = [e.confirmed_by for e in refunds if e.confirmed_by in reported]
    elsewhere_ids = [r.refund_id for r in money.elsewhere]
    assert len(confirmed_now) == len(set(confirmed_now))
    assert sorted(confirmed_now + elsewhere_ids) == sorted(reported)
    assert money.refunded_elsewhere == sum((r.amount for r in money.elsewhere), Decimal(0))
    assert 0 <= money.refunded_elsewhere <= money.refunded_reported
    # and the desk's own money is what its entries hold
    assert money.pending == sum((e.amount for e in refunds if e.status is EntryStatus.PENDING), 0)
    assert money.sent_unreported == sum(
        (e.amount for e in refunds if e.status is EntryStatus.SENT), Decimal(0)
    )
    assert all(
        e.status is EntryStatus.CONFIRMED or (e.status is EntryStatus.SENT and not e.confirmed_by)
        for e in changed
    )
    # and reconciling again changes nothing
    again, changed_again = reconcile(order, entries)
    assert changed_again == []
    assert again == money
    # and the order in which the entries are listed does not matter
    listed = fresh(original)
    shuffle.shuffle(listed)
    assert reconcile(order, listed)[0] == money


@given(history=histories())
@settings(max_examples=200, deadline=None)
def test_a_refund_the_ledger_allows_never_takes_refunds_past_captures(
    history: tuple[list[CanonicalEvent], list[LedgerEntry]],
) -> None:
    # given any history the ledger reconciled
    events, original = history
    order = order_of(*events)
    money, _ = reconcile(order, fresh(original))
    # when the largest refund check_refund allows is reserved
    if money.refundable <= 0:
        with pytest.raises(LedgerRefusal):
            check_refund(money, Decimal("0.01"))
        return
    check_refund(money, money.refundable)
    entries = [*fresh(original), entry(str(money.refundable), "rd:new", EntryStatus.PENDING)]
    after, _ = reconcile(order, entries)
    # then nothing is left, and refunded + reserved does not exceed what was captured
    # (unless it already did before: refunds reported elsewhere can exceed captures)
    assert after.refundable == 0
    assert after.refunded + after.pending <= max(after.captured, money.refunded + money.pending)
    with pytest.raises(LedgerRefusal) as refused:
        check_refund(after, Decimal("0.01"))
    assert refused.value.code in ("refund_exceeds_captured", "nothing_captured")


@given(history=histories())
@settings(max_examples=300, deadline=None)
def test_a_refund_the_desk_can_recognise_is_never_counted_elsewhere(
    history: tuple[list[CanonicalEvent], list[LedgerEntry]],
) -> None:
    """The property form of ``test_a_reference_match_wins_over_an_amount_match_of_another_
    refund`` (an amount match of an earlier-sorted refund must not take the entry a later refund
    names by reference or intent)."""
    # given any consistent history
    events, original = history
    order = order_of(*events)
    entries = fresh(original)
    # when the ledger reconciles
    money, _ = reconcile(order, entries)
    # then a reported refund carrying a desk entry's provider reference or idempotency key is
    # never counted as refunded elsewhere
    references = {e.reference for e in entries if e.reference is not None}
    keys = {e.key for e in entries}
    for elsewhere in money.elsewhere:
        assert elsewhere.refund_id not in references, elsewhere
        assert elsewhere.intent not in keys, elsewhere
