"""Fixtures shared by the integration tests: a real SMTP server and a real chat receiver."""

from tests.integration.test_notify import chat_receiver, smtp_server

__all__ = ["chat_receiver", "smtp_server"]
