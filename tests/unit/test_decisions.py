"""Customer decisions and message templates: signed links (with an injected clock), the
template sandbox, strict variables, and templates checked when a merchant file is applied."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from textwrap import dedent
from typing import Any

import pytest

from recoverydesk.config import Settings
from recoverydesk.connectors.messages import SmtpMessages
from recoverydesk.domain.errors import DeskError, InvalidConfig, InvalidInput
from recoverydesk.domain.orders import LineView, OrderView
from recoverydesk.services.clock import SimulatedClock
from recoverydesk.services.decisions import (
    Decision,
    DecisionLinks,
    LinkNotValid,
    make_offer,
)
from recoverydesk.services.merchants import parse_settings
from recoverydesk.services.messages_compose import (
    DEFAULT_TEMPLATES,
    MessageTemplate,
    TemplateProblem,
    Tone,
    choose_template,
    message_values,
    render_message,
    sample_values,
)
from recoverydesk.services.ports import OutsideCommand

START = datetime(2026, 11, 20, 14, 0, tzinfo=UTC)
LINKS = DecisionLinks("a-test-secret-of-some-length", "https://desk.example/")


def _decision(expires_at: datetime = START + timedelta(hours=48)) -> Decision:
    return Decision(
        merchant_id=7,
        case_id=42,
        id="stock_decision-1",
        choices=("substitute", "split", "wait", "cancel"),
        default="wait",
        expires_at=expires_at,
    )


# -- signed links --------------------------------------------------------------------------------


def test_a_signed_link_reads_back_as_its_decision_until_the_window_closes():
    # given a decision signed at 14:00 with a 48-hour window, and the desk's clock
    clock = SimulatedClock(START)
    decision = _decision()
    token = LINKS.token(decision)
    # when the link is read back
    found = LINKS.read(token)
    # then it is the same decision, open now and one second before the end, closed at the end
    assert found == decision
    assert found.is_open(clock.now())
    clock.advance(timedelta(hours=48) - timedelta(seconds=1))
    assert found.is_open(clock.now())
    clock.advance(timedelta(seconds=1))
    assert not found.is_open(clock.now())
    # and the page's URLs carry the token (and the picked choice)
    assert LINKS.page(decision) == f"https://desk.example/decide/{token}"
    assert LINKS.page(decision, "wait").endswith(f"/decide/{token}?choice=wait")


def test_the_event_id_of_an_answer_is_deterministic():
    assert _decision().event_id == "desk:decision:42:stock_decision-1"


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"), id="signature"),
        pytest.param(lambda t: "x" + t, id="payload"),
        pytest.param(lambda t: t[: len(t) // 2], id="cut-short"),
        pytest.param(lambda t: "", id="empty"),
        pytest.param(lambda t: "a" * 5000, id="too-long"),
    ],
)
def test_a_tampered_link_is_not_valid(tamper):
    # given a signed link changed on its way
    token = tamper(LINKS.token(_decision()))
    # then the desk does not read it
    with pytest.raises(LinkNotValid):
        LINKS.read(token)


def test_a_link_signed_with_another_secret_is_not_valid():
    forged = DecisionLinks("someone-elses-secret", "https://desk.example").token(_decision())
    with pytest.raises(LinkNotValid):
        LINKS.read(forged)


def test_without_a_secret_sqlite_makes_one_per_process_and_postgresql_refuses():
    # given settings without RECOVERYDESK_DECISION_SECRET
    sqlite = Settings(database_url="sqlite:///x.db")
    postgres = Settings(database_url="postgresql+psycopg://u@h/db")
    # then the embedded desk signs with a random secret of its own, stable for the process
    assert len(sqlite.decision_signing_secret()) >= 32
    assert sqlite.decision_signing_secret() == sqlite.decision_signing_secret()
    # and a production database asks for the secret
    with pytest.raises(DeskError, match="RECOVERYDESK_DECISION_SECRET"):
        postgres.decision_signing_secret()
    configured = Settings(database_url="postgresql+psycopg://u@h/db", decision_secret="s" * 40)
    assert configured.decision_signing_secret() == "s" * 40
    # and a short secret is refused
    with pytest.raises(ValueError, match="at least 16"):
        Settings(decision_secret="short")


# -- offers --------------------------------------------------------------------------------------


def test_an_offer_keeps_its_choices_in_order_and_needs_a_default_among_them():
    offer = make_offer(
        template="stock_decision",
        choices=["wait", "cancel", "wait"],
        default="cancel",
        window=None,
        links=LINKS,
    )
    assert (offer.choices, offer.default, offer.window) == (
        ("wait", "cancel"),
        "cancel",
        timedelta(hours=48),
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"template": None}, "template"),
        ({"choices": []}, "choices"),
        ({"choices": ["wait", "teleport"]}, "unknown choice 'teleport'"),
        ({"default": "refund"}, "default: must be one of the choices"),
        ({"window": timedelta(minutes=1)}, "window"),
        ({"window": timedelta(days=31)}, "window"),
    ],
)
def test_an_offer_with_a_mistake_is_refused(changes, message):
    arguments: dict[str, Any] = {
        "template": "stock_decision",
        "choices": ["wait", "cancel"],
        "default": "wait",
        "window": timedelta(hours=48),
        **changes,
    }
    with pytest.raises(InvalidInput, match=message):
        make_offer(links=LINKS, **arguments)


# -- templates -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ order.__class__.__init__.__globals__ }}",
        "{{ customer.name.format.__globals__ }}",
        "{{ range(10) }}",
        "{{ lipsum() }}",
        "{{ 'x' * 100000000 }}",
        "{{ [1] * 100000000 }}",
        "{{ 10 ** 100000 }}",
        "{{ order.update({'ref': 'x'}) }}",
        "{{ order.lines.append(1) }}",
    ],
)
def test_a_template_cannot_reach_python_internals(text):
    # given a template that tries to reach outside its values (or to make a huge text)
    template = MessageTemplate.model_construct(subject="s", body=text)
    # then rendering refuses it, naming the template
    with pytest.raises(TemplateProblem, match="template 'evil': body"):
        render_message("evil", template, sample_values(Tone.FRIENDLY, "en"))


def test_an_unknown_variable_is_an_error_not_an_empty_text():
    template = MessageTemplate.model_construct(subject="Order {{ order.number }}", body="b")
    with pytest.raises(TemplateProblem, match="subject: 'dict object' has no attribute 'number'"):
        render_message("typo", template, sample_values(Tone.FRIENDLY, "en"))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("Hi {{ customer.nmae }}", "body: 'dict object' has no attribute 'nmae'"),
        ("Hi {{ shopper }}", "body: 'shopper' is undefined"),
        ("{% if order.ref %}open", "body: line 1: Unexpected end of template"),
        ("{{ ''.__class__ }}", "body: not allowed: access to attribute '__class__'"),
    ],
)
def test_a_template_that_does_not_render_is_refused_at_construction(body, message):
    with pytest.raises(ValueError, match=message):
        MessageTemplate(subject="s", body=body)


def test_every_default_template_renders_short_with_one_ask_in_both_tones():
    for tone in Tone:
        for name, template in DEFAULT_TEMPLATES.items():
            message = render_message(name, template, sample_values(tone, "en"))
            assert "#1001" in message.subject
            assert "\n" not in message.subject
            assert len(message.body) < 2000
            assert message.tone is tone
    assert set(DEFAULT_TEMPLATES) >= {
        "payment_update",
        "address_confirm",
        "stock_decision",
        "delay_notice",
        "cancel_confirmed",
        "fraud_verification",
    }


def test_a_message_greets_the_customer_in_the_tone_and_lists_the_links():
    # given an order with a named customer and a two-choice decision
    order = OrderView(
        ref="1001",
        value=Decimal("129.00"),
        currency="USD",
        customer_email="kim@example.com",
        shipping_address={"name": "Kim Lee", "city": "Berlin"},
        lines={"LAMP": LineView(sku="LAMP", qty=1, price=Decimal("129.00"))},
    )
    decision = {
        "url": "https://d/decide/t",
        "choices": [
            {"choice": "wait", "label": "Wait", "url": "https://d/decide/t?choice=wait"},
            {"choice": "cancel", "label": "Cancel", "url": "https://d/decide/t?choice=cancel"},
        ],
        "default_label": "Wait",
        "expires": "22 Nov 2026, 14:00 UTC",
    }
    # when the stock decision is written in the formal tone
    values = message_values(
        order=order, merchant="acme", decision=decision, tone=Tone.FORMAL, language="en"
    )
    message = render_message("stock_decision", DEFAULT_TEMPLATES["stock_decision"], values)
    # then it greets Kim formally, lists one link per choice, and names the default
    assert message.body.startswith("Dear Kim,\n")
    assert "- Wait: https://d/decide/t?choice=wait\n" in message.body
    assert "- Cancel: https://d/decide/t?choice=cancel\n" in message.body
    assert "we will go ahead with: Wait." in message.body
    assert message.body.rstrip().endswith("Kind regards,\nacme")


def test_a_merchant_template_replaces_the_default_of_its_name_only():
    own = {"stock_decision": MessageTemplate(subject="S {{ order.ref }}", body="B")}
    assert choose_template(own, "stock_decision") is own["stock_decision"]
    assert choose_template(own, "delay_notice") is DEFAULT_TEMPLATES["delay_notice"]
    with pytest.raises(InvalidInput, match="no template 'nope'"):
        choose_template(own, "nope")


# -- the merchant's file -------------------------------------------------------------------------

GOOD = dedent(
    """\
    merchant: acme
    tone: formal
    language: de
    templates:
      stock_decision:
        subject: "Bestellung {{ order.ref }}: ein Artikel fehlt"
        body: |
          {{ greeting }}
          {% for option in decision.choices %}
          - {{ option.label }}: {{ option.url }}
          {% endfor %}
        tone: friendly
      thank_you:
        subject: "Thanks for order {{ order.ref }}"
        body: "{{ greeting }} {{ merchant.name }}"
    """
)


def test_a_merchant_file_sets_tone_language_and_its_own_templates():
    settings = parse_settings(GOOD, "acme.yaml")
    assert (settings.tone, settings.language) == (Tone.FORMAL, "de")
    assert settings.templates["stock_decision"].tone is Tone.FRIENDLY
    assert settings.templates["stock_decision"].language is None
    assert set(settings.templates) == {"stock_decision", "thank_you"}
    # and a file without templates keeps the desk's defaults
    plain = parse_settings("merchant: acme\n", "acme.yaml")
    assert (plain.tone, plain.language, plain.templates) == (Tone.FRIENDLY, "en", {})


@pytest.mark.parametrize(
    ("snippet", "message"),
    [
        (
            """\
            templates:
              stock_decision:
                subject: "Order {{ order.ref }}"
                body: "Hi {{ customer.firstname }}"
            """,
            "acme.yaml:4: templates.stock_decision.body: 'dict object' has no attribute "
            "'firstname'",
        ),
        (
            """\
            templates:
              stock_decision:
                subject: "{{ ''.__class__ }}"
                body: "b"
            """,
            "acme.yaml:3: templates.stock_decision.subject: not allowed: access to attribute",
        ),
        (
            """\
            templates:
              delay_notice:
                subject: "s"
                body: "{% for x in order.lines %}"
            """,
            "acme.yaml:4: templates.delay_notice.body: line 1: Unexpected end of template",
        ),
        (
            """\
            tone: shouty
            """,
            "acme.yaml:1: tone:",
        ),
        (
            """\
            templates:
              Bad-Name:
                subject: "s"
                body: "b"
            """,
            "acme.yaml:2: templates.Bad-Name.[key]:",
        ),
    ],
)
def test_a_template_mistake_is_found_when_the_file_is_applied(snippet, message):
    with pytest.raises(InvalidConfig) as raised:
        parse_settings(dedent(snippet), "acme.yaml")
    assert raised.value.message.startswith(message), raised.value.message


# -- the message connectors send the desk's text --------------------------------------------------


def test_an_email_connector_sends_the_text_the_desk_wrote():
    # given a decision message the desk rendered, and an SMTP server that takes it
    sent = []

    class Smtp(SmtpMessages):
        def _deliver(self, connection, host, port, message):  # type: ignore[override]
            sent.append(message)
            return {}

    command = OutsideCommand(
        merchant_id=1,
        order_ref="1001",
        system="email",
        action="send_message",
        key="decision:acme:42:d1:message",
        params={
            "template": "stock_decision",
            "to": "kim@example.com",
            "subject": "Your order #1001: an item is out of stock",
            "body": "Hi Kim,\n\n- Wait: https://d/decide/t?choice=wait\n",
            "decision": "d1",
        },
        connection={"host": "smtp.example", "port": 25, "sender": "desk@acme.example"},
    )
    # when it is sent
    answer = Smtp(clock=SimulatedClock(START)).send(command)
    # then the email carries the desk's subject and body
    assert answer.accepted
    assert sent[0]["Subject"] == "Your order #1001: an item is out of stock"
    assert "https://d/decide/t?choice=wait" in sent[0].get_content()
