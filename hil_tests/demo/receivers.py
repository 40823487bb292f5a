"""The technicians' end of the demo: a real SMTP server and a real HTTP receiver on 127.0.0.1.

The backend's alert channels deliver to them exactly as to a district's mail server and a
chat bridge, so an alert shown as *sent* was accepted over SMTP or answered ``200`` over
HTTP. The HTTP receiver also serves the commune websites that the monitor checks
(indicator 1.3), so nothing leaves the machine.
"""

from __future__ import annotations

import email
import email.policy
import json
import threading
import time
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple

from backend.localservices import free_port


class Notice(NamedTuple):
    """One webhook call as the receiver got it."""

    received_at: float
    path: str
    body: dict[str, Any]


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.original_content or b"", policy=email.policy.default)
        with self.lock:
            if isinstance(message, EmailMessage):
                self.messages.append(message)
        return "250 Message accepted for delivery"


class SmtpServer:
    """aiosmtpd on a free port of 127.0.0.1 that keeps every message it accepts."""

    def __init__(self) -> None:
        try:
            from aiosmtpd.controller import Controller
        except ImportError as exc:  # a dev extra; `make demo` installs it
            raise RuntimeError(
                "the demo's SMTP server needs aiosmtpd: pip install -e '.[dev]' (make demo does)"
            ) from exc
        self._inbox = _Inbox()
        self.port = free_port()
        self._controller = Controller(self._inbox, hostname="127.0.0.1", port=self.port)

    @property
    def messages(self) -> list[EmailMessage]:
        """Every accepted e-mail, oldest first."""
        with self._inbox.lock:
            return list(self._inbox.messages)

    def start(self) -> None:
        """Serve in aiosmtpd's own thread."""
        self._controller.start()

    def stop(self) -> None:
        """Stop serving (safe to call twice)."""
        if getattr(self._controller, "_thread", None) is not None:
            self._controller.stop()


class HttpReceiver:
    """JSON webhooks on ``POST /hook/<commune>``; commune websites on ``GET /web/<commune>``."""

    def __init__(self) -> None:
        self.notices: list[Notice] = []
        self.website_checks = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    self._answer(400, b'{"ok": false, "error": "not JSON"}', "application/json")
                    return
                with receiver.lock:
                    receiver.notices.append(Notice(time.time(), self.path, body))
                self._answer(200, b'{"ok": true}', "application/json")

            def do_GET(self) -> None:
                with receiver.lock:
                    receiver.website_checks += 1
                page = "<html><body>Trang thông tin điện tử (demo)</body></html>".encode()
                self._answer(200, page, "text/html; charset=utf-8")

            def _answer(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="demo-http", daemon=True)

    def received(self) -> list[Notice]:
        """Every webhook call so far, oldest first."""
        with self.lock:
            return list(self.notices)

    def start(self) -> None:
        """Serve in a daemon thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()


class _JsonServer:
    """A threaded HTTP server on 127.0.0.1 whose subclasses answer POSTs by path."""

    def __init__(self, name: str) -> None:
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                status, answer = server.answer(self.path, self.headers.get("Content-Type") or "", raw, self)
                body = json.dumps(answer, ensure_ascii=False).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # a long poll the client gave up on (shutdown)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name=name, daemon=True)

    def answer(
        self, path: str, content_type: str, raw: bytes, request: BaseHTTPRequestHandler
    ) -> tuple[int, Any]:
        raise NotImplementedError

    def start(self) -> None:
        """Serve in a daemon thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()


class SmsGatewayReceiver(_JsonServer):
    """A brandname-SMS gateway: ``POST /sms`` (JSON or form), answered the eSMS way.

    Success is ``{"CodeResult": "100", "SMSID": ...}``; ``refuse = n`` makes the next n
    requests answer ``{"CodeResult": "99"}`` (HTTP 200, as the real gateways do).
    """

    def __init__(self) -> None:
        super().__init__("demo-sms")
        self.messages: list[dict[str, Any]] = []
        self.auth: list[str | None] = []
        self.refuse = 0

    def answer(
        self, path: str, content_type: str, raw: bytes, request: BaseHTTPRequestHandler
    ) -> tuple[int, Any]:
        from urllib.parse import parse_qsl

        if content_type.startswith("application/json"):
            body = json.loads(raw or b"{}")
        else:
            body = dict(parse_qsl(raw.decode()))
        with self.lock:
            if self.refuse > 0:
                self.refuse -= 1
                return 200, {"CodeResult": "99", "ErrorMessage": "Phone not valid"}
            self.messages.append(body)
            self.auth.append(request.headers.get("Authorization"))
            return 200, {"CodeResult": "100", "SMSID": f"sms-{len(self.messages)}"}

    def received(self) -> list[dict[str, Any]]:
        """Every accepted SMS request body, oldest first."""
        with self.lock:
            return list(self.messages)


class TelegramBotApi(_JsonServer):
    """The Bot API's ``sendMessage`` and ``getUpdates``, for one bot token.

    Sent messages get ids and are kept; `reply` queues an update as if a technician replied
    to one of them in the app, which the next ``getUpdates`` returns (from its ``offset``).
    """

    def __init__(self, token: str) -> None:
        super().__init__("demo-telegram")
        self.token = token
        self.sent: list[dict[str, Any]] = []
        self.updates: list[dict[str, Any]] = []
        self.polls = 0
        self._ready = threading.Condition(self.lock)

    def answer(
        self, path: str, content_type: str, raw: bytes, request: BaseHTTPRequestHandler
    ) -> tuple[int, Any]:
        body = json.loads(raw or b"{}")
        if path == f"/bot{self.token}/sendMessage":
            with self.lock:
                message = {
                    "message_id": 1000 + len(self.sent),
                    "chat": {"id": int(body["chat_id"]), "type": "private"},
                    "date": int(time.time()),
                    "text": body["text"],
                }
                self.sent.append({**body, "message_id": message["message_id"]})
            return 200, {"ok": True, "result": message}
        if path == f"/bot{self.token}/getUpdates":
            offset = int(body.get("offset") or 0)
            wait_s = min(float(body.get("timeout") or 0), 1.0)
            with self._ready:
                self.polls += 1
                self._ready.wait_for(lambda: any(u["update_id"] >= offset for u in self.updates), wait_s)
                result = [u for u in self.updates if u["update_id"] >= offset]
            return 200, {"ok": True, "result": result}
        return 404, {"ok": False, "error_code": 404, "description": "Not Found"}

    def reply(self, chat_id: int, text: str, to: dict[str, Any] | None = None) -> None:
        """Queue a technician's message (a reply to the sent message ``to``, if given)."""
        with self._ready:
            message: dict[str, Any] = {
                "message_id": 5000 + len(self.updates),
                "from": {"id": chat_id, "is_bot": False, "first_name": "KTV"},
                "chat": {"id": chat_id, "type": "private"},
                "date": int(time.time()),
                "text": text,
            }
            if to is not None:
                message["reply_to_message"] = {
                    "message_id": to["message_id"],
                    "chat": {"id": chat_id, "type": "private"},
                    "text": to["text"],
                }
            self.updates.append({"update_id": 700 + len(self.updates), "message": message})
            self._ready.notify_all()

    def messages_to(self, chat_id: str | int) -> list[dict[str, Any]]:
        """Messages the bot sent to one chat, oldest first."""
        with self.lock:
            return [m for m in self.sent if str(m["chat_id"]) == str(chat_id)]
