"""SMS through an HTTP brandname-SMS gateway, to the phone numbers in the registry.

Vietnamese SMS providers (eSMS, SpeedSMS, VNPT/Viettel brandname resellers) share one
shape: an HTTPS POST of JSON or a form with the phone number, the text, the brandname and
the account's keys, answered by a JSON object whose result code says whether it was taken
(eSMS: ``"CodeResult": "100"``; SpeedSMS: ``"status": "success"``). Every part of that is a
setting: the URL, the body format, the field names, the fixed fields (keys, brandname, SMS
type), HTTP basic or bearer authentication, and the field and value that mean success.

The text sent is the notice's short form (two UCS-2 SMS at most, see ``alerts/short.py``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from backend.alerts.channels import DeliveryError
from backend.alerts.messages import Notice
from backend.alerts.short import unaccented
from backend.registry import Technician

__all__ = ["SmsChannel", "SmsGateway", "phone_number"]

_SEPARATORS = re.compile(r"[\s.\-()]")


def phone_number(raw: str, style: str = "84") -> str:
    """A registry phone number in the gateway's style.

    Args:
        raw: As written in the registry: ``0912 345 678``, ``+84 912.345.678``...
        style: ``84`` (``84912345678``), ``+84`` or ``0`` (``0912345678``).

    Raises:
        ValueError: the number is not a Vietnamese number made of digits.
    """
    digits = _SEPARATORS.sub("", raw)
    if digits.startswith("+84"):
        national = digits[3:]
    elif digits.startswith("84") and len(digits) >= 11:
        national = digits[2:]
    elif digits.startswith("0"):
        national = digits[1:]
    else:
        raise ValueError(f"phone {raw!r} must start with 0, 84 or +84")
    if not national.isdigit() or not 8 <= len(national) <= 10:
        raise ValueError(f"phone {raw!r} is not a Vietnamese number (8-10 digits after the prefix)")
    prefix = {"84": "84", "+84": "+84", "0": "0"}.get(style)
    if prefix is None:
        raise ValueError(f"phone style must be 84, +84 or 0, got {style!r}")
    return prefix + national


@dataclass(frozen=True)
class SmsGateway:
    """How to talk to the gateway (the ``[alerts] sms_*`` settings).

    Attributes:
        url: The send endpoint.
        body: ``json`` or ``form``.
        phone_field: Field holding the number (eSMS ``Phone``, SpeedSMS ``to``).
        text_field: Field holding the text (eSMS ``Content``, SpeedSMS ``content``).
        phone_style: ``84``, ``+84`` or ``0``.
        phone_as_list: Send the number inside a list (SpeedSMS).
        params: Fixed fields: keys, brandname, SMS type.
        username: HTTP basic user (SpeedSMS: the token), or None.
        password: HTTP basic password.
        token: Bearer token, or None.
        ok_field: Answer field that says whether the SMS was taken ("" = any 2xx answer).
        ok_value: Its value on success (compared as text).
        unaccented: Send the text without diacritics (routes without Unicode SMS).
    """

    url: str
    body: str = "json"
    phone_field: str = "Phone"
    text_field: str = "Content"
    phone_style: str = "84"
    phone_as_list: bool = False
    params: Mapping[str, Any] = field(default_factory=dict)
    username: str | None = None
    password: str | None = None
    token: str | None = None
    ok_field: str = ""
    ok_value: str = ""
    unaccented: bool = False

    def __post_init__(self) -> None:
        if self.body not in ("json", "form"):
            raise ValueError(f"alerts.sms_body must be json or form, got {self.body!r}")
        if self.phone_style not in ("84", "+84", "0"):
            raise ValueError(f"alerts.sms_phone_style must be 84, +84 or 0, got {self.phone_style!r}")
        if self.body == "form" and self.phone_as_list:
            raise ValueError("alerts.sms_phone_as_list needs sms_body = json")


class SmsChannel:
    """Sends the short form of each notice to the technician's phone.

    Args:
        gateway: The gateway's shape and account.
        timeout: Seconds per request.
    """

    name = "sms"

    def __init__(self, gateway: SmsGateway, *, timeout: float = 10.0) -> None:
        self.gateway = gateway
        auth = (gateway.username, gateway.password or "") if gateway.username else None
        headers = {"Authorization": f"Bearer {gateway.token}"} if gateway.token else None
        self._http = httpx.AsyncClient(timeout=timeout, auth=auth, headers=headers)

    def reaches(self, technician: Technician) -> bool:
        """Technicians with a phone number."""
        return technician.phone is not None

    def payload(self, phone: str, text: str) -> dict[str, Any]:
        """The request body for one SMS."""
        number: Any = [phone] if self.gateway.phone_as_list else phone
        return {**self.gateway.params, self.gateway.phone_field: number, self.gateway.text_field: text}

    async def send(self, technician: Technician, notice: Notice) -> None:
        """POST one SMS; a refused number, network error, non-2xx or non-success answer fails."""
        try:
            phone = phone_number(str(technician.phone), self.gateway.phone_style)
        except ValueError as exc:
            raise DeliveryError(f"sms to {technician.name}: {exc}") from None
        text = notice.short or notice.subject
        body = self.payload(phone, unaccented(text) if self.gateway.unaccented else text)
        try:
            if self.gateway.body == "json":
                response = await self._http.post(self.gateway.url, json=body)
            else:
                response = await self._http.post(self.gateway.url, data=body)
        except httpx.HTTPError as exc:
            # Keys may sit in the body or the URL's query: name only the host.
            raise DeliveryError(f"sms gateway {_host(self.gateway.url)}: {type(exc).__name__}") from exc
        if not response.is_success:
            raise DeliveryError(f"sms gateway {_host(self.gateway.url)} answered HTTP {response.status_code}")
        if self.gateway.ok_field:
            try:
                answer = response.json()
                value = answer.get(self.gateway.ok_field) if isinstance(answer, dict) else None
            except ValueError:
                value = None
            if str(value) != self.gateway.ok_value:
                raise DeliveryError(
                    f"sms gateway {_host(self.gateway.url)} refused: {self.gateway.ok_field}={value!r}"
                )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()


def _host(url: str) -> str:
    return httpx.URL(url).host or url
