"""The command line end to end: real processes, a real SQLite file, the contract's exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

CLI = [sys.executable, "-m", "recoverydesk.entrypoints.cli"]


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "RECOVERYDESK_DATABASE_URL": f"sqlite:///{cwd / 'desk.db'}", **env},
        check=False,
    )


def write_jsonl(path: Path, events: list[dict[str, Any]], extra: list[str] = ()) -> Path:
    lines = [json.dumps(e) for e in events] + list(extra)
    path.write_text("\n".join(lines) + "\n")
    return path


def ev(
    eid: str,
    kind: str,
    at: str,
    ref: str = "1001",
    order: dict[str, Any] | None = None,
    **data: Any,
) -> dict[str, Any]:
    return {
        "id": eid,
        "source": "shopify",
        "type": kind,
        "occurred_at": at,
        "order": {"ref": ref, **(order or {})},
        "data": data,
    }


@pytest.fixture
def desk_dir(tmp_path: Path) -> Path:
    assert run(["db", "upgrade"], tmp_path).returncode == 0
    assert run(["merchant", "add", "acme"], tmp_path).stdout.strip() == "1"
    return tmp_path


def test_commands_refuse_a_database_without_schema(tmp_path: Path) -> None:
    result = run(["merchant", "add", "acme"], tmp_path)
    assert result.returncode == 1
    assert "recoverydesk db upgrade" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_db_upgrade_is_idempotent_and_bad_usage_exits_2(desk_dir: Path) -> None:
    assert run(["db", "upgrade"], desk_dir).returncode == 0
    assert run(["merchant", "add"], desk_dir).returncode == 2
    assert run(["no-such-command"], desk_dir).returncode == 2


def test_merchant_add_twice_is_a_user_error(desk_dir: Path) -> None:
    result = run(["merchant", "add", "acme"], desk_dir)
    assert (result.returncode, result.stderr.strip()) == (
        1,
        "error: merchant 'acme' exists already",
    )


def test_merchant_apply_validates_and_versions(desk_dir: Path) -> None:
    bad = desk_dir / "acme.yaml"
    bad.write_text("time_zone: Europe/Berlin\nthresholds:\n  high_valu: 300\n")
    result = run(["merchant", "apply", "acme", str(bad)], desk_dir)
    assert result.returncode == 1
    assert f"{bad}:3: thresholds.high_valu" in result.stderr
    bad.write_text("time_zone: Mars/Olympus\n")
    assert "time_zone" in run(["merchant", "apply", "acme", str(bad)], desk_dir).stderr
    good = desk_dir / "good.yaml"
    good.write_text("time_zone: Europe/Berlin\ncurrency: EUR\nthresholds:\n  high_value: 300\n")
    assert (
        run(["merchant", "apply", "acme", str(good)], desk_dir)
        .stdout.strip()
        .endswith("configuration version 1 applied")
    )
    assert "version 2" in run(["merchant", "apply", "acme", str(good)], desk_dir).stdout


def test_token_create(desk_dir: Path) -> None:
    token = run(["token", "create", "--merchant", "acme", "--role", "lead"], desk_dir)
    assert token.returncode == 0
    assert token.stdout.startswith("rd_")
    assert (
        run(["token", "create", "--merchant", "acme", "--role", "king"], desk_dir).returncode == 1
    )
    assert run(["token", "create", "--merchant", "nobody"], desk_dir).returncode == 1


def test_ingest_stores_valid_lines_once_and_names_bad_ones(desk_dir: Path) -> None:
    # given a file with good events, a duplicate, and three bad lines
    good = [
        ev("1", "order.placed", "2026-11-20T10:00:00Z", order={"value": "10.00"}),
        ev("2", "hold.placed", "2026-11-20T10:05:00Z", hold_type="fraud"),
    ]
    path = write_jsonl(
        desk_dir / "in.jsonl",
        [*good, good[0]],
        [
            "{broken",
            json.dumps(ev("3", "hold.placed", "2026-11-20T10:06:00Z")),
            json.dumps({**ev("4", "order.placed", "2026-11-20T10:07:00Z"), "merchant": "globex"}),
        ],
    )
    # when it is ingested
    result = run(["ingest", str(path), "--merchant", "acme"], desk_dir)
    # then the valid events are stored, the bad lines are named, and the exit code says so
    assert result.returncode == 1
    assert "6 events read, 2 stored, 1 duplicates, 3 invalid; cases opened 1" in result.stdout
    assert "line 4: event: malformed json" in result.stderr.lower()
    assert "line 5: data.hold_type: field required" in result.stderr
    assert "line 6: event 4: merchant 'globex' is not 'acme'" in result.stderr
    # and a second run stores nothing new
    again = run(["ingest", str(path), "--merchant", "acme"], desk_dir)
    assert "0 stored, 3 duplicates" in again.stdout


def test_ingest_progress_is_quiet_when_piped(desk_dir: Path) -> None:
    path = write_jsonl(desk_dir / "in.jsonl", [ev("1", "order.placed", "2026-11-20T10:00:00Z")])
    result = run(["ingest", str(path), "--merchant", "acme"], desk_dir)
    assert result.returncode == 0
    assert result.stderr == ""


def test_normalize_canonical_prints_events_without_storing(desk_dir: Path) -> None:
    path = write_jsonl(
        desk_dir / "in.jsonl", [ev("1", "payment.failed", "2026-11-20T10:00:00+01:00")]
    )
    result = run(["normalize", "canonical", str(path)], desk_dir)
    assert result.returncode == 0
    printed = json.loads(result.stdout)
    assert printed["occurred_at"] == "2026-11-20T09:00:00+00:00"
    assert run(["normalize", "shopify", str(path)], desk_dir).returncode == 1


STREAM = [
    ev(
        "o1",
        "order.placed",
        "2026-11-20T10:00:00Z",
        order={
            "value": "80.00",
            "currency": "USD",
            "placed_at": "2026-11-20T10:00:00Z",
            "ship_by": "2026-11-20T18:00:00Z",
        },
    ),
    ev("p1", "payment.failed", "2026-11-20T10:01:00Z"),
    ev("p2", "payment.captured", "2026-11-20T12:00:00Z", amount="80.00"),
    ev(
        "o2",
        "order.placed",
        "2026-11-20T11:00:00Z",
        ref="1002",
        order={
            "value": "20.00",
            "currency": "USD",
            "placed_at": "2026-11-20T11:00:00Z",
            "ship_by": "2026-11-20T20:00:00Z",
        },
    ),
    ev("s2", "fulfillment.shipped", "2026-11-20T19:00:00Z", ref="1002", tracking="1Z"),
    ev("c9", "cancel.requested", "2026-11-21T09:00:00Z", ref="1002", requested_by="customer"),
]


def test_replay_writes_cases_actions_and_kpis_and_fires_timers(tmp_path: Path) -> None:
    # given a stream in which order 1001 never ships and 1002 ships before its ship-by time
    path = write_jsonl(tmp_path / "events.jsonl", STREAM)
    # when it is replayed
    result = run(["replay", str(path), "--out", str(tmp_path / "out")], tmp_path)
    assert result.returncode == 0, result.stderr
    cases = json.loads((tmp_path / "out" / "cases.json").read_text())
    # then the failed payment was closed by the capture, and the ship-by timer of 1001 fired in
    # simulated time and opened a late-shipment case at 18:00
    summary = sorted(
        (c["order_ref"], c["category"], c["status"], c["outcome"], c["opened_at"]) for c in cases
    )
    assert summary == [
        ("1001", "late_shipment_risk", "triaged", None, "2026-11-20T18:00:00+00:00"),
        ("1001", "payment_failed", "closed", "released", "2026-11-20T10:01:00+00:00"),
        ("1002", "change_request", "closed", "converted_to_return", "2026-11-21T09:00:00+00:00"),
    ]
    late = next(c for c in cases if c["category"] == "late_shipment_risk")
    assert late["timeline"][0]["at"] == "2026-11-20T18:00:00+00:00"
    assert {"sla", "escalations", "queue", "priority", "classification", "root_cause"} <= set(late)
    # and triage put it in the pre-fulfilment queue at P1 (the ship cutoff has passed); its
    # operational clock ran out at once, its first-touch clock waits for Monday's business hours
    assert (late["queue"], late["priority"]) == ("pre_fulfilment", "P1")
    clocks = late["sla"]["clocks"]
    assert clocks["operational"]["due_at"] == "2026-11-20T18:00:00+00:00"
    assert clocks["first_touch"]["due_at"] == "2026-11-23T10:00:00+00:00"
    assert [(e["clock"], e["stage"]) for e in late["escalations"]] == [
        ("operational", "warning"),
        ("operational", "breach"),
        ("operational", "escalation"),
    ]
    assert late["sla"]["breached"] is True
    cancel = next(c for c in cases if c["category"] == "change_request")
    assert cancel["priority"] == "P1"  # already shipped: a carrier intercept is needed
    # the cancel came after the shipment: the stop-ship workflow converted it to a return
    assert cancel["cancellation"]["outcome"] == "converted_to_return"
    actions = json.loads((tmp_path / "out" / "actions.json").read_text())
    # (the payment playbook retried 1001's authorization an hour after it failed, before the
    # capture at 12:00; the late-shipment case asked the warehouse for the order's status)
    assert [(a["order_ref"], a["system"], a["action"]) for a in actions] == [
        ("1001", "payments", "retry_payment"),
        ("1001", "wms", "wms_status"),
        ("1002", "erp", "return_authorize"),
        ("1002", "email", "send_message"),
    ]
    assert actions[0]["idempotency_key"] == "playbook:replay:1:retry_authorization:1"
    kpis = json.loads((tmp_path / "out" / "kpis.json").read_text())["merchants"]["replay"]
    assert kpis["orders"] == 2
    assert kpis["save_rate"] == {"value": 0.5, "numerator": 1, "denominator": 2}
    assert kpis["late_shipment_rate"]["value"] == 0.0
    assert kpis["exception_backlog"]["open"] == 1
    assert kpis["late_cancel_requests"] == 1


def test_replay_is_deterministic_and_respects_until(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "events.jsonl", STREAM)
    for out in ("a", "b"):
        assert run(["replay", str(path), "--out", str(tmp_path / out)], tmp_path).returncode == 0
    for name in ("cases.json", "actions.json", "kpis.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    early = run(
        ["replay", str(path), "--out", str(tmp_path / "c"), "--until", "2026-11-20T17:00:00Z"],
        tmp_path,
    )
    assert early.returncode == 0
    categories = {c["category"] for c in json.loads((tmp_path / "c" / "cases.json").read_text())}
    assert categories == {"payment_failed"}


def test_replay_refuses_an_invalid_stream(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "events.jsonl", STREAM, ["{nope"])
    result = run(["replay", str(path), "--out", str(tmp_path / "out")], tmp_path)
    assert result.returncode == 1
    assert "line 7" in result.stderr
    assert not (tmp_path / "out").exists()


BACKTEST = (
    [
        ev(
            f"o{n}",
            "order.placed",
            f"2026-11-23T0{n}:00:00Z",
            ref=f"B{n}",
            order={"value": value, "currency": "USD", "channel": channel},
        )
        for n, value, channel in ((1, "40.00", "web"), (2, "45.00", "amazon"), (3, "900.00", "web"))
    ]
    + [ev(f"f{n}", "payment.failed", f"2026-11-23T0{n}:05:00Z", ref=f"B{n}") for n in (1, 2, 3)]
    + [ev("late", "ticket.created", "2026-11-24T12:00:00Z", ref="B9")]
)

STRICT = """
merchant: replay
calendar: {time_zone: UTC, hours: {mon: ["00:00-24:00"], tue: ["00:00-24:00"]}}
rules:
  priority:
    - {name: marketplace_order, when: 'order.channel == "amazon"', then: P1}
