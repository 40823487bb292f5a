"""Telegram-Bot-API-style HTTP: ``POST {base_url}/bot{token}/sendMessage``.

The base URL is configurable so a self-hosted Bot API server or a compatible gateway works.
"""

from __future__ import annotations

import httpx

from backend.alerts.channels import DeliveryError
from backend.alerts.messages import Notice
from backend.registry import Technician

__all__ = ["TelegramChannel", "chat_text"]

_REPLY_HINT = {
    "vi": "Trả lời tin này (ví dụ: OK) để nhận xử lý; sẽ không nhắc lại.",
    "en": "Reply to this message (e.g. OK) to take it; reminders then stop.",
}


def chat_text(notice: Notice) -> str:
    """The chat message: the short form, the device link, and how to acknowledge by reply."""
    lines = [notice.short or notice.text]
    if notice.link:
        lines.append(notice.link)
    if notice.event != "recovery" and notice.alert_id:
        lines.append(_REPLY_HINT.get(notice.language, _REPLY_HINT["vi"]))
    return "\n".join(lines)


class TelegramChannel:
    """Sends the notice's short form, link and reply hint to the technician's chat.

    Args:
        token: The bot token.
        base_url: API base, ``https://api.telegram.org`` by default.
        timeout: Seconds per request.
    """

    name = "telegram"

    def __init__(
        self, token: str, *, base_url: str = "https://api.telegram.org", timeout: float = 10.0
    ) -> None:
        self._url = f"{base_url.rstrip('/')}/bot{token}/sendMessage"
        self._base = base_url
        self._http = httpx.AsyncClient(timeout=timeout)

    def reaches(self, technician: Technician) -> bool:
        """Technicians with a chat id."""
        return technician.telegram_chat_id is not None

    async def send(self, technician: Technician, notice: Notice) -> None:
        """Call sendMessage; the answer must be HTTP 2xx with ``"ok": true``."""
        body = {"chat_id": technician.telegram_chat_id, "text": chat_text(notice)}
        try:
            response = await self._http.post(self._url, json=body)
            ok = response.is_success and response.json().get("ok") is True
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            # The URL holds the token: name only the base.
            raise DeliveryError(f"telegram at {self._base}: {type(exc).__name__}") from exc
        if not ok:
            raise DeliveryError(
                f"telegram at {self._base} answered HTTP {response.status_code}: {response.text[:200]}"
            )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()
