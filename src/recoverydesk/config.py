"""Typed settings from the environment (prefix ``RECOVERYDESK_``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    # Escalation notifications: email over SMTP, chat over signed webhooks.
    smtp_host: str | None = None
    smtp_port: int = Field(25, ge=1, le=65535)
    smtp_sender: str = "recoverydesk@localhost"
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    chat_webhook_secret: str | None = None
