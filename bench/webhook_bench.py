"""Signed webhook intake: the desk's `POST /webhooks/shopify/{merchant}` against a bare endpoint.

    .venv/bin/python bench/webhook_bench.py [--requests 2000] [--clients 8] [--no-postgres]
                                            [--postgres URL]

Each server is its own process (`recoverydesk serve --no-worker`, one uvicorn worker, and for the
baseline `uvicorn` serving a FastAPI app whose only route returns 200), measured in the same run
by the same client: `--clients` threads sending `--requests` Shopify `orders/create` webhooks in
all (the fixture order with a new id each time, so every delivery stores one new event), signed
with the merchant's secret. Printed: requests/s, p50 / p99 latency, and the desk's throughput as
a share of the bare endpoint's, on SQLite and PostgreSQL (a fresh database each).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

from recoverydesk.connectors.signatures import sign

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT.parent / "shared" / "fixtures" / "vendors" / "shopify" / "api-order-authorized.json"
SECRET = "shpss_bench_secret"
BARE = """
from fastapi import FastAPI, Request

app = FastAPI()


@app.post("/webhooks/{provider}/{merchant}")
async def bare(request: Request, provider: str, merchant: str) -> dict[str, bool]:
    await request.body()
    return {"ok": True}
"""
CONFIG = f"""
merchant: bench
connectors:
  webhooks:
    shopify: {{secrets: [{SECRET}]}}
"""


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        found: int = sock.getsockname()[1]
        return found


def _wait(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"server exited: {proc.stderr.read().decode() if proc.stderr else ''}"
            )
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def _bodies(count: int) -> list[bytes]:
    order = json.loads(FIXTURE.read_text(encoding="utf-8"))["order"]
    bodies = []
    for n in range(count):
        order = {**order, "id": 9_000_000 + n, "name": f"#B{n}", "order_number": 500_000 + n}
        bodies.append(json.dumps(order).encode())
    return bodies


def _fire(base: str, bodies: list[bytes], clients: int) -> dict[str, float]:
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    chunks = [bodies[i::clients] for i in range(clients)]

    def run(chunk: list[bytes]) -> None:
        with httpx.Client(base_url=base, timeout=30) as http:
            for body in chunk:
                headers = sign(
                    "shopify",
                    body=body,
                    secret=SECRET,
                    now=datetime.now(UTC),
                    delivery_id=str(uuid.uuid4()),
                )
                headers["X-Shopify-Topic"] = "orders/create"
                started = time.perf_counter()
                answer = http.post("/webhooks/shopify/bench", content=body, headers=headers)
                spent = time.perf_counter() - started
                with lock:
                    latencies.append(spent)
                    if answer.status_code != 200:
                        failures.append(f"{answer.status_code} {answer.text[:200]}")

    started = time.perf_counter()
    threads = [threading.Thread(target=run, args=(chunk,)) for chunk in chunks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{len(failures)} failed requests, first: {failures[0]}")
    ordered = sorted(latencies)
    return {
        "rps": len(bodies) / elapsed,
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[int(len(ordered) * 0.99) - 1] * 1000,
    }


def _desk(url: str, scratch: Path) -> tuple[subprocess.Popen[bytes], str]:
    env = {**os.environ, "RECOVERYDESK_DATABASE_URL": url, "RECOVERYDESK_LOG_LEVEL": "warning"}
    exe = str(ROOT / ".venv" / "bin" / "recoverydesk")
    config = scratch / "bench.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    subprocess.run([exe, "db", "upgrade"], env=env, check=True, capture_output=True)
    subprocess.run(
        [exe, "merchant", "add", "bench", "--config", str(config)],
        env=env,
        check=True,
        capture_output=True,
    )
    port = _port()
    proc = subprocess.Popen(
        [exe, "serve", "--port", str(port), "--no-worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    _wait(f"{base}/healthz", proc)
    return proc, base


def _bare(scratch: Path) -> tuple[subprocess.Popen[bytes], str]:
    (scratch / "bare_app.py").write_text(BARE, encoding="utf-8")
    port = _port()
    proc = subprocess.Popen(
        [
            str(ROOT / ".venv" / "bin" / "uvicorn"),
            "bare_app:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=scratch,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    _wait(f"{base}/docs", proc)
    return proc, base


def _pg_database(admin: str) -> tuple[str, str]:
    name = f"rd_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    return f"{base}/{name}", name


def _measure(label: str, start: Any, bodies: list[bytes], clients: int) -> dict[str, float]:
    proc, base = start()
    try:
        _fire(base, bodies[:50], clients)  # warm up (its own ids: not measured)
        return _fire(base, bodies[50:], clients)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    bodies = _bodies(args.requests + 50)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="webhook-bench-") as scratch_dir:
        scratch = Path(scratch_dir)
        results["bare endpoint"] = _measure("bare", lambda: _bare(scratch), bodies, args.clients)
        sqlite = f"sqlite:///{scratch / 'bench.db'}"
        results["desk, SQLite"] = _measure(
            "sqlite", lambda: _desk(sqlite, scratch), bodies, args.clients
        )
        if not args.no_postgres:
            url, name = _pg_database(args.postgres)
            try:
                results["desk, PostgreSQL"] = _measure(
                    "pg", lambda: _desk(url, scratch), bodies, args.clients
                )
            finally:
                with psycopg.connect(args.postgres, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    bare = results["bare endpoint"]["rps"]
    print(f"{args.requests} signed Shopify webhooks, {args.clients} clients, one server process")
    for label, figures in results.items():
        print(
            f"{label:18} {figures['rps']:8.0f} req/s  p50 {figures['p50_ms']:6.1f} ms  "
            f"p99 {figures['p99_ms']:7.1f} ms  ratio to bare {figures['rps'] / bare:5.2f}"
        )


if __name__ == "__main__":
    sys.exit(main())
