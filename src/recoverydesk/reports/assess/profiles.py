"""Mapping profiles: how an export's columns and status values become the desk's order model.

A profile names, for each desk field, the column that carries it, how its status values map to
desk statuses (and, for an exception, to a case category), which date formats its columns use,
and defaults for what the export does not say (channel, fulfilment type, currency). Built-in
profiles (``profiles_builtin``) are detected by their header; any other CSV is read with a
mapping file (YAML or JSON)::

    profile: my_shop              # a name for the report (optional)
    columns:                      # desk field: the column in the CSV (only order_id and
      order_id: Order Number      #   placed_at are required)
      placed_at: Created
      status: State
      value: Total                # order or line value (see value_is_unit_price)
      currency: Currency
      channel: Source
      fulfillment_type: Fulfilled By
      shipped_at: Shipped At      # carrier hand-off time
      delivered_at: Delivered At
      promised_by: Estimated Delivery
      ship_by: Ship By
      cancel_requester: Cancelled By
      cancel_reason: Cancel Reason
      customer_id: Customer
      sku: SKU
      qty: Quantity
    statuses:                     # status value (case-insensitive) -> desk status,
      Cancelled: cancelled        #   or {status: ..., category: ...} for an exception
      Awaiting payment: {status: payment_failed, category: payment_failed}
      Shipped: shipped
    fulfillment_types: {FBA: marketplace, Merchant: in_house}
    requesters: {buyer: customer, seller: ops, system: auto}
    date_formats: ["%d/%m/%Y %H:%M", "%Y-%m-%d"]   # tried in order, per column
    defaults: {channel: web, fulfillment_type: in_house, currency: EUR}
    value_is_unit_price: false    # true: value x qty is the line value

Desk statuses: placed, pending, on_hold, payment_failed, fraud_hold, cancelled,
partially_cancelled, shipped, delivered. A line is shipped when its status is shipped or
delivered, or when it has a shipped_at time. Status values the mapping does not name count as
``placed`` and are listed in the report's data quality section.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import polars as pl
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from recoverydesk.domain.cases import Category
from recoverydesk.domain.errors import InvalidInput


class DeskStatus(StrEnum):
    PLACED = "placed"
    PENDING = "pending"
    ON_HOLD = "on_hold"
    PAYMENT_FAILED = "payment_failed"
    FRAUD_HOLD = "fraud_hold"
    CANCELLED = "cancelled"
    PARTIALLY_CANCELLED = "partially_cancelled"
    SHIPPED = "shipped"
    DELIVERED = "delivered"


SHIPPED_STATUSES = frozenset({DeskStatus.SHIPPED, DeskStatus.DELIVERED})
FIELDS = (
    "order_id",
    "placed_at",
    "status",
    "value",
    "currency",
    "channel",
    "fulfillment_type",
    "shipped_at",
    "delivered_at",
    "promised_by",
    "ship_by",
    "cancel_requester",
    "cancel_reason",
    "customer_id",
    "sku",
    "qty",
)
DATE_FIELDS = ("placed_at", "shipped_at", "delivered_at", "promised_by", "ship_by")
FULFILLMENT_TYPES = frozenset({"in_house", "3pl", "drop_ship", "marketplace"})
REQUESTERS = frozenset({"customer", "ops", "auto"})
GENERIC_DATE_FORMATS = (
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y",
    "%m-%d-%y",
    "%m/%d/%y",
    "%d-%m-%y %H:%M",
)


@dataclass(frozen=True, slots=True)
class StatusRule:
    status: DeskStatus
    category: str | None = None


Shaping = Callable[[pl.LazyFrame], pl.LazyFrame]


@dataclass(frozen=True, slots=True)
class Profile:
    """How one kind of export maps to the desk's model.

    ``columns`` maps desk fields to source columns (a shaping step may create ``__``-prefixed
    columns first: derived statuses, flags). ``signature`` is the header subset that identifies
    the export. ``not_computed`` names figures this export cannot support, with the reason."""

    name: str
    title: str
    columns: Mapping[str, str]
    signature: frozenset[str] = frozenset()
    statuses: Mapping[str, StatusRule] = field(default_factory=dict)
    fulfillment_types: Mapping[str, str] = field(default_factory=dict)
    requesters: Mapping[str, str] = field(default_factory=dict)
    date_formats: tuple[str, ...] = GENERIC_DATE_FORMATS
    defaults: Mapping[str, str] = field(default_factory=dict)
    value_is_unit_price: bool = False
    shaping: Shaping | None = None
    not_computed: Mapping[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    late_delivery_rule: str | None = None  # set when shaping gives a ``__late_delivery`` flag

    def source_columns(self) -> set[str]:
        """Columns the file itself must have (derived ``__`` columns excluded)."""
        return {c for c in self.columns.values() if not c.startswith("__")} | set(self.signature)

    def status_rule(self, value: str) -> StatusRule | None:
        return self.statuses.get(value.strip().lower())


def status_table(entries: Mapping[str, tuple[DeskStatus, str | None]]) -> dict[str, StatusRule]:
    """Status rules keyed by the lower-cased source value."""
    return {key.strip().lower(): StatusRule(*rule) for key, rule in entries.items()}


# The mapping file ---------------------------------------------------------------------------


class _StatusEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: DeskStatus
    category: Category | None = None


class MappingFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    profile: str = "mapping"
    columns: dict[str, str]
    statuses: dict[str, DeskStatus | _StatusEntry] = Field(default_factory=dict)
    fulfillment_types: dict[str, str] = Field(default_factory=dict)
    requesters: dict[str, str] = Field(default_factory=dict)
    date_formats: list[str] = Field(default_factory=list)
    defaults: dict[str, str] = Field(default_factory=dict)
    value_is_unit_price: bool = False


def load_mapping(path: Path) -> Profile:
    """A profile from a mapping file; every mistake is one line naming the file and the key."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise InvalidInput(f"{path}: cannot read the mapping ({error.strerror or error})") from None
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise InvalidInput(f"{path}: not a YAML or JSON mapping ({error})") from None
    if not isinstance(document, dict):
        raise InvalidInput(f"{path}: the mapping must be a mapping of settings")
    try:
        spec = MappingFile.model_validate(document)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise InvalidInput(f"{path}: {where}: {first['msg']}") from None
    return _profile_of(spec, path)