queues:
  - {name: payments, categories: [payment_failed]}
sla:
  payments: {first_touch: {P1: PT15M, P2: PT1H, P3: PT2H}}
"""

LENIENT = """
merchant: replay
calendar: {time_zone: UTC, hours: {mon: ["00:00-24:00"], tue: ["00:00-24:00"]}}
queues:
  - {name: payments, categories: [payment_failed]}
sla:
  payments: {first_touch: {P1: PT4H, P2: PT8H, P3: PT48H}}
"""


def test_replay_under_two_configurations_compares_priorities_and_sla_attainment(
    tmp_path: Path,
) -> None:
    # given one stream of three failed payments nobody touches, and two candidate configurations
    path = write_jsonl(tmp_path / "events.jsonl", BACKTEST)
    outcomes = {}
    for name, text in (("strict", STRICT), ("lenient", LENIENT)):
        config = tmp_path / f"{name}.yaml"
        config.write_text(text)
        # when the stream is replayed under each
        out = tmp_path / name
        result = run(["replay", str(path), "--config", str(config), "--out", str(out)], tmp_path)
        assert result.returncode == 0, result.stderr
        cases = json.loads((out / "cases.json").read_text())
        sla = json.loads((out / "sla.json").read_text())["replay"]["payments"]
        outcomes[name] = (
            {c["order_ref"]: (c["priority"], c["queue"], c["config_version"]) for c in cases},
            sla["clocks"]["first_touch"],
            sla["escalations"],
        )
    # then the strict file's own rule makes the marketplace order P1, the lenient one does not
    assert outcomes["strict"][0] == {
        "B1": ("P3", "payments", 1),
        "B2": ("P1", "payments", 1),
        "B3": ("P1", "payments", 1),
    }
    assert outcomes["lenient"][0]["B2"] == ("P3", "payments", 1)
    # and under the strict SLA every first touch is breached, under the lenient one only the
    # high-value order's (P1, 4 h) is; the escalations show the same, plus, under both, the
    # marketplace order's 24-hour reply clock (wall time: warned at 18 h, breached at 24 h)
    assert outcomes["strict"][1] == {"started": 3, "breached": 3, "attainment": 0.0}
    assert outcomes["lenient"][1] == {"started": 3, "breached": 1, "attainment": 0.6667}
    assert outcomes["strict"][2] == {"warning": 4, "breach": 4, "escalation": 3}
    assert outcomes["lenient"][2] == {"warning": 2, "breach": 2, "escalation": 1}


WARRANTY = """
merchant: replay
taxonomy:
  categories: [{code: warranty_claim, phase: post-fulfilment, loss_likelihood: "0.30"}]
