"""recoverydesk: the Order Recovery Desk."""

__version__ = "0.1.0"
