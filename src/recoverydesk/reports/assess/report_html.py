"""``report.html``: one self-contained page (inline CSS and SVG charts, nothing fetched)."""

from __future__ import annotations

from html import escape
from typing import Any

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
max-width:1000px;color:#1f2933;padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #d9e2ec}
table{border-collapse:collapse;width:100%;margin:.5rem 0}
th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #e4e7eb;font-size:.9rem}
th{background:#f0f4f8}.bad{color:#b42318;font-weight:600}.ok{color:#027a48}
.muted{color:#616e7c;font-size:.85rem}svg text{font-size:12px;fill:#1f2933}
"""
BAR_WIDTH = 560
LABEL_WIDTH = 170
ROW = 24


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.2f}%"


def _money(parts: list[dict[str, str]]) -> str:
    return ", ".join(f"{p['amount']} {p['currency']}" for p in parts) or "0"


def _table(head: list[str], rows: list[list[str]]) -> str:
    top = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{top}</tr></thead><tbody>{body}</tbody></table>"


def _bars(items: list[tuple[str, float, str]], *, line: float | None = None) -> str:
    """A horizontal bar chart: (label, value, shown text); an optional dashed reference line."""
    if not items:
        return '<p class="muted">Nothing to chart.</p>'
    top = max([v for _, v, _ in items] + [line or 0]) or 1.0
    height = ROW * len(items) + 30
    parts = [f'<svg role="img" width="{LABEL_WIDTH + BAR_WIDTH + 90}" height="{height}">']
    for index, (label, value, shown) in enumerate(items):
        y = 10 + index * ROW
        width = BAR_WIDTH * value / top
        parts.append(
            f'<text x="0" y="{y + 14}">{escape(label[:26])}</text>'
            f'<rect x="{LABEL_WIDTH}" y="{y}" width="{width:.1f}" height="{ROW - 6}" '
            f'fill="#3e7bfa"/><text x="{LABEL_WIDTH + width + 6:.1f}" y="{y + 14}">'
            f"{escape(shown)}</text>"
        )
    if line is not None:
        x = LABEL_WIDTH + BAR_WIDTH * line / top
        parts.append(
            f'<line x1="{x:.1f}" y1="4" x2="{x:.1f}" y2="{height - 14}" stroke="#b42318" '
            f'stroke-dasharray="5,4"/><text x="{x + 4:.1f}" y="{height - 2}">'
            f"threshold {_pct(line)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _kpi_rows(figures: dict[str, Any]) -> list[list[str]]:
    rows = [["orders", escape(str(figures["orders"])), "", "", ""]]
    for key in (
        "cancellation_rate",
        "partial_cancellation_rate",
        "pre_fulfillment_cancel_rate",
        "seller_cancel_rate",
        "late_shipment_rate",
        "late_delivery_rate",
    ):
        figure = figures.get(key)
        if figure is None:
            continue
        threshold = figure.get("threshold")
        over = threshold is not None and (figure["value"] or 0) > threshold
        verdict = "" if threshold is None else ("above" if over else "within")
        rows.append(
            [
                escape(key),
                f'<span class="{"bad" if over else "ok"}">{_pct(figure["value"])}</span>',
                f"{figure['numerator']} / {figure['denominator']}",
                _pct(threshold) if threshold is not None else "",
                verdict,
            ]
        )
    return rows


def _segments(figures: dict[str, Any]) -> str:
    items = [
        (
            f"{row['channel']} x {row['fulfillment_type']}",
            float(row["cancellation_rate"]["value"] or 0),
            f"{_pct(row['cancellation_rate']['value'])} of {row['orders']}",
        )
        for row in figures.get("by_segment", [])
    ]
    return _bars(items, line=0.025)


def _exceptions(figures: dict[str, Any]) -> tuple[str, str]:
    entries = figures["exceptions"]
    chart = _bars([(e["category"], float(e["cases"]), str(e["cases"])) for e in entries])
    rows = [
        [
            escape(e["category"]),
            str(e["cases"]),
            str(e["open"]),
            escape(_money(e["value"])),
            escape(e["loss_likelihood"]),
            escape(_money(e["recoverable"])),
            escape(e["playbook"]),
            escape(e["queue"]),
            escape(e["first_touch"]),
            escape(e["resolution"]),
        ]
        for e in entries
    ]
    head = ["category", "cases", "open", "value", "loss likelihood", "recoverable", "playbook"]
    table = _table([*head, "queue", "first touch", "resolution"], rows)
    return chart, table


def _quality(summary: dict[str, Any]) -> str:
    quality = summary["data_quality"]
    rows = [
        [escape(k), escape(str(v))]
        for k, v in quality.items()
        if k not in {"contradictions", "rows_lacking", "unparseable_dates"}
    ]
    rows += [[f"rows lacking {escape(k)}", str(v)] for k, v in quality["rows_lacking"].items()]
    rows += [[f"unparseable {escape(k)}", str(v)] for k, v in quality["unparseable_dates"].items()]
    for name, found in quality["contradictions"].items():
        shown = "; ".join(escape(str(e["order_id"])) for e in found["examples"])
        rows.append([escape(name.replace("_", " ")), f"{found['orders']} {shown}"])
    return _table(["check", "found"], rows)


def render_report(summary: dict[str, Any]) -> str:
    figures = summary["figures"]
    chart, table = _exceptions(figures)
    files = [
        [escape(f["file"]), str(f.get("rows", "")), str(f.get("empty_rows_dropped", ""))]
        for f in summary["input_files"]
    ]
    skipped = [[escape(n["figure"]), escape(n["why"])] for n in summary["not_computed"]]
    notes = "".join(f"<li>{escape(a)}</li>" for a in summary["assumptions"])
    body = f"""
<h1>Order recovery assessment</h1>
<p class="muted">{escape(summary["profile"]["title"])}; orders placed {
        escape(str(summary["period"]["from"]))
    } to {escape(str(summary["period"]["to"]))}.</p>
<h2>Key figures</h2>
{_table(["figure", "value", "count", "threshold", ""], _kpi_rows(figures))}
<p>Revenue at risk (open at-risk orders): <b>{escape(_money(figures["revenue_at_risk"]))}</b>;
recoverable with the desk's playbooks: <b>{escape(_money(figures["recoverable"]))}</b>.</p>
<h2>Cancellation rate by channel x fulfilment type</h2>{_segments(figures)}
<h2>Exceptions by category</h2>{chart}
<h2>Recoverable value, SLAs and playbooks</h2>{table}
<h2>Not computed</h2>{_table(["figure", "why"], skipped)}
<h2>Data quality</h2>{_quality(summary)}
<h2>Input files</h2>{_table(["file", "rows", "empty rows dropped"], files)}
<h2>Assumptions</h2><ul>{notes}</ul>
"""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Order recovery assessment</title><style>{CSS}</style></head>"
        f"<body>{body}</body></html>\n"
    )
