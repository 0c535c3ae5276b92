"""What the playbook replay scenarios share (``test_replay_playbooks*.py``): realistic canonical
events, ``recoverydesk replay`` run as a subprocess, and readers of its ``cases.json`` and
``actions.json``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CLI = [sys.executable, "-m", "recoverydesk.entrypoints.cli"]
DAY = "2026-11-23"  # a Monday
MERCHANT = "replay"  # the merchant replay runs a stream without ``merchant`` as


def t(hhmm: str, day: str = DAY) -> str:
    return f"{day}T{hhmm}:00Z"


def at(hhmm: str, day: str = DAY) -> str:
    """A moment as cases.json and actions.json write it."""
    return f"{day}T{hhmm}:00+00:00"


ADDRESS = {
    "name": "Kim Lee",
    "address1": "1 Main St",
    "city": "Austin",
    "province_code": "TX",
    "zip": "78701",
    "country_code": "US",
}


def order(
    ref: str,
    value: str = "80.00",
    *,
    tier: str = "standard",
    email: str | None = None,
    address: dict[str, str] | None = None,
    lines: list[dict[str, Any]] | None = None,
    ship_by: str = t("18:00", "2026-11-24"),
) -> dict[str, Any]:
    """An order as the storefront reports it when it is placed at 09:00."""
    return {
        "ref": ref,
        "channel": "shopify",
        "fulfillment_type": "3pl",
        "value": value,
        "currency": "USD",
        "placed_at": t("09:00"),
        "ship_by": ship_by,
        "customer": {"id": f"c-{ref}", "email": email or f"buyer{ref}@example.com", "tier": tier},
        "shipping_address": address or ADDRESS,
        "lines": lines or [{"sku": f"SKU-{ref}", "qty": 1, "price": value}],
    }


def ev(
    eid: str,
    event_type: str,
    when: str,
    ref: str,
    facts: dict[str, Any] | None = None,
    /,
    **data: Any,
) -> dict[str, Any]:
    """A canonical event; its source is the prefix of its id."""
    return {
        "id": eid,
        "source": eid.split(":", 1)[0],
        "type": event_type,
        "occurred_at": when,
        "order": facts or {"ref": ref},
        "data": data,
    }


def placed(facts: dict[str, Any]) -> dict[str, Any]:
    return ev(f"shopify:{facts['ref']}-placed", "order.placed", facts["placed_at"], "", facts)


@dataclass(frozen=True, slots=True)
class Replayed:
    cases: list[dict[str, Any]]
    actions: list[dict[str, Any]]

    def case(self, ref: str, category: str) -> dict[str, Any]:
        found = [c for c in self.cases if c["order_ref"] == ref and c["category"] == category]
        assert len(found) == 1, [(c["order_ref"], c["category"]) for c in self.cases]
        return found[0]

    def sent(self, ref: str) -> list[dict[str, Any]]:
        """The order's commands and customer messages, in order (escalation notices apart)."""
        return [a for a in self.actions if a["order_ref"] == ref and a["action"] != "notify"]

    def notices(self, ref: str) -> list[dict[str, Any]]:
        """The escalation notices about the order (email and chat)."""
        return [a for a in self.actions if a["order_ref"] == ref and a["action"] == "notify"]

    def calls(self, ref: str) -> list[tuple[str, str, str]]:
        """(system, action, idempotency key) of the order's commands and messages, in order."""
        return [(a["system"], a["action"], a["idempotency_key"]) for a in self.sent(ref)]


def run_replay(folder: Path, events: list[dict[str, Any]], config: str | None = None) -> Replayed:
    """``recoverydesk replay EVENTS.jsonl [--config FILE] --out DIR`` as a user runs it (no
    ``RECOVERYDESK_PUBLIC_URL``: replay signs its decision links itself)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "events.jsonl"
    path.write_text("".join(json.dumps(event) + "\n" for event in events))
    args = [*CLI, "replay", str(path), "--out", str(folder / "out")]
    if config is not None:
        (folder / "merchant.yaml").write_text(config)
        args += ["--config", str(folder / "merchant.yaml")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECOVERYDESK_")}
    result = subprocess.run(
        args,
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=180,
        env={**env, "RECOVERYDESK_DATABASE_URL": f"sqlite:///{folder / 'desk.db'}"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    cases = json.loads((folder / "out" / "cases.json").read_text())
    actions = json.loads((folder / "out" / "actions.json").read_text())
    return Replayed(cases, actions)


def rows(case: dict[str, Any], kind: str, step: str | None = None) -> list[dict[str, Any]]:
    """The case's timeline entries of a kind (and of a playbook step), in order."""
    return [
        row
        for row in case["timeline"]
        if row["kind"] == kind and (step is None or row["detail"].get("step") == step)
    ]


def steps_run(case: dict[str, Any]) -> list[tuple[str, int]]:
    """(step, attempt) of every ``playbook_step`` entry, in order."""
    return [(r["detail"]["step"], r["detail"]["attempt"]) for r in rows(case, "playbook_step")]


def assert_playbook_actor(case: dict[str, Any], playbook: str, version: int = 1) -> None:
    """Every automatic step is on the timeline with the playbook version that took it."""
    taken = rows(case, "playbook_step")
    assert taken, f"no playbook step on case {case['id']}"
    for row in taken:
        assert row["actor"] == f"playbook:{playbook}@v{version}"
        assert (row["detail"]["playbook"], row["detail"]["version"]) == (playbook, version)


def key(case: dict[str, Any], step: str, attempt: int = 1) -> str:
    return f"playbook:{MERCHANT}:{case['id']}:{step}:{attempt}"