openers:
  - name: warranty_ticket
    when: >-
      event.type == "ticket.created" && has(event.data.topic)
      && event.data.topic == "warranty"
    category: warranty_claim
    closed_by: {return.received: returned}
queues:
  - {name: warranty, categories: [warranty_claim]}
  - {name: everything_else, categories: [payment_failed, change_request, delivery_exception]}
root_causes:
  - {code: product_defect, label: The product failed in warranty, owner: quality,
     categories: [warranty_claim]}
"""


def test_a_merchant_category_is_opened_routed_and_closed_by_its_configured_rules(
    tmp_path: Path,
) -> None:
    # given a merchant who added a warranty-claim category, opened by warranty tickets
    config = tmp_path / "warranty.yaml"
    config.write_text(WARRANTY)
    stream = [
        ev("o1", "order.placed", "2026-11-23T09:00:00Z", order={"value": "200.00"}),
        ev("t1", "ticket.created", "2026-11-24T09:00:00Z", topic="where is my order"),
        ev("t2", "ticket.created", "2026-11-25T09:00:00Z", topic="warranty"),
        ev("t3", "ticket.created", "2026-11-25T10:00:00Z", topic="warranty"),
        ev("r1", "return.received", "2026-11-27T09:00:00Z"),
    ]
    path = write_jsonl(tmp_path / "events.jsonl", stream)
    # when the stream is replayed under that configuration
    out = tmp_path / "out"
    result = run(["replay", str(path), "--config", str(config), "--out", str(out)], tmp_path)
    assert result.returncode == 0, result.stderr
    # then one warranty case opened on the warranty ticket (the other ticket opened nothing,
    # the second warranty ticket joined it), in the warranty queue, closed by the return
    cases = json.loads((out / "cases.json").read_text())
    assert [
        (c["category"], c["opened_by"], c["queue"], c["status"], c["outcome"]) for c in cases
    ] == [("warranty_claim", "t2", "warranty", "closed", "returned")]
    case = cases[0]
    assert case["root_cause"] == "product_defect"  # the merchant's root cause for its category
    assert case["data"]["opener"] == "warranty_ticket"
    assert case["event_ids"] == ["t2", "t3", "r1"]
    assert case["revenue_at_risk"] == "60.00"  # 200.00 x the category's 0.30
