"""Typed settings from the environment (prefix ``RECOVERYDESK_``)."""

from __future__ import annotations

import secrets
from typing import Literal

from pydantic import Field, PrivateAttr, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from recoverydesk.domain.errors import DeskError


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RECOVERYDESK_", extra="ignore")

    database_url: str = "sqlite:///recoverydesk.db"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "console"] = "json"
    worker_lease_seconds: float = Field(60.0, gt=0)
    worker_poll_seconds: float = Field(1.0, gt=0)
    worker_batch: int = Field(20, ge=1, le=1000)
    max_body_bytes: int = Field(5 * 1024 * 1024, ge=1024)
    max_events_per_request: int = Field(1000, ge=1)
    # The web desk's export upload (``POST /desk/assess``) checks this limit itself.
    max_upload_bytes: int = Field(200 * 1024 * 1024, ge=1024)
    # Escalation notifications: email over SMTP, chat over signed webhooks.
    smtp_host: str | None = None
    smtp_port: int = Field(25, ge=1, le=65535)
    smtp_sender: str = "recoverydesk@localhost"
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    chat_webhook_secret: str | None = None
    # Customer decision pages (``GET/POST /decide/{token}``): the secret that signs their links
    # (``RECOVERYDESK_DECISION_SECRET``, required on PostgreSQL: every process must sign and
    # read links alike, and links must outlive a restart) and the desk's public address the
    # links start with (``RECOVERYDESK_PUBLIC_URL``; default: the address the API was called at).
    decision_secret: SecretStr | None = Field(None, min_length=16)
    public_url: str | None = Field(None, pattern=r"^https?://\S+$")
    _made_decision_secret: str = PrivateAttr(default_factory=lambda: secrets.token_urlsafe(32))

    def decision_signing_secret(self) -> str:
        """The configured secret; on SQLite (the demo, tests: one process) without one, a
        random secret made for this process, so its links stop working when it restarts."""
        if self.decision_secret is not None:
            return self.decision_secret.get_secret_value()
        if self.database_url.startswith("postgresql"):
            raise DeskError(
                "set RECOVERYDESK_DECISION_SECRET (a long random string, the same for every "
                "process of the desk) to send decision links",
                code="decision_secret_missing",
            )
        return self._made_decision_secret
