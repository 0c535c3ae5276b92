"""Escalation exactly once when a worker process dies in the middle of firing it (PostgreSQL)."""

from __future__ import annotations

import json
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from tests.integration.test_notify import ChatReceiver, SmtpServer
from tests.integration.test_worker_processes import (
    MERCHANT,
    cli,
    ingest_file,
    kill,
    libpq,
    placed,
    query,
    start_worker,
    terminate,
    wait_for,
)

CONFIG = """
merchant: acme
calendar:
  time_zone: UTC
  hours: {{mon: ["00:00-24:00"], tue: ["00:00-24:00"], wed: ["00:00-24:00"],
          thu: ["00:00-24:00"], fri: ["00:00-24:00"], sat: ["00:00-24:00"],
          sun: ["00:00-24:00"]}}
escalation:
  ops_lead: {{name: lead, email: lead@acme.test}}
  owners:
    finance: {{name: finance, email: finance@acme.test}}
    warehouse: {{name: warehouse}}
    fraud: {{name: fraud}}
  chat_webhook: {chat}/hooks/desk
sla:
  pre_fulfilment:
    first_touch: {{P1: PT1S, P2: PT1S, P3: PT1S}}
    deadline: ship_by
"""


@pytest.mark.postgres
def test_an_escalation_whose_worker_is_killed_mid_run_fires_and_notifies_once(
    pg_url: str,
    tmp_path: Path,
    smtp_server: SmtpServer,
    chat_receiver: ChatReceiver,
) -> None:
    # given: a merchant whose ops lead and finance owner get email, and a chat channel
    config = tmp_path / "acme.yaml"
    config.write_text(CONFIG.format(chat=chat_receiver.base_url))
    cli(pg_url, "db", "upgrade")
    cli(pg_url, "merchant", "add", MERCHANT, "--config", str(config))
    # and: a failed payment, with a first touch due within one second (a strict SLA table),
    # so its warning, breach and escalation timers come due at once
    now = datetime.now(UTC).replace(microsecond=0)
    failed = {
        "id": "psp:failed:R-1",
        "source": "psp",
        "type": "payment.failed",
        "occurred_at": (now - timedelta(minutes=5)).isoformat(),
        "order": {"ref": "R-1"},
        "data": {"reason": "declined"},
    }
    ingest_file(pg_url, tmp_path, [placed("R-1", now=now, ship_by=timedelta(days=5)), failed])
    ((case_id,),) = query(pg_url, "SELECT id FROM cases")
    wait_for(
        lambda: (
            query(
                pg_url,
                "SELECT count(*) FROM jobs WHERE kind = 'sla.check' AND key LIKE %s"
                " AND due_at <= now()",
                [f"sla:{case_id}:first_touch:%"],
            )
            == [(3,)]
        ),
        what="the three first-touch stages to come due",
        timeout=10,
    )
    logs = [tmp_path / "worker-a.log", tmp_path / "worker-b.log"]
    env = {
        "worker_lease_seconds": "2",
        "worker_poll_seconds": "0.2",
        "smtp_host": "127.0.0.1",
        "smtp_port": str(smtp_server.port),
    }
    # and: the test holds the case's row lock, so firing the escalation hangs on it
    blocker = psycopg.connect(libpq(pg_url))
    worker_a = worker_b = None
    try:
        blocker.execute("SELECT id FROM cases WHERE id = %s FOR UPDATE", [case_id])
        worker_a = start_worker(pg_url, "A", logs[0], **env)
        wait_for(
            lambda: query(
                pg_url,
                "SELECT pid FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
                [blocker.info.backend_pid],
            ),
            what="worker A to block on the case's row lock inside the escalation",
            timeout=30,
            alive=[worker_a],
            logs=logs,
        )
        # when: worker A is killed without warning, and the lock is released
        worker_a.send_signal(signal.SIGKILL)
        assert worker_a.wait(timeout=10) == -signal.SIGKILL
        blocker.rollback()
        # then: nothing of the escalation it was firing was kept, and nobody was told
        assert query(pg_url, "SELECT escalations FROM cases") == [([],)]
        assert smtp_server.mailbox.deliveries == []

        # when: worker B takes over once A's lease has run out
        worker_b = start_worker(pg_url, "B", logs[1], **env)
        wait_for(
            lambda: (
                query(
                    pg_url,
                    "SELECT count(*) FROM jobs WHERE status <> 'done' AND due_at <= now()",
                )
                == [(0,)]
                and len(smtp_server.mailbox.deliveries) >= 3
            ),
            what="worker B to fire the stages and send the notifications",
            timeout=60,
            alive=[worker_b],
            logs=logs,
        )
        # then: each stage fired once, on the timeline once, emailed once and posted once
        ((escalations,),) = query(pg_url, "SELECT escalations FROM cases")
        stages = [(e["clock"], e["stage"], e["to"]) for e in escalations]
        assert stages == [
            ("first_touch", "warning", "lead"),
            ("first_touch", "breach", "lead"),
            ("first_touch", "escalation", "finance"),
        ]
        rows = query(
            pg_url,
            "SELECT kind FROM case_timeline WHERE kind LIKE 'sla_%%' ORDER BY id",
        )
        assert rows == [("sla_warning",), ("sla_breach",), ("sla_escalation",)]
        keys = [d.message["X-Recoverydesk-Key"] for d in smtp_server.mailbox.deliveries]
        assert keys == [e["key"] for e in escalations]
        assert [d.rcpt_tos for d in smtp_server.mailbox.deliveries] == [
            ["lead@acme.test"],
            ["lead@acme.test"],
            ["finance@acme.test"],
        ]
        posted = [json.loads(r.body)["key"] for r in chat_receiver.requests]
        assert sorted(posted) == sorted(keys)
        assert terminate(worker_b) == 0
    finally:
        kill(worker_a)
        kill(worker_b)
        blocker.close()
