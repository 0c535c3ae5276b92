"""Time-to-cancel and stop-ship success over a simulated merchant week, replayed by the desk.

    .venv/bin/python bench/stopship_week.py [--orders 13440] [--seed 7] [--out DIR]

The sandbox traffic simulator plays a week of orders (about one every 45 seconds, so 13,440
orders is a week); cancel requests are answered by the 3PL emulator with the acknowledgment
behaviour printed below (``recoverydesk.sandbox.traffic.WarehouseAnswers``). The stream goes
through ``recoverydesk replay`` (the desk's own code in simulated time, default merchant
configuration: business hours Monday to Friday 09:00-17:00 UTC, acknowledgment windows of
1 working hour when picking and 2 when packed). The figures are read from the replay's
``kpis.json`` and ``cases.json``; the replay's wall time and throughput are printed too.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recoverydesk.entrypoints.replay import run_replay
from recoverydesk.sandbox.traffic import WarehouseAnswers, generate_orders, to_jsonl
from recoverydesk.telemetry import configure_logging

MONDAY = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)


def _hours(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds / 3600:.2f} h ({seconds / 60:.0f} min)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=13_440)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    configure_logging("warning", "console")  # the figures, not the desk's log lines
    answers = WarehouseAnswers()
    with tempfile.TemporaryDirectory(prefix="stopship-week-") as scratch:
        out = args.out or Path(scratch) / "out"
        stream = Path(scratch) / "week.jsonl"
        events = generate_orders(
            orders=args.orders, seed=args.seed, start=MONDAY, merchant="week", warehouse=answers
        )
        count = to_jsonl(events, stream)
        started = time.perf_counter()
        run_replay(stream, out=out, config=None, until=None)
        elapsed = time.perf_counter() - started
        report(out, count, args.orders, elapsed, answers)


def report(out: Path, count: int, orders: int, elapsed: float, answers: WarehouseAnswers) -> None:
    kpis: dict[str, Any] = json.loads((out / "kpis.json").read_text())["merchants"]["week"]
    cases: list[dict[str, Any]] = json.loads((out / "cases.json").read_text())
    workflows = [c["cancellation"] for c in cases if c.get("cancellation")]
    outcomes = Counter(w["outcome"] or w["stage"] for w in workflows)
    branches = Counter(w["branch"] for w in workflows)
    ttc = kpis["time_to_cancel"]
    success = kpis["stop_ship_success_rate"]
    print(f"3PL emulator: {answers.describe()}")
    print(
        f"stream: {orders:,} orders, {count:,} events; replay took {elapsed:.1f} s "
        f"({count / elapsed:,.0f} events/s)"
    )
    print(f"cancel requests: {len(workflows)}; by branch {dict(sorted(branches.items()))}")
    print(f"outcomes: {dict(sorted(outcomes.items()))}")
    print(
        f"time to cancel over {ttc['count']} finished requests: "
        f"median {_hours(ttc['median_seconds'])}, p90 {_hours(ttc['p90_seconds'])}"
    )
    for limit in ("within_1h", "within_4h", "within_24h"):
        share = ttc[limit]
        print(f"  {limit}: {share['value']} ({share['numerator']}/{share['denominator']})")
    print(
        f"stop-ship success rate: {success['value']} ({success['numerator']}/"
        f"{success['denominator']}); late cancel requests: {kpis['late_cancel_requests']}; "
        f"exceptions still open: {kpis['stop_ship_exceptions_open']}"
    )


if __name__ == "__main__":
    main()
