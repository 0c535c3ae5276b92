"""Merchants (tenants), their configuration versions and their API tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, func, insert, select, update

from recoverydesk.domain.errors import Conflict
from recoverydesk.persistence.tables import api_tokens, merchant_configs, merchants
from recoverydesk.services.ports import Merchant


def _merchant(row: Row[Any]) -> Merchant:
    return Merchant(
        id=row.id, name=row.name, time_zone=row.time_zone, config_version=row.config_version
    )


# A stored configuration version never changes, so a process keeps what it read, per database.
# Adding a merchant forgets that database's entries (a database made again under the same URL).
_CONFIGS: dict[tuple[str, int, int], dict[str, Any]] = {}


class SqlMerchantStore:
    def __init__(self, connection: Connection) -> None:
        self._db = connection
        self._where = connection.engine.url.render_as_string(hide_password=True)

    def by_name(self, name: str) -> Merchant | None:
        row = self._db.execute(select(merchants).where(merchants.c.name == name)).first()
        return _merchant(row) if row else None

    def by_id(self, merchant_id: int) -> Merchant | None:
        row = self._db.execute(select(merchants).where(merchants.c.id == merchant_id)).first()
        return _merchant(row) if row else None

    def add(self, name: str, *, time_zone: str, now: datetime) -> Merchant:
        for key in [key for key in _CONFIGS if key[0] == self._where]:
            del _CONFIGS[key]
        if self.by_name(name) is not None:
            raise Conflict(f"merchant {name!r} exists already", code="merchant_exists")
        new_id = self._db.execute(
            insert(merchants)
            .values(name=name, time_zone=time_zone, config_version=0, created_at=now)
            .returning(merchants.c.id)
        ).scalar_one()
        return Merchant(id=new_id, name=name, time_zone=time_zone, config_version=0)

    def ensure(self, name: str, *, time_zone: str, now: datetime) -> Merchant:
        return self.by_name(name) or self.add(name, time_zone=time_zone, now=now)

    def apply_config(
        self,
        merchant: Merchant,
        *,
        source: str,
        content: str,
        settings: dict[str, Any],
        time_zone: str,
        now: datetime,
    ) -> int:
        current = self._db.execute(
            select(func.coalesce(func.max(merchant_configs.c.version), 0)).where(
                merchant_configs.c.merchant_id == merchant.id
            )
        ).scalar_one()
        version = int(current) + 1
        self._db.execute(
            insert(merchant_configs).values(
                merchant_id=merchant.id,
                version=version,
                source=source,
                content=content,
                settings=settings,
                applied_at=now,
            )
        )
        self._db.execute(
            update(merchants)
            .where(merchants.c.id == merchant.id)
            .values(config_version=version, time_zone=time_zone)
        )
        return version

    def config(self, merchant_id: int, version: int | None = None) -> dict[str, Any] | None:
        """The settings of one version (the latest when None); the same object on every read
        of a version in this process."""
        if version is not None and (self._where, merchant_id, version) in _CONFIGS:
            return _CONFIGS[(self._where, merchant_id, version)]
        found = self._read_config(merchant_id, version)
        if version is not None and found is not None:
            _CONFIGS[(self._where, merchant_id, version)] = found
        return found

    def _read_config(self, merchant_id: int, version: int | None) -> dict[str, Any] | None:
        query = select(merchant_configs.c.settings).where(
            merchant_configs.c.merchant_id == merchant_id
        )
        if version is None:
            query = query.order_by(merchant_configs.c.version.desc()).limit(1)
        else:
            query = query.where(merchant_configs.c.version == version)
        found = self._db.execute(query).scalar()
        return dict(found) if found is not None else None

    def add_token(
        self, merchant_id: int, *, role: str, token_hash: str, prefix: str, now: datetime
    ) -> None:
        self._db.execute(
            insert(api_tokens).values(
                merchant_id=merchant_id,
                role=role,
                token_hash=token_hash,
                prefix=prefix,
                created_at=now,
            )
        )

    def token_owner(self, token_hash: str) -> tuple[Merchant, str] | None:
        query = (
            select(merchants, api_tokens.c.role)
            .join(api_tokens, api_tokens.c.merchant_id == merchants.c.id)
            .where(api_tokens.c.token_hash == token_hash, api_tokens.c.revoked_at.is_(None))
        )
        row = self._db.execute(query).first()
        return (_merchant(row), str(row.role)) if row else None
