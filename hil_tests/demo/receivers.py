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
