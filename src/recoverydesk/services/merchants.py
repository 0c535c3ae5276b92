"""Merchants (tenants), their validated configuration files and their API tokens."""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    SerializationInfo,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from recoverydesk.domain.errors import InvalidConfig, InvalidInput, NotFound, Unauthorized
from recoverydesk.services.calendars import DEFAULT_CALENDAR_SPEC
from recoverydesk.services.clock import Clock
from recoverydesk.services.policy import Policy
from recoverydesk.services.ports import Merchant, UnitOfWork

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class Role(StrEnum):
    AGENT = "agent"
    LEAD = "lead"
    FINANCE = "finance"
    RISK = "risk"
    ADMIN = "admin"


WEBHOOK_PROVIDERS = frozenset(
    {"shopify", "woocommerce", "stripe", "adyen", "zendesk", "aftership", "easypost", "wms"}
)
MASK = "**********"


class WebhookSource(BaseModel):
    """One provider's inbound webhooks (``POST /webhooks/{provider}/{merchant}``): its signing
    secrets, the current one first and the previous one while a rotation lasts, written in the
    file or named as environment variables (``secrets_env``). A secret is shown as a mask
    everywhere but in the stored configuration."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    secrets: tuple[SecretStr, ...] = ()
    secrets_env: tuple[Annotated[str, Field(pattern=r"^[A-Z_][A-Z0-9_]*$")], ...] = ()
    tolerance: timedelta = timedelta(minutes=5)

    @field_serializer("secrets")
    def _stored_or_masked(
        self, secrets: tuple[SecretStr, ...], info: SerializationInfo
    ) -> list[str]:
        reveal = bool((info.context or {}).get("reveal"))
        return [s.get_secret_value() if reveal else MASK for s in secrets]

    @model_validator(mode="after")
    def _some_secret(self) -> WebhookSource:
        if not self.secrets and not self.secrets_env:
            raise ValueError("give the signing secret: secrets or secrets_env")
        return self

    def secret_values(self, environ: Mapping[str, str]) -> list[str]:
        found = [s.get_secret_value() for s in self.secrets]
        return found + [environ[name] for name in self.secrets_env if environ.get(name)]


OUTBOUND_SYSTEMS = frozenset(
    {"payments", "wms", "erp", "storefront", "helpdesk", "email", "carrier"}
)


class Connection(BaseModel):
    """How the desk reaches one of the merchant's systems: the connector (``kind``), its base
    URL, and its credentials, written in the file or named as environment variables. Other
    keys are the connector's own settings (an account id, a location ...)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    kind: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
    base_url: str | None = None
    api_key: SecretStr | None = None
    api_key_env: Annotated[str, Field(pattern=r"^[A-Z_][A-Z0-9_]*$")] | None = None

    @field_serializer("api_key")
    def _stored_or_masked(self, key: SecretStr | None, info: SerializationInfo) -> str | None:
        if key is None:
            return None
        return key.get_secret_value() if (info.context or {}).get("reveal") else MASK

    def resolved(self, environ: Mapping[str, str]) -> dict[str, Any]:
        """What a connector needs, secrets included (never log it)."""
        found = self.model_dump(exclude={"api_key", "api_key_env"})
        key = self.api_key.get_secret_value() if self.api_key else None
        if key is None and self.api_key_env:
            key = environ.get(self.api_key_env)
        return {**found, "api_key": key}


class Connectors(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    webhooks: dict[str, WebhookSource] = Field(default_factory=dict)
    outbound: dict[str, Connection] = Field(default_factory=dict)
    # Systems the desk polls, by a name of the merchant's choosing (``netsuite``, ``shop``...):
    # ``kind`` picks the poller; ``every`` (ISO 8601 duration) how often, default 5 minutes.
    polling: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")], Connection] = Field(
        default_factory=dict
    )

    @field_validator("outbound")
    @classmethod
    def _known_systems(cls, value: dict[str, Connection]) -> dict[str, Connection]:
        for name in value:
            if name not in OUTBOUND_SYSTEMS:
                known = ", ".join(sorted(OUTBOUND_SYSTEMS))
                raise ValueError(f"unknown system {name!r} (use {known})")
        return value

    @field_validator("webhooks")
    @classmethod
    def _known_providers(cls, value: dict[str, WebhookSource]) -> dict[str, WebhookSource]:
        for name in value:
            if name not in WEBHOOK_PROVIDERS:
                known = ", ".join(sorted(WEBHOOK_PROVIDERS))
                raise ValueError(f"unknown webhook provider {name!r} (use {known})")
        return value


class MerchantSettings(Policy):
    """A merchant's configuration file: identity, then the triage policy (``services.policy``),
    the stop-ship settings and the connectors.

    Without a ``calendar`` section the business calendar is Monday to Friday, 09:00-17:00 in the
    merchant's ``time_zone``. Later issues add playbooks and templates.
    """

    merchant: str | None = None
    time_zone: str = "UTC"
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "USD"
    connectors: Connectors = Connectors()

    @model_validator(mode="before")
    @classmethod
    def _calendar_in_merchant_zone(cls, data: Any) -> Any:
        zone = data.get("time_zone") if isinstance(data, dict) else None
        if isinstance(data, dict) and "calendar" not in data and _is_zone(zone):
            hours = DEFAULT_CALENDAR_SPEC.hours
            return {**data, "calendar": {"time_zone": data["time_zone"], "hours": hours}}
        return data

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value