def _profile_of(spec: MappingFile, path: Path) -> Profile:
    _check_values(spec, path)
    statuses = {
        key.strip().lower(): StatusRule(entry)
        if isinstance(entry, DeskStatus)
        else StatusRule(entry.status, entry.category.value if entry.category else None)
        for key, entry in spec.statuses.items()
    }
    return Profile(
        name=spec.profile,
        title=f"mapping file {path.name}",
        columns=dict(spec.columns),
        statuses=statuses,
        fulfillment_types={k.strip().lower(): v for k, v in spec.fulfillment_types.items()},
        requesters={k.strip().lower(): v for k, v in spec.requesters.items()},
        date_formats=tuple(spec.date_formats) + GENERIC_DATE_FORMATS,
        defaults=dict(spec.defaults),
        value_is_unit_price=spec.value_is_unit_price,
    )


def _check_values(spec: MappingFile, path: Path) -> None:
    unknown = sorted(set(spec.columns) - set(FIELDS))
    if unknown:
        raise InvalidInput(
            f"{path}: columns.{unknown[0]}: not a desk field (use {', '.join(FIELDS)})"
        )
    for required in ("order_id", "placed_at"):
        if required not in spec.columns:
            raise InvalidInput(f"{path}: columns.{required}: required")
    checks: list[tuple[str, dict[str, str], frozenset[str]]] = [
        ("fulfillment_types", spec.fulfillment_types, FULFILLMENT_TYPES),
        ("requesters", spec.requesters, REQUESTERS),
    ]
    for part, table, allowed in checks:
        for key, value in table.items():
            if value not in allowed:
                shown = ", ".join(sorted(allowed))
                raise InvalidInput(f"{path}: {part}.{key}: {value!r} is not one of {shown}")
    bad = spec.defaults.get("fulfillment_type")
    if bad is not None and bad not in FULFILLMENT_TYPES:
        raise InvalidInput(f"{path}: defaults.fulfillment_type: {bad!r} is not a fulfilment type")


# Helpers for the built-in profiles' shaping ------------------------------------------------

NO_REQUESTER = "the export does not say who asked for a cancellation (buyer, seller or system)"
NO_SHIPMENT = "the export has no shipment facts (no ship time, no shipped status)"
NO_PROMISE = "the export has no promised delivery date"
NO_SHIP_BY = "the export has no ship-by time"


def optional_column(frame: pl.LazyFrame, name: str) -> pl.Expr:
    """A column that some versions of an export leave out (null when absent)."""
    names = frame.collect_schema().names()
    return pl.col(name) if name in names else pl.lit(None, dtype=pl.String)


def lowered(expr: pl.Expr) -> pl.Expr:
    return expr.str.strip_chars().str.to_lowercase()


# Choosing a profile -------------------------------------------------------------------------


def detect(columns: tuple[str, ...], profiles: Mapping[str, Profile]) -> Profile | None:
    """The most specific built-in profile whose signature the header has."""
    have = set(columns)
    fitting = [p for p in profiles.values() if p.signature and p.signature <= have]
    return max(fitting, key=lambda p: len(p.signature)) if fitting else None


def require_columns(profile: Profile, columns: tuple[str, ...], source: Path) -> None:
    missing = sorted(profile.source_columns() - set(columns))
    if missing:
        shown = ", ".join(repr(c) for c in missing[:5])
        raise InvalidInput(
            f"{source}: the {profile.name} profile needs column(s) {shown} "
            f"that the file does not have"
        )


def describe(profile: Profile) -> dict[str, Any]:
    return {
        "name": profile.name,
        "title": profile.title,
        "columns": dict(profile.columns),
        "defaults": dict(profile.defaults),
        "notes": list(profile.notes),
    }
