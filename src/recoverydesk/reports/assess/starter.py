"""A starter merchant configuration sized to what the assessment found.

It is a file ``recoverydesk merchant apply NAME merchant.yaml`` accepts as it is: the default
queues and TRIAGE.md's SLA table written out, the high-value threshold set at the export's 90th
percentile order value, and one priority rule per busiest category (its cases worth more than
the median order go to P2), and a ``playbooks:`` entry for each category found: the desk's
default playbook of that name (a merchant's entry replaces it), sized to the volumes found: a
category with at least ``BUSY_PER_WEEK`` cases a week gets one-day decision windows (a busy
queue cannot hold orders two days), and when failed payments are at least
``RETRY_MORE_SHARE`` of the orders the authorization is retried more often in the same span.
"""

from __future__ import annotations

import copy
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import yaml

from recoverydesk.services.playbook_config import PlaybookSpec
from recoverydesk.services.playbook_defaults import DEFAULT_PLAYBOOKS
from recoverydesk.services.policy import DEFAULT_QUEUES

BUSIEST = 3
BUSY_PER_WEEK = 50
BUSY_WINDOW = "P1D"
RETRY_MORE_SHARE = 0.02
RETRY_MORE = {"every": "PT4H", "times": 4}  # default PT6H x 3: the same span, one more try
PRE_FULFILMENT_SLA = {
    "first_touch": {"P1": "PT1H", "P2": "PT4H", "P3": "PT24H"},
    "deadline": "ship_by",
}
SLA = {
    "pre_fulfilment": PRE_FULFILMENT_SLA,
    "cancel_edit": PRE_FULFILMENT_SLA,
    "delivery": {
        "first_touch": {"P1": "PT4H", "P2": "PT4H", "P3": "PT4H"},
        "resolution_within": "PT8H",
    },
    "refunds": {
        "first_touch": {"P1": "PT24H", "P2": "PT24H", "P3": "PT24H"},
        "resolution_within": "P2D",
    },
    "chargebacks": {
        "first_touch": {"P1": "PT24H", "P2": "PT24H", "P3": "PT24H"},
        "deadline": "dispute_due",
        "deadline_margin": "P2D",
    },
    "drift": {
        "first_touch": {"P1": "PT24H", "P2": "PT24H", "P3": "PT24H"},
        "resolution_within": "P1D",
    },
}


def _rounded(amount: Decimal) -> Decimal:
    """Two significant figures: 1234.56 -> 1200, 87.4 -> 87."""
    if amount <= 0:
        return Decimal("500")
    exponent = amount.adjusted() - 1
    step = Decimal(1).scaleb(exponent)
    return (amount / step).quantize(Decimal(1), rounding=ROUND_HALF_UP) * step


def starter_settings(summary: dict[str, Any]) -> dict[str, Any]:
    figures = summary["figures"]
    stats = figures.get("order_value") or {}
    currency = stats.get("currency") or summary["profile"]["defaults"].get("currency", "USD")
    high = _rounded(Decimal(stats.get("p90") or "500"))
    median = _rounded(Decimal(stats.get("median") or "0")) if stats.get("median") else Decimal(0)
    busiest = sorted(figures["exceptions"], key=lambda e: (-e["cases"], e["category"]))[:BUSIEST]
    rules = [
        {
            "name": f"busy_{entry['category']}",
            "when": f'case.category == "{entry["category"]}" && order.value >= {float(median)}',
            "then": "P2",
        }
        for entry in busiest
        if entry["category"] != "fraud_hold"
    ]
    return {
        "time_zone": "UTC",
        "currency": currency,
        "thresholds": {"high_value": format(high, "f"), "payment_recovery_hours": 72},
        "queues": [
            {"name": queue.name, "categories": list(queue.categories)} for queue in DEFAULT_QUEUES
        ],
        "sla": SLA,
        "rules": {"priority": rules},
        "playbooks": starter_playbooks(summary),
    }


def starter_playbooks(summary: dict[str, Any]) -> dict[str, Any]:
    """The playbooks of the categories found whose settings the volumes change, written out in
    full (a merchant's entry replaces the default of its name); the others run as defaults."""
    figures = summary["figures"]
    weeks, orders = _weeks(summary), max(1, figures["orders"])
    playbooks: dict[str, Any] = {}
    for entry in figures["exceptions"]:
        name = entry["playbook"]
        spec = DEFAULT_PLAYBOOKS.get(name)
        if spec is None or name in playbooks:
            continue
        sized = _sized(spec, busy=entry["cases"] / weeks >= BUSY_PER_WEEK)
        if name == "payment_recovery" and entry["cases"] / orders >= RETRY_MORE_SHARE:
            sized["steps"] = [_retry_more(step) for step in sized["steps"]]
        if sized != spec.model_dump(mode="json", exclude_defaults=True):
            PlaybookSpec.model_validate(sized)  # what `merchant apply` checks first
            playbooks[name] = sized
    return playbooks


def _sized(spec: PlaybookSpec, *, busy: bool) -> dict[str, Any]:
    document: dict[str, Any] = copy.deepcopy(spec.model_dump(mode="json", exclude_defaults=True))
    if busy:
        for step in document["steps"]:
            if step["do"] == "decision" and "window" in step.get("params", {}):
                step["params"]["window"] = BUSY_WINDOW
    return document


def _retry_more(step: dict[str, Any]) -> dict[str, Any]:
    return {**step, **RETRY_MORE} if step["name"] == "retry_authorization" else step


def starter_config(summary: dict[str, Any]) -> str:
    settings = starter_settings(summary)
    if not settings["playbooks"]:
        del settings["playbooks"]
    return _header(summary) + yaml.safe_dump(
        settings, sort_keys=False, allow_unicode=True, default_flow_style=None, width=100
    )


def _header(summary: dict[str, Any]) -> str:
    figures = summary["figures"]
    files = ", ".join(f["file"].rsplit("/", 1)[-1] for f in summary["input_files"] if f["used"])
    weeks = _weeks(summary)
    lines = [
        "# Starter merchant configuration written by `recoverydesk assess`",
        f"# from {files} ({summary['profile']['name']} profile): {figures['orders']} orders.",
        "# Apply it with: recoverydesk merchant apply NAME merchant.yaml",
        "#",
        "# Playbooks for the cases found (the desk's defaults; those the volumes resize are",
        "# written out under playbooks: below and replace the default of their name):",
    ]
    for entry in figures["exceptions"]:
        per_week = entry["cases"] / weeks
        lines.append(
            f"#   {entry['playbook']:<20} {entry['category']:<20} {entry['cases']:>7} cases "
            f"(~{per_week:.0f}/week) -> queue {entry['queue']}"
        )
    if not figures["exceptions"]:
        lines.append("#   (no exception cases found)")
    lines.append("#")
    return "\n".join(lines) + "\n"


def _weeks(summary: dict[str, Any]) -> float:
    period = summary.get("period") or {}
    if not period.get("from") or not period.get("to"):
        return 1.0
    span = datetime.fromisoformat(period["to"]) - datetime.fromisoformat(period["from"])
    return max(1.0, span.days / 7)
