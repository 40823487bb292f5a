"""Real receivers for alert integration tests: an SMTP server (aiosmtpd) and an HTTP server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from hil_tests.demo.receivers import SmsGatewayReceiver, SmtpServer, TelegramBotApi

__all__ = ["HttpReceiver", "SmsGatewayReceiver", "SmtpInbox", "TelegramBotApi", "receivers"]

# One SMTP receiver for the tests and the demo: the demo's (hil_tests is installed, tests is not).
SmtpInbox = SmtpServer


@dataclass
class HttpReceiver:
    """A threaded HTTP server that records JSON POSTs by path.

    ``failures[path] = n`` makes the first n requests to that path answer 500 after
    ``delay_s[path]`` seconds.
    """

    failures: dict[str, int] = field(default_factory=dict)
    delay_s: dict[str, float] = field(default_factory=dict)
    requests: list[tuple[float, str, dict[str, Any], int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
                time.sleep(receiver.delay_s.get(self.path, 0))
                with receiver.lock:
                    failing = receiver.failures.get(self.path, 0) > 0
                    if failing:
                        receiver.failures[self.path] -= 1
                    status = 500 if failing else 200
                    receiver.requests.append((time.monotonic(), self.path, body, status))
                reply = json.dumps({"ok": status == 200}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def to(self, path: str, status: int = 200) -> list[dict[str, Any]]:
        """Bodies received on ``path`` that got ``status``."""
        with self.lock:
            return [body for _, p, body, s in self.requests if p == path and s == status]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def receivers() -> Iterator[tuple[SmtpInbox, HttpReceiver]]:
    """Start both receivers; stop them when the generator is closed (fixture helper)."""
    inbox, http = SmtpInbox(), HttpReceiver()
    inbox.start()
    http.start()
    try:
        yield inbox, http
    finally:
        http.stop()
        inbox.stop()
