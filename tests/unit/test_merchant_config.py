"""Merchant configuration files: a full valid file, and each kind of mistake named by file,
line and field (``acme.yaml:N: field: what is wrong``).

Line numbers are counted by hand in each snippet (the first line is line 1).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from textwrap import dedent

import pytest

from recoverydesk.domain.cases import Case, Category
from recoverydesk.domain.errors import InvalidConfig
from recoverydesk.domain.orders import OrderView
from recoverydesk.services.calendars import build_calendar
from recoverydesk.services.merchants import MerchantSettings, parse_settings, settings_from_stored
from recoverydesk.services.policy import DEFAULT_SLA, Assignment, Deadline, dump
from recoverydesk.services.triage import Triage

SOURCE = "acme.yaml"
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)

FULL = dedent(
    """\
    merchant: acme
    time_zone: Europe/Berlin
    currency: EUR
    thresholds:
      high_value: 400
      payment_recovery_hours: 48
    taxonomy:
      categories:
        - code: gift_card_issue
          phase: post-fulfilment
          loss_likelihood: "0.30"
      reason_codes: [gift_card_expired]
    rules:
      priority:
        - name: marketplace_first
          when: order.channel == "amazon" && order.value >= 100.0
          then: P1
        - name: gift_cards_soon
          when: case.category == "gift_card_issue"
          then: P2
      priority_default: P3
      classification:
        - name: fraud_is_final
          when: case.category == "fraud_hold" && has(event.data.fraud_confirmed)
          then: must_cancel
      routing:
        - name: amazon_to_marketplace
          when: order.channel in ["amazon", "ebay"]
          then: marketplace
    members:
      - name: ann
        email: ann@acme.example
      - name: bob
        email: bob@acme.example
        away:
          - from: 2026-12-21T00:00:00+01:00
            to: 2027-01-04T00:00:00+01:00
    queues:
      - name: pre_fulfilment
        categories: [payment_failed, fraud_hold, address_invalid, inventory_mismatch,
                     split_shipment, late_shipment_risk, wms_exception, change_request]
        members: [ann, bob]
        assignment: round_robin
      - name: marketplace
        members: [ann]
        assignment: load_balanced
      - name: after_sales
        categories: [delivery_exception, refund_request, concession_request, chargeback,
                     drift, gift_card_issue]
        assignment: none
    sla:
      pre_fulfilment:
        first_touch: {P1: PT30M, P2: PT2H, P3: PT8H}
        deadline: ship_by
        deadline_margin: PT1H
      marketplace:
        first_touch: {P1: PT1H, P2: PT1H, P3: PT1H}
        resolution_within: P1D
      after_sales:
        resolution_within: P2D
    calendar:
      time_zone: Europe/Berlin
      hours:
        mon: ["09:00-12:00", "13:00-17:00"]
        tue: ["09:00-12:00", "13:00-17:00"]
        wed: ["09:00-12:00", "13:00-17:00"]
        thu: ["09:00-12:00", "13:00-17:00"]
        fri: ["09:00-12:00", "13:00-16:00"]
        sat: ["10:00-14:00"]
      holidays_country: DE
      holidays_subdivision: BE
      extra_holidays: [2026-12-24]
    escalation:
      ops_lead: {name: Olga, email: ops@acme.example}
      owners:
        warehouse: {name: 3PL Berlin, email: desk@3pl.example}
        finance: {name: Finance, email: finance@acme.example}
        fraud: {name: Risk, chat_webhook: "https://chat.acme.example/hooks/risk"}
      category_owner:
        payment_failed: finance
        gift_card_issue: finance
        fraud_hold: fraud
        wms_exception: warehouse
      chat_webhook: https://chat.acme.example/hooks/desk
    marketplace:
      channels: [amazon, ebay]
      reply_within: PT12H
    drift:
      hold_older_than: {default: PT36H, fraud: PT12H}
      stopship_ack_within: PT1H
      refund_after_cancel_within: P1D
    """
)


def test_a_full_valid_configuration_is_accepted():
    # given a file that uses every section
    # when it is parsed
    settings = parse_settings(FULL, SOURCE)
    # then identity, thresholds and taxonomy are read
    assert (settings.merchant, settings.time_zone, settings.currency) == (
        "acme",
        "Europe/Berlin",
        "EUR",
    )
    assert (settings.thresholds.high_value, settings.thresholds.payment_recovery_hours) == (
        Decimal("400"),
        48,
    )
    assert "gift_card_issue" in settings.taxonomy.category_codes()
    assert settings.taxonomy.loss_likelihood()["gift_card_issue"] == Decimal("0.30")
    assert "gift_card_expired" in settings.taxonomy.reason_code_set()
    # and the rules, members, queues and SLA table
    assert [r.name for r in settings.rules.priority] == ["marketplace_first", "gift_cards_soon"]
    assert [r.name for r in settings.rules.routing] == ["amazon_to_marketplace"]
    bob_away = settings.members[1].away[0]
    assert (bob_away.start, bob_away.end) == (
        datetime(2026, 12, 20, 23, 0, tzinfo=UTC),
        datetime(2027, 1, 3, 23, 0, tzinfo=UTC),
    )
    assert [(q.name, q.members, q.assignment) for q in settings.queues] == [
        ("pre_fulfilment", ("ann", "bob"), Assignment.ROUND_ROBIN),
        ("marketplace", ("ann",), Assignment.LOAD_BALANCED),
        ("after_sales", (), Assignment.NONE),
    ]
    pre = settings.sla_for("pre_fulfilment")
    assert pre.first_touch.model_dump() == {"P1": 30 * MINUTE, "P2": 2 * HOUR, "P3": 8 * HOUR}
    assert (pre.deadline, pre.deadline_margin) == (Deadline.SHIP_BY, HOUR)
    assert settings.sla_for("marketplace").resolution_within == timedelta(days=1)
    # and the escalation path, marketplace window and drift limits
    assert (
        settings.escalation.owners["fraud"].chat_webhook == "https://chat.acme.example/hooks/risk"
    )
    assert settings.escalation.category_owner["gift_card_issue"] == "finance"
    assert settings.escalation.ops_lead.email == "ops@acme.example"
    assert (settings.marketplace.channels, settings.marketplace.reply_within) == (
        ("amazon", "ebay"),
        12 * HOUR,
    )
    assert settings.drift.hold_older_than == {"default": 36 * HOUR, "fraud": 12 * HOUR}


@pytest.mark.parametrize(
    ("moment", "is_open"),
    [
        pytest.param(datetime(2026, 11, 16, 10, 30, tzinfo=UTC), True, id="monday-11-30"),
        pytest.param(datetime(2026, 11, 16, 11, 30, tzinfo=UTC), False, id="monday-lunch"),
        pytest.param(datetime(2026, 11, 20, 15, 30, tzinfo=UTC), False, id="friday-16-30"),
        pytest.param(datetime(2026, 11, 21, 9, 30, tzinfo=UTC), True, id="saturday-10-30"),
        pytest.param(datetime(2026, 12, 24, 9, 30, tzinfo=UTC), False, id="own-holiday"),
        pytest.param(datetime(2026, 12, 25, 9, 30, tzinfo=UTC), False, id="christmas-de"),
        pytest.param(datetime(2027, 3, 8, 9, 30, tzinfo=UTC), False, id="womens-day-berlin"),
    ],
)
def test_the_configured_calendar_has_split_shifts_and_holidays(moment, is_open):
    # given the full file's calendar: Berlin split shifts, Saturday mornings, German holidays
    calendar = build_calendar(parse_settings(FULL, SOURCE).calendar)
    # then the team is on shift only in its hours, on working days
    assert calendar.is_open(moment) is is_open


def test_the_full_configuration_drives_triage_and_survives_storage():
    # given the full file, stored and read back as the desk does
    settings = parse_settings(FULL, SOURCE)
    stored = settings_from_stored(dump(settings))
    assert stored == settings
    # when an ebay order's payment case is triaged
    case = Case(
        order_ref="1",
        category=Category.PAYMENT_FAILED,
        opened_at=datetime(2026, 11, 16, 9, tzinfo=UTC),
        opened_by="e",
    )
    order = OrderView(ref="1", channel="ebay", value=Decimal("80.00"))
    decision = Triage(stored, 4).decide(case, order, None, datetime(2026, 11, 16, 10, tzinfo=UTC))
    # then the merchant's routing rule sends it to the marketplace queue
    assert (decision.queue, decision.rules) == ("marketplace", {"queue": "amazon_to_marketplace"})


def test_own_queues_without_an_sla_section_keep_the_defaults_of_the_queues_they_keep():
    # given a file that lists its own queues (one a default queue) and no SLA table
    text = dedent(
        """\
        queues:
          - name: vip
            categories: [payment_failed]
          - name: delivery
            categories: [delivery_exception]
        """
    )
    # when it is parsed
    settings = parse_settings(text, SOURCE)
    # then it is accepted: the kept queue has its default SLA, the new one the plain default
    assert settings.sla == {"delivery": DEFAULT_SLA["delivery"]}
    assert settings.sla_for("vip").first_touch.P1 == HOUR
    assert settings_from_stored(dump(settings)) == settings


def test_a_missing_or_empty_file_gets_the_defaults():
    # given an empty file
    # when it is parsed
    settings = parse_settings("", SOURCE)
    # then every default applies
    assert settings == MerchantSettings()


# --- mistakes ------------------------------------------------------------------------------------

MISTAKES = [
    pytest.param(
        """\
        merchant: acme
        calendar:
          time_zone: Europe/Berlin
          hours:
            mon: ["09:00-17:00"]
          holidays_country: XX
        """,
        6,
        "calendar.holidays_country: unknown holidays country 'XX'",
        id="unknown-holidays-country",
    ),
    pytest.param(
        """\
        merchant: acme
        time_zone: Europe/Atlantis
        """,
        2,
        "time_zone: unknown time zone 'Europe/Atlantis'",
        id="unknown-merchant-time-zone",
    ),
    pytest.param(
        """\
        merchant: acme
        openers:
          - name: warranty_ticket
            when: event.type == "ticket.created"
            category: warranty_claim
        """,
        5,
        "openers.0.category: 'warranty_claim' is not one of",
        id="opener-category-not-in-taxonomy",
    ),
    pytest.param(
        """\
        merchant: acme
        openers:
          - name: warranty_ticket
            when: event.type == "ticket.created"
            category: refund_request
            closed_by: {parcel.vanished: returned}
        """,
        6,
        "closed_by.parcel.vanished: 'parcel.vanished' is not one of",
        id="opener-closed-by-unknown-event-type",
    ),
    pytest.param(
        """\
        merchant: acme
        rules:
          priority:
            - name: big_orders
              when: order.value >= 1000.0
              then: P1
          classification:
            - name: big_orders
              when: case.category == "fraud_hold"
              then: must_cancel
        """,
        8,
        "rules.classification.0.name: rule 'big_orders' is defined twice",
        id="duplicate-rule-name",
    ),
    pytest.param(
        """\
        merchant: acme
        queues:
          - name: pre_fulfilment
          - name: pre_fulfilment
        """,
        4,
        "queues.1.name: queue 'pre_fulfilment' is defined twice",
        id="duplicate-queue",
    ),
    pytest.param(
        """\
        merchant: acme
        members:
          - name: ann
          - name: ann
        """,
        4,
        "members.1.name: member 'ann' is defined twice",
        id="duplicate-member",
    ),
    pytest.param(
        """\
        merchant: acme
        rules: [unclosed
        thresholds:
          high_value: 100
        """,
        3,
        "not valid YAML",
        id="not-yaml",
    ),
    pytest.param(
        """\
        - merchant: acme
        - currency: EUR
        """,
        1,
        "the file must be a mapping",
        id="top-level-not-a-mapping",
    ),
    pytest.param(
        """\
        merchant: acme
        currency: EUR
        escalations:
          ops_lead: {name: Olga}
        """,
        3,
        "escalations: Extra inputs are not permitted",
        id="unknown-top-level-key",
    ),
    pytest.param(
        """\
        merchant: acme
        rules:
          priority:
            - name: big_orders
              when: order.value >=
              then: P1
        """,
        5,
        "rules.priority.0.when: not a valid CEL condition",
        id="bad-cel-syntax",
    ),
    pytest.param(
        """\
        merchant: acme
        rules:
          priority:
            - name: gold_shops
              when: shop.tier == "gold"
              then: P1
        """,
        5,
        "rules.priority.0.when: unknown variable 'shop'",
        id="cel-unknown-variable",
    ),
    pytest.param(
        """\
        merchant: acme
        rules:
          priority:
            - name: big_orders
              when: order.value >= 1000.0
              then: P0
        """,
        6,
        "rules.priority.0.then: 'P0' is not one of P1, P2, P3",
        id="priority-not-p1-p3",
    ),
    pytest.param(
        """\
        merchant: acme
        rules:
          classification:
            - name: fraud_is_final
              when: case.category == "fraud_hold"
              then: cancel_now
        """,
        6,
        "rules.classification.0.then: 'cancel_now' is not one of fixable_now, must_cancel,",
        id="classification-unknown",
    ),
    pytest.param(
        """\
        merchant: acme
        rules:
          priority:
            - name: Big Orders
              when: order.value >= 1000.0
              then: P1
        """,
        4,
        "rules.priority.0.name: String should match pattern",
        id="rule-name-not-a-code",
    ),
    pytest.param(
        """\
        members:
          - name: ann
        queues:
          - name: pre_fulfilment
            categories: [payment_failed]
            members: [ann, zoe]
        """,
        6,
        "queues.pre_fulfilment.members: 'zoe' is not one of ann",
        id="queue-member-unknown",
    ),
    pytest.param(
        """\
        queues:
          - name: pre_fulfilment
            categories: [payment_failed, gift_cards]
        """,
        3,
        "queues.pre_fulfilment.categories: 'gift_cards' is not one of address_invalid,",
        id="queue-category-not-in-taxonomy",
    ),
    pytest.param(
        """\
        members:
          - name: ann
        queues:
          - name: pre_fulfilment
            members: [ann]
            assignment: round_robbin
        """,
        6,
        "queues.0.assignment: Input should be 'round_robin', 'load_balanced' or 'none'",
        id="unknown-assignment",
    ),
    pytest.param(
        """\
        rules:
          routing:
            - name: amazon_to_marketplace
              when: order.channel == "amazon"
              then: marketplace
        """,
        5,
        "rules.routing.0.then: 'marketplace' is not one of cancel_edit, chargebacks,",
        id="routing-to-unknown-queue",
    ),
    pytest.param(
        """\
        merchant: acme
        sla:
          pre_fulfilment:
            deadline: ship_by
          returns:
            resolution_within: P2D
        """,
        2,
        "sla: 'returns' is not one of cancel_edit, chargebacks,",
        id="sla-for-unknown-queue",
    ),
    pytest.param(
        """\
        sla:
          pre_fulfilment:
            first_touch:
              P1: 30 minutes
        """,
        4,
        "sla.pre_fulfilment.first_touch.P1: Input should be a valid timedelta",
        id="bad-duration",
    ),
    pytest.param(
        """\
        sla:
          pre_fulfilment:
            deadline: ship_date
        """,
        3,
        "sla.pre_fulfilment.deadline: Input should be 'ship_by', 'promised_by' or 'dispute_due'",
        id="unknown-deadline",
    ),
    pytest.param(
        """\
        merchant: acme
        calendar:
          time_zone: Europe/Atlantis
          hours:
            mon: ["09:00-17:00"]
        """,
        3,
        "calendar.time_zone: unknown time zone 'Europe/Atlantis'",
        id="unknown-calendar-time-zone",
    ),
    pytest.param(
        """\
        merchant: acme
        time_zone: Europe/Berlin
        calendar:
          time_zone: Europe/Berlin
          hours:
            mon: ["9:00-17:00"]
        """,
        5,
        "calendar.hours: hours for mon: '9:00-17:00' is not a range like '09:00-17:00'",
        id="malformed-hours-range",
    ),
    pytest.param(
        """\
        calendar:
          time_zone: Europe/Berlin
          hours:
            mon: ["09:00-12:00", "11:00-17:00"]
        """,
        3,
        "calendar.hours: hours overlap: mon '09:00-12:00' and mon '11:00-17:00'",
        id="overlapping-hours",
    ),
    pytest.param(
        """\
        calendar:
          time_zone: Europe/Berlin
          hours:
            monday: ["09:00-17:00"]
        """,
        3,
        "calendar.hours: unknown weekday 'monday'",
        id="unknown-weekday",
    ),
    pytest.param(
        """\
        escalation:
          owners:
            finance: {name: Finance}
          category_owner:
            payment_failed: treasury
        """,
        5,
        "escalation.category_owner.payment_failed: no owner named 'treasury' in owners",
        id="category-owner-unknown",
    ),
    pytest.param(
        """\
        escalation:
          owners:
            fraud:
              name: Risk
              chat_webhook: ftp://chat.acme.example/hooks/risk
        """,
        5,
        "escalation.owners.fraud.chat_webhook: String should match pattern",
        id="chat-webhook-not-http",
    ),
    pytest.param(
        """\
        members:
          - name: ann
            away:
              - from: 2026-12-21T00:00:00+01:00
                to: 2026-12-21T00:00:00+01:00
        """,
        4,
        "members.0.away.0: 'to' must be after 'from'",
        id="away-window-empty",
    ),
    pytest.param(
        """\
        members:
          - name: ann
            away:
              - from: 2026-12-21 09:00
                to: 2026-12-22 09:00
        """,
        4,
        "members.0.away.0.from: Input should have timezone info",
        id="away-window-without-zone",
    ),
    pytest.param(
        """\
        members:
          - name: ann
          - name: bob
            email: bob.acme.example
        """,
        4,
        "members.1.email: String should match pattern",
        id="bad-email",
    ),
    pytest.param(
        """\
        thresholds:
          high_value: -5
        """,
        2,
        "thresholds.high_value: Input should be greater than or equal to 0",
        id="negative-threshold",
    ),
    pytest.param(
        """\
        merchant: acme
        currency: euro
        """,
        2,
        "currency: String should match pattern",
        id="bad-currency",
    ),
]


@pytest.mark.parametrize(("text", "line", "says"), MISTAKES)
def test_each_mistake_is_refused_naming_file_line_and_field(text, line, says):
    # given a file with one mistake
    # when it is parsed
    with pytest.raises(InvalidConfig) as raised:
        parse_settings(dedent(text), SOURCE)
    # then the error names the file, the line of the mistake and the field
    message = raised.value.message
    assert message.startswith(f"{SOURCE}:{line}: "), message
    assert says in message
    assert raised.value.code == "invalid_config"


def test_the_mistakes_cover_the_kinds_the_desk_promises():
    # given the tables of mistakes
    kinds = {p.id for p in MISTAKES}
    # then at least twelve distinct kinds are refused, these among them
    assert len(kinds) >= 12
    assert {
        "not-yaml",
        "top-level-not-a-mapping",
        "unknown-top-level-key",
        "bad-cel-syntax",
        "cel-unknown-variable",
        "priority-not-p1-p3",
        "classification-unknown",
        "duplicate-rule-name",
        "queue-member-unknown",
        "queue-category-not-in-taxonomy",
        "routing-to-unknown-queue",
        "sla-for-unknown-queue",
        "bad-duration",
        "unknown-calendar-time-zone",
        "unknown-holidays-country",
        "malformed-hours-range",
        "category-owner-unknown",
        "away-window-empty",
        "bad-email",
    } <= kinds


def test_an_error_names_the_file_it_came_from():
    # given the same mistake in another merchant's file
    # when it is parsed, then the message names that file
    with pytest.raises(InvalidConfig, match=r"^merchants/globex\.yaml:2: currency: "):
        parse_settings("merchant: globex\ncurrency: euro\n", "merchants/globex.yaml")


def test_webhook_secrets_are_kept_for_the_desk_and_masked_everywhere_else():
    # given a configuration with a rotating Shopify secret and a Stripe secret from the environment
    settings = parse_settings(
        dedent(
            """
            connectors:
              webhooks:
                shopify: {secrets: [new-secret, old-secret]}
                stripe: {secrets_env: [ACME_STRIPE_WHSEC], tolerance: PT2M}
            """
        ),
        "acme.yaml",
    )
    hooks = settings.connectors.webhooks
    # then both Shopify secrets are candidates, the current one first, and Stripe's comes from
    # the environment when it is set there
    assert hooks["shopify"].secret_values({}) == ["new-secret", "old-secret"]
    assert hooks["stripe"].secret_values({"ACME_STRIPE_WHSEC": "whsec_1"}) == ["whsec_1"]
    assert hooks["stripe"].secret_values({}) == []
    assert hooks["stripe"].tolerance == timedelta(minutes=2)
    # and no secret shows in a repr (logs) or in a plain dump (what an API would return)
    assert "new-secret" not in repr(settings)
    assert "new-secret" not in str(settings.model_dump(mode="json"))
    # but the stored form keeps them, and reads back the same
    stored = settings.model_dump(mode="json", context={"reveal": True})
    again = settings_from_stored(stored).connectors.webhooks["shopify"]
    assert again.secret_values({}) == ["new-secret", "old-secret"]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("connectors: {webhooks: {paypal: {secrets: [x]}}}", "unknown webhook provider 'paypal'"),
        ("connectors: {webhooks: {shopify: {}}}", "give the signing secret"),
        ("connectors: {webhooks: {shopify: {secrets_env: [lower]}}}", "secrets_env.0"),
    ],
)
def test_webhook_settings_mistakes_are_refused(text, says):
    with pytest.raises(InvalidConfig, match=says):
        parse_settings(text, "acme.yaml")
