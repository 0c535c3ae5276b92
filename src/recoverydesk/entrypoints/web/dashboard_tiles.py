"""The KPI dashboard's tiles: each figure of the week (KPIS.md) with the counts behind it in
words and its state against its threshold, in text (and a colour class for the eye).

Thresholds come from the specification: the 2.5% marketplace line for cancellations (all and
pre-fulfilment), 4% for late shipments, 1.5% for the chargeback ratio; any refund leakage is a
loss. The other figures have no threshold in KPIS.md: their tiles say so, in a neutral colour.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from recoverydesk.reports.kpi_tally import LATE_SHIPMENT_THRESHOLD, PRE_FULFILLMENT_THRESHOLD

CANCELLATION_LINE = PRE_FULFILLMENT_THRESHOLD  # the marketplaces' 2.5%
CHARGEBACK_LINE = 0.015
# Colour classes of the desk's stylesheet (desk.css): red, green, grey.
ABOVE, WITHIN, NEUTRAL = "risk-breached", "risk-on_track", "risk-none"


@dataclass(frozen=True, slots=True)
class Tile:
    key: str
    label: str
    value: str  # the figure as shown: "6.1%", "66", "120.00 USD"
    counts: str  # the numerator and denominator in words
    state: str  # the state in words: "above the 2.5% line", "no threshold in KPIS.md"
    tone: str  # a colour class: ABOVE, WITHIN or NEUTRAL


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


def money(amounts: list[dict[str, str]]) -> str:
    return ", ".join(f"{m['amount']} {m['currency']}" for m in amounts) or "0"


def _ratio(figure: dict[str, Any], what: str) -> str:
    return f"{figure['numerator']} of {figure['denominator']} {what}"


def _against(figure: dict[str, Any], line: float, name: str) -> tuple[str, str]:
    value = figure["value"]
    if value is None:
        return "no data this week", NEUTRAL
    if value > line:
        return f"above the {percent(line)} {name}", ABOVE
    return f"within the {percent(line)} {name}", WITHIN


NO_THRESHOLD = ("no threshold in KPIS.md", NEUTRAL)


def _rate_tile(
    key: str, label: str, figure: dict[str, Any], what: str, state: tuple[str, str]
) -> Tile:
    return Tile(key, label, percent(figure["value"]), _ratio(figure, what), *state)


def tiles(f: dict[str, Any]) -> list[Tile]:
    """The week's tiles, in the order an ops lead reads them."""
    cancel, pre = f["cancellation_rate"], f["pre_fulfillment_cancel_rate"]
    late = f["late_shipment_rate"]
    return [
        Tile("orders", "Orders", str(f["orders"]), "placed this week", *NO_THRESHOLD),
        _rate_tile(
            "cancellation_rate",
            "Cancellation rate",
            cancel,
            "orders cancelled",
            _against(cancel, CANCELLATION_LINE, "marketplace line"),
        ),
        _rate_tile(
            "pre_fulfillment_cancel_rate",
            "Pre-fulfilment cancel rate",
            pre,
            "orders cancelled before any shipment",
            _against(pre, pre.get("threshold", CANCELLATION_LINE), "marketplace line"),
        ),
        _rate_tile(
            "save_rate", "Save rate", f["save_rate"], "closed at-risk cases saved", NO_THRESHOLD
        ),
        _stop_ship(f),
        _leakage(f["refund_leakage"]),
        _rate_tile(
            "late_shipment_rate",
            "Late shipments",
            late,
            "shipped orders shipped after their ship-by time",
            _against(late, late.get("threshold", LATE_SHIPMENT_THRESHOLD), "limit"),
        ),
        *_sla(f),
        *_revenue(f),
        *_chargebacks(f.get("chargeback_ratio")),
    ]


def _stop_ship(f: dict[str, Any]) -> Tile:
    figure = f["stop_ship_success_rate"]
    counts = _ratio(figure, "cancel requests before shipment stopped")
    counts += f"; {f['late_cancel_requests']} late requests (after shipment)"
    return Tile(
        "stop_ship_success_rate", "Stop-ship success", percent(figure["value"]), counts,
        *NO_THRESHOLD,
    )  # fmt: skip


def _leakage(leak: dict[str, Any]) -> Tile:
    counts = (
        f"{leak['count']} refunds leaked, {money(leak['amount'])} of "
        f"{money(leak['refunded'])} refunded ({percent(leak['share_of_refunded'])})"
    )
    state = ("leakage found: a loss", ABOVE) if leak["count"] else ("no leakage", WITHIN)
    return Tile("refund_leakage", "Refund leakage", str(leak["count"]), counts, *state)


def _sla(f: dict[str, Any]) -> list[Tile]:
    return [
        _rate_tile(
            key,
            f"SLA attainment: {name}",
            f[key],
            f"{name} clocks ended this week met their SLA",
            NO_THRESHOLD,
        )
        for name, key in (
            ("first touch", "first_touch_sla_attainment"),
            ("resolution", "resolution_sla_attainment"),
        )
    ]


def _revenue(f: dict[str, Any]) -> list[Tile]:
    return [
        Tile(
            "revenue_at_risk",
            "Revenue at risk",
            money(f["revenue_at_risk"]),
            "value of orders with open at-risk cases at the end of the week",
            *NO_THRESHOLD,
        ),
        Tile(
            "revenue_saved",
            "Revenue saved",
            money(f["revenue_saved"]),
            "value of orders whose at-risk case closed saved this week",
            *NO_THRESHOLD,
        ),
    ]


def _chargebacks(ratio: dict[str, Any] | None) -> list[Tile]:
    if not ratio:
        return []
    if ratio.get("value") is None:
        counts = str(ratio.get("reason") or "no settled card transactions last month")
    else:
        counts = _ratio(ratio, "disputes over last month's settled card transactions")
    label = f"Chargeback ratio ({ratio.get('month', 'month')})"
    state = _against(ratio, ratio.get("threshold", CHARGEBACK_LINE), "card scheme line")
    return [Tile("chargeback_ratio", label, percent(ratio.get("value")), counts, *state)]


def segment_rows(f: dict[str, Any]) -> list[dict[str, str]]:
    """The cancellation chart's table: each channel x fulfilment type with its counts."""
    rows = []
    for s in [{"channel": "all orders", "fulfillment_type": "", **f}, *f.get("by_segment", [])]:
        name = " / ".join(part for part in (s["channel"], s["fulfillment_type"]) if part)
        rows.append(
            {
                "segment": name,
                "orders": str(s["orders"]),
                "cancelled": _cell(s["cancellation_rate"]),
                "pre_fulfillment": _cell(s["pre_fulfillment_cancel_rate"]),
                "late_shipment": _cell(s["late_shipment_rate"]),
                "above": "above 2.5%" if _above(s["cancellation_rate"]) else "",
            }
        )
    return rows


def _cell(figure: dict[str, Any]) -> str:
    return f"{percent(figure['value'])} ({figure['numerator']} / {figure['denominator']})"


def _above(figure: dict[str, Any]) -> bool:
    return figure["value"] is not None and figure["value"] > CANCELLATION_LINE


def hours(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds / 3600:.1f} h"
