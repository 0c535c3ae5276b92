"""Use cases: handlers, unit of work and ports."""