def _is_zone(name: object) -> bool:
    """A known time zone (an unknown one is reported at its own line by the field's check)."""
    if not isinstance(name, str):
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def settings_from_stored(stored: dict[str, Any] | None) -> MerchantSettings:
    """The settings of a stored configuration version (validated again: defaults may grow)."""
    return MerchantSettings.model_validate(stored or {})


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise InvalidInput(f"merchant name {name!r}: use lower-case letters, digits, '-' or '_'")
    return name


def load_settings(path: Path) -> tuple[str, MerchantSettings]:
    """Read and validate a configuration file; errors name the file, line and field."""
    try:
        content = path.read_text(encoding="utf-8")
    except OSError as error:
        raise InvalidConfig(f"{path}: cannot read ({error.strerror})") from None
    return content, parse_settings(content, str(path))


def parse_settings(content: str, source: str) -> MerchantSettings:
    try:
        document = yaml.safe_load(content) or {}
        tree = yaml.compose(content)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise InvalidConfig(f"{source}{where}: not valid YAML ({error})") from None
    if not isinstance(document, dict):
        raise InvalidConfig(f"{source}:1: the file must be a mapping of settings")
    try:
        return MerchantSettings.model_validate(document)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        loc, message = _where(first["loc"], first["msg"])
        field = ".".join(str(p) for p in loc) or "(top level)"
        line = _line_of(tree, loc)
        raise InvalidConfig(f"{source}:{line}: {field}: {message}") from None


_PATH_IN_MESSAGE = re.compile(
    r"^(?:Value error, )?([a-z_][a-z0-9_]*(?:\.[a-z0-9_]+)*): (.*)$", re.S
)


def _where(loc: tuple[int | str, ...], message: str) -> tuple[tuple[int | str, ...], str]:
    """A whole-file check names the field at the start of its message: use it as the place."""
    found = _PATH_IN_MESSAGE.match(message)
    if found is None:
        return loc, message.removeprefix("Value error, ")
    parts = tuple(int(p) if p.isdigit() else p for p in found.group(1).split("."))
    return (*loc, *parts), found.group(2)


def _line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int:
    """The line of the YAML node at ``loc`` (or of its nearest existing parent)."""
    line = node.start_mark.line + 1 if node is not None else 1
    for part in loc:
        child = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == part:
                    child = key if value is None else value
                    line = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            child = _item(node, part)
            if child is not None:
                line = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return line


def _item(node: yaml.SequenceNode, part: int | str) -> yaml.Node | None:
    """A list item by index, or the mapping item whose ``name`` is ``part`` (queues, members)."""
    if isinstance(part, int):
        return node.value[part] if part < len(node.value) else None
    for item in node.value:
        if isinstance(item, yaml.MappingNode) and any(
            key.value == "name" and getattr(value, "value", None) == part
            for key, value in item.value
        ):
            return item
    return None


def add_merchant(
    uow: UnitOfWork, *, clock: Clock, name: str, config: Path | None = None
) -> Merchant:
    check_name(name)
    loaded = load_settings(config) if config else None
    time_zone = loaded[1].time_zone if loaded else "UTC"
    merchant = uow.merchants.add(name, time_zone=time_zone, now=clock.now())
    if loaded:
        _store_settings(uow, merchant, loaded, str(config), clock)
    return merchant


def apply_settings(uow: UnitOfWork, *, clock: Clock, name: str, config: Path) -> int:
    merchant = require_merchant(uow, name)
    return _store_settings(uow, merchant, load_settings(config), str(config), clock)


def _store_settings(
    uow: UnitOfWork,
    merchant: Merchant,
    loaded: tuple[str, MerchantSettings],
    source: str,
    clock: Clock,
) -> int:
    content, settings = loaded
    if settings.merchant is not None and settings.merchant != merchant.name:
        raise InvalidConfig(
            f"{source}: the file is for merchant {settings.merchant!r}, not {merchant.name!r}"
        )
    return uow.merchants.apply_config(
        merchant,
        source=source,
        content=content,
        settings=settings.model_dump(mode="json", by_alias=True, context={"reveal": True}),
        time_zone=settings.time_zone,
        now=clock.now(),
    )


def require_merchant(uow: UnitOfWork, name: str) -> Merchant:
    merchant = uow.merchants.by_name(name)
    if merchant is None:
        raise NotFound(
            f"no merchant named {name!r} (create it with 'recoverydesk merchant add')",
            code="merchant_not_found",
        )
    return merchant


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(uow: UnitOfWork, *, clock: Clock, merchant_name: str, role: str) -> str:
    """A new API token for one merchant; only its hash is stored."""
    try:
        role = Role(role).value
    except ValueError:
        roles = ", ".join(r.value for r in Role)
        raise InvalidInput(f"unknown role {role!r}; use one of: {roles}") from None
    merchant = require_merchant(uow, merchant_name)
    token = f"rd_{secrets.token_urlsafe(32)}"
    uow.merchants.add_token(
        merchant.id, role=role, token_hash=hash_token(token), prefix=token[:10], now=clock.now()
    )
    return token


def authenticate(uow: UnitOfWork, token: str) -> tuple[Merchant, Role]:
    if not token.startswith("rd_") or len(token) > 200:
        raise Unauthorized("invalid API token")
    found = uow.merchants.token_owner(hash_token(token))
    if found is None:
        raise Unauthorized("invalid API token")
    return found[0], Role(found[1])


def connectors_of(uow: UnitOfWork, merchant: Merchant) -> Connectors:
    """The merchant's connector settings at its current configuration version (parsed once
    per stored version, as triage's policy is)."""
    from recoverydesk.services.triage import triage_for

    policy = triage_for(uow, merchant).policy
    return policy.connectors if isinstance(policy, MerchantSettings) else Connectors()
