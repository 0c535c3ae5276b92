"""Which profile reads the given files, and the one lazy frame of rows it reads them as.

Files given together are one export: with a mapping file or ``--profile`` every file is read
with it; otherwise each file's header picks a built-in profile and all must agree. Olist is the
one multi-file export: its orders file is joined with the items and payments files given with
it; its other files (customers, reviews, products, sellers) are recognised and left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from recoverydesk.domain.errors import InvalidInput
from recoverydesk.reports.assess import profiles_builtin as builtin
from recoverydesk.reports.assess.profiles import (
    Profile,
    detect,
    load_mapping,
    require_columns,
)
from recoverydesk.reports.assess.reading import SourceFile


@dataclass
class Plan:
    profile: Profile
    frame: pl.LazyFrame
    used: list[SourceFile] = field(default_factory=list)
    ignored: list[tuple[SourceFile, str]] = field(default_factory=list)


def plan(sources: Sequence[SourceFile], *, mapping: Path | None, profile_name: str | None) -> Plan:
    if mapping is not None:
        return _with_profile(sources, load_mapping(mapping))
    if profile_name is not None:
        chosen = builtin.BUILTIN.get(profile_name)
        if chosen is None:
            known = ", ".join(sorted(builtin.BUILTIN))
            raise InvalidInput(f"unknown profile {profile_name!r}; known profiles: {known}")
        if chosen is builtin.OLIST:
            return _olist(sources, forced=True)
        return _with_profile(sources, chosen)
    if any(builtin.OLIST.signature <= set(s.columns) for s in sources):
        return _olist(sources, forced=False)
    return _detected(sources)


def _with_profile(sources: Sequence[SourceFile], profile: Profile) -> Plan:
    for source in sources:
        require_columns(profile, source.columns, source.path)
    return Plan(profile, _concat([s.scan() for s in sources]), used=list(sources))


def _concat(frames: list[pl.LazyFrame]) -> pl.LazyFrame:
    return frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")


def _detected(sources: Sequence[SourceFile]) -> Plan:
    found: dict[str, Profile] = {}
    for source in sources:
        profile = detect(source.columns, builtin.BUILTIN)
        if profile is None:
            shown = ", ".join(source.columns[:6]) + (", ..." if len(source.columns) > 6 else "")
            raise InvalidInput(
                f"{source.path}: columns ({shown}) match no known export "
                f"({', '.join(sorted(builtin.BUILTIN))}); give --mapping FILE or --profile NAME"
            )
        found[profile.name] = profile
    if len(found) > 1:
        raise InvalidInput(
            f"the files are different exports ({', '.join(sorted(found))}); assess one at a time"
        )
    return _with_profile(sources, next(iter(found.values())))


def _olist(sources: Sequence[SourceFile], *, forced: bool) -> Plan:
    roles: dict[str, list[SourceFile]] = {"orders": [], "items": [], "payments": []}
    ignored: list[tuple[SourceFile, str]] = []
    for source in sources:
        role = _olist_role(set(source.columns))
        if role in roles:
            roles[role].append(source)
        elif role == "other":
            ignored.append((source, "an Olist file the assessment does not need"))
        else:
            raise InvalidInput(f"{source.path}: not an Olist file (columns not recognised)")
    if not roles["orders"]:
        what = "--profile olist needs" if forced else "Olist items or payments need"
        raise InvalidInput(f"{what} the orders file (olist_orders_dataset.csv) as well")
    for source in roles["orders"]:
        require_columns(builtin.OLIST, source.columns, source.path)

    def joined(role: str) -> pl.LazyFrame | None:
        return _concat([s.scan() for s in roles[role]]) if roles[role] else None

    orders = _concat([s.scan() for s in roles["orders"]])
    frame = builtin.olist_frame(orders, joined("items"), joined("payments"))
    used = [s for role in roles.values() for s in role]
    return Plan(builtin.OLIST, frame, used=used, ignored=ignored)


def _olist_role(columns: set[str]) -> str | None:
    if builtin.OLIST.signature <= columns:
        return "orders"
    if columns >= builtin.OLIST_ITEMS:
        return "items"
    if columns >= builtin.OLIST_PAYMENTS:
        return "payments"
    if any(signature <= columns for signature in builtin.OLIST_OTHERS):
        return "other"
    return None
