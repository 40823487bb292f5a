"""A generic JSON webhook: POST the notice as a JSON object to the technician's URL."""

from __future__ import annotations

from typing import Any

import httpx

from backend.alerts.channels import DeliveryError
from backend.alerts.messages import Notice
from backend.registry import Technician

__all__ = ["WebhookChannel", "notice_json"]


def notice_json(notice: Notice) -> dict[str, Any]:
    """The JSON body a webhook receives."""
    return {
        "event": notice.event,
        "device": notice.device,
        "fault": notice.fault,
        "commune": notice.commune,
        "commune_name": notice.commune_name,
        "hamlet": notice.hamlet,
        "kind": notice.kind,
        "since_ms": int(notice.since * 1000),
        "at_ms": int(notice.at * 1000),
        "language": notice.language,
        "subject": notice.subject,
        "text": notice.text,
        "alert_id": notice.alert_id,
        "link": notice.link,
        "short": notice.short,
    }


class WebhookChannel:
    """POSTs JSON; any 2xx answer is a delivery.

    Args:
        timeout: Seconds per request.
    """

    name = "webhook"

    def __init__(self, *, timeout: float = 10.0) -> None:
        self._http = httpx.AsyncClient(timeout=timeout)

    def reaches(self, technician: Technician) -> bool:
        """Technicians with a webhook URL."""
        return technician.webhook is not None

    async def send(self, technician: Technician, notice: Notice) -> None:
        """POST the notice; a network error or non-2xx answer is a DeliveryError."""
        url = str(technician.webhook)
        try:
            response = await self._http.post(url, json=notice_json(notice))
        except httpx.HTTPError as exc:
            raise DeliveryError(f"webhook {url}: {exc!r}") from exc
        if not response.is_success:
            raise DeliveryError(f"webhook {url} answered HTTP {response.status_code}")

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()
