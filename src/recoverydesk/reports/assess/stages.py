"""Progress through the assessment's stages: a spinner on stderr when it is a terminal, nothing
when output is piped (scripts and tests see only the result line)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console


@contextmanager
def assess_progress() -> Iterator[Callable[[str], None]]:
    """Yields ``step(label)``, which shows the stage the job is in."""
    if not sys.stderr.isatty():
        yield lambda _label: None
        return
    console = Console(stderr=True)
    with console.status("assessing") as status:
        yield lambda label: status.update(f"assess: {label}")
