"""E-mail through an SMTP server (stdlib smtplib in a worker thread), with STARTTLS and login."""

from __future__ import annotations

import asyncio
import email.policy
import smtplib
import ssl
from email.message import EmailMessage

from backend.alerts.channels import DeliveryError
from backend.alerts.messages import Notice
from backend.registry import Technician

_POLICY = email.policy.default.clone(max_line_length=998)

__all__ = ["SmtpChannel"]


class SmtpChannel:
    """Sends one e-mail per notice.

    Args:
        host: SMTP server.
        port: Its port (587 for STARTTLS submission).
        sender: The From address.
        username: Login, or None to send without AUTH.
        password: Password for ``username``.
        starttls: Upgrade the connection with STARTTLS before logging in.
        timeout: Seconds per SMTP operation.
    """

    name = "email"

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        *,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        timeout: float = 10.0,
    ) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self.username = username
        self.password = password
        self.starttls = starttls
        self.timeout = timeout

    def reaches(self, technician: Technician) -> bool:
        """Technicians with an e-mail address."""
        return technician.email is not None

    async def send(self, technician: Technician, notice: Notice) -> None:
        """Send the e-mail; SMTP and socket errors become DeliveryError."""
        # A long line limit: CPython 3.11 folds a long Vietnamese subject into encoded words
        # and loses the space between them ('khuếchđại') at the default 78 columns.
        message = EmailMessage(policy=_POLICY)
        message["From"] = self.sender
        message["To"] = str(technician.email)
        message["Subject"] = notice.subject
        message.set_content(notice.text)
        try:
            await asyncio.to_thread(self._send, message)
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(f"SMTP {self.host}:{self.port}: {exc}") from exc

    def _send(self, message: EmailMessage) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self.username:
                smtp.login(self.username, self.password or "")
            smtp.send_message(message)
