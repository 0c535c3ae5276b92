"""Root causes (F16): why a case's exception happened, and who owns the upstream fix.

A merchant keeps an ordered list of root causes. When the source systems confirm a case's
outcome, the first entry that matches the case (its category, the reason code of its outcome and
the outcome itself; an entry that names none of them matches every case) is the case's root
cause, and the case closes. When none matches, the case is resolved but stays open to a person,
who closes it with a root cause from the list.

``DEFAULT_ROOT_CAUSES`` is the list a merchant gets when its configuration names none: one entry
(or more) for each built-in category, the more specific entries (a reason code, an outcome) first.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from recoverydesk.domain.cases import Category, Outcome, ReasonCode


@dataclass(frozen=True, slots=True)
class RootCause:
    """One entry of a merchant's root-cause list. ``owner`` is the team or person who owns the
    upstream fix (free text, or a member of the desk)."""

    code: str
    label: str
    owner: str
    categories: frozenset[str] = frozenset()
    reason_codes: frozenset[str] = frozenset()
    outcomes: frozenset[str] = frozenset()

    def matches(self, category: str, reason_code: str | None, outcome: str | None) -> bool:
        """Every part the entry names holds for the case; a part it leaves empty always does."""
        return (
            (not self.categories or category in self.categories)
            and (not self.reason_codes or reason_code in self.reason_codes)
            and (not self.outcomes or outcome in self.outcomes)
        )


def root_cause_for(
    causes: Iterable[RootCause],
    *,
    category: str,
    reason_code: str | None,
    outcome: str | None,
) -> RootCause | None:
    """The first entry of ``causes`` that matches the case, or None."""
    for cause in causes:
        if cause.matches(str(category), reason_code, outcome):
            return cause
    return None


# The root cause the desk gives a drift case that a late event showed never stood (the case is
# closed for the audit trail, see ``casebook.sync_cases``): no list entry is asked for it.
DRIFT_WITHDRAWN = "drift_withdrawn"


def _cause(
    code: str,
    label: str,
    owner: str,
    categories: Iterable[str],
    *,
    reason_codes: Iterable[str] = (),
    outcomes: Iterable[str] = (),
) -> RootCause:
    return RootCause(
        code,
        label,
        owner,
        categories=frozenset(str(c) for c in categories),
        reason_codes=frozenset(str(r) for r in reason_codes),
        outcomes=frozenset(str(o) for o in outcomes),
    )


DEFAULT_ROOT_CAUSES: tuple[RootCause, ...] = (
    _cause(
        "confirmed_fraud",
        "Fraud confirmed: the order was cancelled",
        "risk",
        [Category.FRAUD_HOLD],
        reason_codes=[ReasonCode.FRAUD],
    ),
    _cause(
        "fraud_screening_false_positive",
        "Fraud screening held a good order",
        "risk",
        [Category.FRAUD_HOLD],
    ),
    _cause(
        "customer_card_declined",
        "The customer's card was declined or its authorization expired",
        "payments (PSP)",
        [Category.PAYMENT_FAILED],
    ),
    _cause(
        "address_not_validated_at_checkout",
        "The checkout accepted an address it should have validated",
        "storefront",
        [Category.ADDRESS_INVALID],
    ),
    _cause(
        "inventory_sync_lag",
        "Sold online but short in the warehouse (inventory sync lag)",
        "ERP/WMS integration",
        [Category.INVENTORY_MISMATCH, Category.SPLIT_SHIPMENT],
    ),
    _cause(
        "warehouse_pick_error",
        "Pick/pack exception, label failure or hand-off gap at the warehouse",
        "3PL",
        [Category.WMS_EXCEPTION],
    ),
    _cause(
        "missed_ship_cutoff",
        "The warehouse missed the ship cutoff (backlog, carrier cutoff)",
        "3PL",
        [Category.LATE_SHIPMENT_RISK],
    ),
    _cause(
        "late_cancel_request",
        "The cancel request came after the warehouse could stop the order",
        "CX",
        [Category.CHANGE_REQUEST],
        outcomes=[Outcome.DENIED, Outcome.CONVERTED_TO_RETURN],
    ),
    _cause(
        "duplicate_order",
        "The customer placed the same order twice",
        "storefront",
        [Category.CHANGE_REQUEST],
        reason_codes=[ReasonCode.DUPLICATE_ORDER],
    ),
    _cause(
        "price_error",
        "The order was sold at a wrong price",
        "merchandising",
        [Category.CHANGE_REQUEST],
        reason_codes=[ReasonCode.PRICE_ERROR],
    ),
    _cause(
        "slow_fulfilment",
        "The customer cancelled because fulfilment took too long",
        "3PL",
        [Category.CHANGE_REQUEST],
        reason_codes=[ReasonCode.LEAD_TIME],
    ),
    _cause(
        "customer_changed_mind",
        "The customer changed their mind (cancel, edit, swap, address)",
        "merchandising / CX",
        [Category.CHANGE_REQUEST],
    ),
    _cause(
        "carrier_exception",
        "The carrier delayed, damaged, lost or returned the parcel",
        "carrier",
        [Category.DELIVERY_EXCEPTION],
    ),
    _cause(
        "refund_delay",
        "A refund was asked for or slow to reach the customer",
        "finance",
        [Category.REFUND_REQUEST],
    ),
    _cause(
        "concession_after_complaint",
        "A concession was asked after a product or service problem",
        "CX",
        [Category.CONCESSION_REQUEST],
    ),
    _cause(
        "payment_dispute",
        "The cardholder disputed the payment",
        "risk",
        [Category.CHARGEBACK],
    ),
    _cause(
        "systems_out_of_sync",
        "Two systems disagreed about the order (a drift rule)",
        "ERP/WMS integration",
        [Category.DRIFT],
    ),
    # Never the first match (the entry above takes every drift case): it is here for its label
    # and owner, which reports show for the drift cases the desk withdrew.
    _cause(
        DRIFT_WITHDRAWN,
        "A late event showed the contradiction between systems never stood",
        "ERP/WMS integration",
        [Category.DRIFT],
    ),
)
