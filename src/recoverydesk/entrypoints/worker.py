"""The job worker: a loop that claims due jobs; in its own process or as a thread of ``serve``."""

from __future__ import annotations

import signal
import threading
from types import FrameType

import structlog

from recoverydesk.bootstrap import Desk
from recoverydesk.services.polling import PollScheduler

log = structlog.get_logger("recoverydesk.worker")


def run_worker(
    desk: Desk, *, stop: threading.Event, name: str | None = None, once: bool = False
) -> int:
    """Run due jobs until ``stop`` is set (or one pass with ``once``); returns jobs run."""
    runner = desk.job_runner(name)
    log.info("worker started", worker=runner.worker)
    total = 0
    polls = PollScheduler(desk.uow, desk.clock)  # every configured poll has its next job
    while not stop.is_set():
        polls.tick()
        stats = runner.run_due(limit=desk.settings.worker_batch)
        ran = stats.done + stats.failed + stats.lost
        total += ran
        if once:
            break
        if ran == 0:
            stop.wait(desk.settings.worker_poll_seconds)
    log.info("worker stopped", worker=runner.worker, jobs=total)
    return total


def stop_on_signals(stop: threading.Event) -> None:
    def _handle(signum: int, _frame: FrameType | None) -> None:
        log.info("worker stopping", signal=signum)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _handle)


class WorkerThread:
    """The in-process worker of ``serve``."""

    def __init__(self, desk: Desk) -> None:
        self._desk, self._stop = desk, threading.Event()
        self._thread = threading.Thread(target=self._loop, name="recoverydesk-worker", daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                run_worker(self._desk, stop=self._stop)
            except Exception as error:
                log.error("worker pass failed", error=repr(error))
                self._stop.wait(self._desk.settings.worker_poll_seconds)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
