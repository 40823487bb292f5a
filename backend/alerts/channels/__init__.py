"""Delivery channels: e-mail (SMTP), a generic JSON webhook and a Telegram-Bot-API-style HTTP call."""

from __future__ import annotations

from typing import Protocol

from backend.alerts.messages import Notice
from backend.registry import Technician

__all__ = ["Channel", "DeliveryError"]


class DeliveryError(Exception):
    """A notice could not be delivered (the message says why); the dispatcher may retry."""


class Channel(Protocol):
    """Sends a notice to one technician over one medium."""

    name: str

    def reaches(self, technician: Technician) -> bool:
        """Whether the technician has an address on this channel."""
        ...

    async def send(self, technician: Technician, notice: Notice) -> None:
        """Deliver, or raise DeliveryError."""
        ...
