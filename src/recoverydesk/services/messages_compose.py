"""Customer messages: a merchant's templates, and how the desk writes a message from one.

A template is short and makes one ask: a ``subject`` and a plain-text ``body`` in Jinja2 syntax,
with an optional ``language`` and ``tone`` (the merchant's ``language`` and ``tone`` otherwise).
Templates render in Jinja2's sandbox (``ImmutableSandboxedEnvironment``): a template cannot
reach Python's insides (``{{ ''.__class__ }}`` is refused) nor change its values, has none of
Jinja's globals (``range``, ``lipsum`` ...) and cannot multiply a string or a list into a huge
one. An unknown variable is an error
(``StrictUndefined``), and every template is rendered with sample data when the merchant's
configuration is validated, so a typo is found by ``merchant apply``, not by a customer.

What a template sees (``message_values``):

- ``order``: ``ref``, ``value`` and ``currency`` (text), ``lines`` (each ``sku``, ``qty``,
  ``price``), ``address`` (the shipping address on one line, or empty);
- ``customer``: ``name`` (empty when unknown), ``email``;
- ``merchant``: ``name``;
- ``decision``: ``url`` (the decision page), ``choices`` (each ``choice``, ``label``, ``url``),
  ``links`` (choice -> url), ``default`` and ``default_label``, ``expires`` (a readable time),
  ``expires_at`` (ISO 8601) and ``window`` (e.g. "48 hours");
- ``greeting`` and ``sign_off``: the opening and closing line for the tone; ``tone``,
  ``language``.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, model_validator

from recoverydesk.domain.errors import InvalidInput
from recoverydesk.domain.orders import LineView, OrderView

Language = Annotated[str, Field(pattern=r"^[a-z]{2,3}(-[A-Z]{2})?$")]
MOST_REPEATED = 1000  # the longest string or list a template may make with ``*``
MOST_BODY_CHARS = 20_000


class Tone(StrEnum):
    FRIENDLY = "friendly"
    FORMAL = "formal"


class Choice(StrEnum):
    """What a customer can answer to a decision."""

    SUBSTITUTE = "substitute"
    SPLIT = "split"
    WAIT = "wait"
    CANCEL = "cancel"
    CONFIRM_ADDRESS = "confirm_address"
    CORRECT_ADDRESS = "correct_address"
    PAY_AGAIN = "pay_again"
    VERIFY_IDENTITY = "verify_identity"
    RESHIP = "reship"
    REFUND = "refund"


# The customer's words for each choice (the message's links and the decision page's buttons).
CHOICE_LABELS: dict[str, str] = {
    Choice.SUBSTITUTE: "Send me a similar item instead",
    Choice.SPLIT: "Ship what is ready now, the rest later",
    Choice.WAIT: "Wait and ship everything together",
    Choice.CANCEL: "Cancel my order",
    Choice.CONFIRM_ADDRESS: "The address is right",
    Choice.CORRECT_ADDRESS: "The address needs a correction (we will contact you)",
    Choice.PAY_AGAIN: "I will pay again (we will send you a payment link)",
    Choice.VERIFY_IDENTITY: "Yes, I placed this order",
    Choice.RESHIP: "Send it again",
    Choice.REFUND: "Refund me",
}


class TemplateProblem(InvalidInput):
    """A template that does not render: bad syntax, an unknown variable, an unsafe access."""

    code = "template_error"


class MessageSandbox(ImmutableSandboxedEnvironment):
    """Jinja2's sandbox (values cannot be changed either), without globals and with a cap on
    ``*`` and ``**``."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        if operator_name == "**":
            if isinstance(right, int | float) and abs(right) > 100:
                raise SecurityError("the exponent is too large for a message")
            return operator.pow(left, right)
        for value, times in ((left, right), (right, left)):
            sized = isinstance(value, str | list | tuple) and isinstance(times, int)
            if sized and len(value) * max(times, 0) > MOST_REPEATED:
                raise SecurityError("a repeated text or list is too long for a message")
        return operator.mul(left, right)


