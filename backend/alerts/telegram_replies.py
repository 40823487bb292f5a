"""Acknowledging an alert by replying to its Telegram message.

The monitor long-polls the Bot API's ``getUpdates`` (``POST {base}/bot{token}/getUpdates``
with ``offset`` and ``timeout``). A message counts as an acknowledgement when it replies to
an alert message (whose text carries ``#K7Q2M``), or says ``OK K7Q2M`` (also ``ack``,
``nhận``, ``xác nhận``). Only a chat registered for a technician of the alert's commune may
acknowledge it; the bot answers in the chat either way, so the technician knows.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import httpx

from backend.alerts.manager import AlertManager
from backend.registry import Registry, Technician

__all__ = ["TelegramReplies", "alert_id_of"]

log = logging.getLogger(__name__)

_TAGGED = re.compile(r"#([A-HJ-NP-Z2-9]{5})\b")
_SAID = re.compile(r"^\s*(?:OK|ACK|XN|NHẬN|XÁC NHẬN|ĐÃ NHẬN)\W+#?([A-HJ-NP-Z2-9]{5})\b")

_ANSWERS = {
    "vi": {
        "acked": "Đã ghi nhận: {name} nhận xử lý cảnh báo #{id}. Sẽ không nhắc lại.",
        "already": "Cảnh báo #{id} đã được {name} nhận xử lý trước đó.",
        "unknown": "Không có cảnh báo đang mở nào mã #{id} (có thể đã khắc phục).",
        "refused": "Tài khoản chat này không phải kỹ thuật viên phụ trách thiết bị của cảnh báo #{id}.",
    },
    "en": {
        "acked": "Noted: {name} takes alert #{id}. No more reminders.",
        "already": "Alert #{id} was already taken by {name}.",
        "unknown": "No open alert #{id} (it may have cleared).",
        "refused": "This chat is not a technician in charge of the device of alert #{id}.",
    },
}


def alert_id_of(message: dict[str, Any]) -> str | None:
    """The alert id a Telegram message acknowledges, or None.

    Args:
        message: A Bot API ``Message`` object.
    """
    text = str(message.get("text") or "").upper()
    said = _SAID.match(text)
    if said:
        return said.group(1)
    replied = message.get("reply_to_message")
    if isinstance(replied, dict):
        tagged = _TAGGED.search(str(replied.get("text") or "").upper())
        if tagged:
            return tagged.group(1)
    return None


class TelegramReplies:
    """Reads replies from the bot's updates and acknowledges the alerts they name.

    Args:
        token: The bot token.
        manager: The alert manager (acknowledges and knows the open alerts).
        registry: Who may acknowledge what.
        base_url: API base (a local server in tests).
        poll_s: The long-poll ``timeout`` given to ``getUpdates``.
    """

    def __init__(
        self,
        token: str,
        manager: AlertManager,
        registry: Registry,
        *,
        base_url: str = "https://api.telegram.org",
        poll_s: float = 25.0,
    ) -> None:
        self._api = f"{base_url.rstrip('/')}/bot{token}"
        self._base = base_url
        self.manager = manager
        self.registry = registry
        self.poll_s = poll_s
        self.offset: int | None = None
        self.handled = 0
        self._http = httpx.AsyncClient(timeout=poll_s + 10)

    async def run(self) -> None:
        """Poll until cancelled; a failing API is retried with backoff."""
        delay = 1.0
        try:
            while True:
                try:
                    await self.poll_once()
                    delay = 1.0
                except (httpx.HTTPError, ValueError) as exc:
                    log.warning("telegram getUpdates at %s: %s; retrying in %.0f s", self._base, exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 60.0)
        finally:
            await self._http.aclose()

    async def poll_once(self) -> int:
        """One ``getUpdates`` call; returns how many updates it brought."""
        body: dict[str, Any] = {"timeout": int(self.poll_s), "allowed_updates": ["message"]}
        if self.offset is not None:
            body["offset"] = self.offset
        response = await self._http.post(f"{self._api}/getUpdates", json=body)
        answer = response.json()
        if not response.is_success or not isinstance(answer, dict) or answer.get("ok") is not True:
            raise ValueError(f"answered HTTP {response.status_code}")
        updates = answer.get("result") or []
        for update in updates:
            self.offset = max(self.offset or 0, int(update.get("update_id", 0)) + 1)
            message = update.get("message")
            if isinstance(message, dict):
                await self._take(message)
        return len(updates)

    async def _take(self, message: dict[str, Any]) -> None:
        alert_id = alert_id_of(message)
        if alert_id is None:
            return
        chat = message.get("chat") or {}
        chat_id = str(chat.get("id", ""))
        alert = self.manager.store.by_id(alert_id)
        technician = self._technician(chat_id, alert.device) if alert is not None else None
        language = technician.language if technician else "vi"
        if alert is None:
            answer = "unknown"
        elif technician is None:
            answer = "refused"
            log.warning("telegram chat %s tried to acknowledge %s: not its technician", chat_id, alert_id)
        elif alert.acked:
            answer = "already"
        else:
            self.manager.acknowledge(alert_id, technician.name, "telegram")
            self.handled += 1
            answer = "acked"
        name = alert.acked_by if alert is not None and alert.acked_by else ""
        text = _ANSWERS.get(language, _ANSWERS["vi"])[answer].format(id=alert_id, name=name)
        reply = {"chat_id": chat.get("id"), "text": text, "reply_to_message_id": message.get("message_id")}
        try:
            await self._http.post(f"{self._api}/sendMessage", json=reply)
        except httpx.HTTPError as exc:
            log.warning("telegram answer to chat %s failed: %s", chat_id, type(exc).__name__)

    def _technician(self, chat_id: str, device: str) -> Technician | None:
        return next(
            (t for t in self.registry.technicians_for(device) if t.telegram_chat_id == chat_id),
            None,
        )