def _environment() -> MessageSandbox:
    env = MessageSandbox(
        undefined=StrictUndefined,
        autoescape=False,  # plain text: a helpdesk comment or an email body
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.globals.clear()
    return env


_ENV = _environment()


class MessageTemplate(BaseModel):
    """One template of a merchant's ``templates`` section."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    subject: Annotated[str, Field(min_length=1, max_length=200)]
    body: Annotated[str, Field(min_length=1, max_length=4000)]
    language: Language | None = None
    tone: Tone | None = None

    @model_validator(mode="after")
    def _renders(self) -> MessageTemplate:
        values = sample_values(self.tone or Tone.FRIENDLY, self.language or "en")
        for part in ("subject", "body"):
            try:
                _render_text(getattr(self, part), values)
            except TemplateProblem as problem:
                raise ValueError(f"{part}: {problem.message}") from None
        return self


@dataclass(frozen=True, slots=True)
class RenderedMessage:
    subject: str
    body: str
    language: str
    tone: Tone


def render_message(
    name: str, template: MessageTemplate, values: Mapping[str, Any]
) -> RenderedMessage:
    """Render a template; ``TemplateProblem`` names the template and the part that failed."""
    parts: dict[str, str] = {}
    for part in ("subject", "body"):
        try:
            parts[part] = _render_text(getattr(template, part), values)
        except TemplateProblem as problem:
            raise TemplateProblem(f"template {name!r}: {part}: {problem.message}") from None
    subject = " ".join(parts["subject"].split())[:250]
    if not subject:
        raise TemplateProblem(f"template {name!r}: subject: renders empty")
    if len(parts["body"]) > MOST_BODY_CHARS:
        raise TemplateProblem(f"template {name!r}: body: longer than {MOST_BODY_CHARS} characters")
    return RenderedMessage(
        subject, parts["body"], str(values["language"]), Tone(str(values["tone"]))
    )


def _render_text(text: str, values: Mapping[str, Any]) -> str:
    try:
        return _ENV.from_string(text).render(values)
    except TemplateSyntaxError as error:
        raise TemplateProblem(f"line {error.lineno}: {error.message}") from None
    except SecurityError as error:
        raise TemplateProblem(f"not allowed: {error}") from None
    except TemplateError as error:  # UndefinedError and the other rendering errors
        raise TemplateProblem(str(error)) from None
    except (ArithmeticError, TypeError, ValueError, LookupError) as error:
        raise TemplateProblem(f"{type(error).__name__}: {error}") from None


def choose_template(own: Mapping[str, MessageTemplate], name: str) -> MessageTemplate:
    """The merchant's own template of that name, else the desk's default."""
    found = own.get(name) or DEFAULT_TEMPLATES.get(name)
    if found is None:
        known = ", ".join(sorted({*own, *DEFAULT_TEMPLATES}))
        raise InvalidInput(f"template: no template {name!r} (known: {known})", code="no_template")
    return found


# -- the values a template sees ----------------------------------------------------------------

_GREETINGS: dict[Tone, tuple[str, str, str]] = {
    # tone: (greeting with a name, greeting without one, sign-off)
    Tone.FRIENDLY: ("Hi {name},", "Hi there,", "Thanks,"),
    Tone.FORMAL: ("Dear {name},", "Dear customer,", "Kind regards,"),
}


def message_values(
    *,
    order: OrderView,
    merchant: str,
    decision: Mapping[str, Any],
    tone: Tone,
    language: str,
) -> dict[str, Any]:
    name = _customer_name(order.shipping_address)
    with_name, without, sign_off = _GREETINGS[tone]
    return {
        "order": {
            "ref": order.ref,
            "value": str(order.value) if order.value is not None else "",
            "currency": order.currency or "",
            "lines": [
                {
                    "sku": line.sku,
                    "qty": line.qty if line.qty is not None else 1,
                    "price": str(line.price) if line.price is not None else "",
                }
                for line in order.lines.values()
            ],
            "address": _one_line(order.shipping_address),
        },
        "customer": {"name": name, "email": order.customer_email or ""},
        "merchant": {"name": merchant},
        "decision": dict(decision),
        "greeting": with_name.format(name=name) if name else without,
        "sign_off": sign_off,
        "tone": tone.value,
        "language": language,
    }


def _customer_name(address: Mapping[str, str] | None) -> str:
    if not address:
        return ""
    for key in ("first_name", "name"):
        value = address.get(key)
        if value and value.strip():
            return value.strip().split()[0] if key == "name" else value.strip()
    return ""


_ADDRESS_PARTS = ("address1", "address2", "line1", "line2", "city", "zip", "postcode", "country")


def _one_line(address: Mapping[str, str] | None) -> str:
    if not address:
        return ""
    return ", ".join(str(address[k]).strip() for k in _ADDRESS_PARTS if address.get(k))


def readable_window(window: timedelta) -> str:
    hours = int(window.total_seconds() // 3600)
    if hours >= 48 and hours % 24 == 0:
        return f"{hours // 24} days"
    if hours >= 1:
        return f"{hours} hour{'s' if hours != 1 else ''}"
    minutes = max(int(window.total_seconds() // 60), 1)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def readable_time(moment: datetime) -> str:
    return moment.strftime("%d %b %Y, %H:%M UTC")


def sample_values(tone: Tone, language: str) -> dict[str, Any]:
    """The values a template is checked with when a configuration is validated: every
    variable it may use, with every choice a decision can offer."""
    base = "https://desk.example/decide/sample"
    choices = [
        {"choice": choice, "label": label, "url": f"{base}?choice={choice}"}
        for choice, label in CHOICE_LABELS.items()
    ]
    decision = {
        "id": "sample",
        "url": base,
        "choices": choices,
        "links": {item["choice"]: item["url"] for item in choices},
        "default": "wait",
        "default_label": CHOICE_LABELS["wait"],
        "expires": "22 Nov 2026, 14:00 UTC",
        "expires_at": "2026-11-22T14:00:00+00:00",
        "window": "48 hours",
    }
    order = OrderView(
        ref="1001",
        value=Decimal("129.00"),
        currency="USD",
        customer_email="kim@example.com",
        shipping_address={"first_name": "Kim", "address1": "1 Main St", "city": "Springfield"},
        lines={"LAMP-01": LineView(sku="LAMP-01", qty=1, price=Decimal("129.00"))},
    )
    return message_values(
        order=order, merchant="sample", decision=decision, tone=tone, language=language
    )


# -- the desk's defaults -------------------------------------------------------------------------


def _default(subject: str, body: str) -> MessageTemplate:
    return MessageTemplate(subject=subject, body=body)


_CHOICES = """\
{% for option in decision.choices %}
- {{ option.label }}: {{ option.url }}
{% endfor %}"""
_UNLESS = (
    "If we do not hear from you by {{ decision.expires }}, we will go ahead with: "
    "{{ decision.default_label }}."
)
_END = "\n{{ sign_off }}\n{{ merchant.name }}\n"

DEFAULT_TEMPLATES: dict[str, MessageTemplate] = {
    "payment_update": _default(
        "Your order #{{ order.ref }}: please update your payment",
        "{{ greeting }}\n\nThe payment for your order #{{ order.ref }} did not go through. "
        "Please choose how to go on:\n\n" + _CHOICES + "\n\n" + _UNLESS + "\n" + _END,
    ),
    "address_confirm": _default(
        "Your order #{{ order.ref }}: please confirm your address",
        "{{ greeting }}\n\nWe could not verify the delivery address of your order "
        "#{{ order.ref }}{% if order.address %}: {{ order.address }}{% endif %}. "
        "Is it right?\n\n" + _CHOICES + "\n\n" + _UNLESS + "\n" + _END,
    ),
    "stock_decision": _default(
        "Your order #{{ order.ref }}: an item is out of stock",
        "{{ greeting }}\n\nAn item of your order #{{ order.ref }} is out of stock. "
        "Please choose what we should do:\n\n" + _CHOICES + "\n\n" + _UNLESS + "\n" + _END,
    ),
    "delay_notice": _default(
        "Your order #{{ order.ref }} is delayed",
        "{{ greeting }}\n\nYour order #{{ order.ref }} will arrive later than we promised. "
        "We are sorry. Would you like to wait for it, or cancel it?\n\n"
        + _CHOICES
        + "\n\n"
        + _UNLESS
        + "\n"
        + _END,
    ),
    "cancel_confirmed": _default(
        "Your order #{{ order.ref }} is cancelled",
        "{{ greeting }}\n\nWe have cancelled your order #{{ order.ref }}. Nothing will be "
        "shipped, and any payment goes back to your original payment method.\n\n"
        "If this is not what you wanted, please reply to this message.\n" + _END,
    ),
    "fraud_verification": _default(
        "Your order #{{ order.ref }}: please confirm it is you",
        "{{ greeting }}\n\nBefore we ship your order #{{ order.ref }}, we need to confirm it "
        "was placed by you. Please choose:\n\n" + _CHOICES + "\n\n" + _UNLESS + "\n" + _END,
    ),
    # Plain messages of the playbooks (one ask, no decision links).
    "payment_retry_link": _default(
        "Your order #{{ order.ref }}: please pay again",
        "{{ greeting }}\n\nThe payment for your order #{{ order.ref }} did not go through. "
        "Please reply to this message and we will send you a new payment link.\n" + _END,
    ),
    "delay_update": _default(
        "Your order #{{ order.ref }} is delayed",
        "{{ greeting }}\n\nYour order #{{ order.ref }} is running late. We are on it and will "
        "write again as soon as it moves. Reply to this message if you have a question.\n" + _END,
    ),
    "backorder_confirmed": _default(
        "Your order #{{ order.ref }}: we will ship it all together",
        "{{ greeting }}\n\nThanks for waiting. We will ship your order #{{ order.ref }} as "
        "soon as every item is in stock. Reply to this message if you change your mind.\n" + _END,
    ),
    "refund_status": _default(
        "Your refund for order #{{ order.ref }}",
        "{{ greeting }}\n\nYour refund for order #{{ order.ref }} is on its way to your "
        "original payment method. Reply to this message if it has not arrived in 5 days.\n" + _END,
    ),
}
