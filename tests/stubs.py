"""A tiny scripted HTTP server standing in for XPay when a test needs it to misbehave."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    status: int = 200
    doc: Any = None
    delay: float = 0.0  # seconds to wait before answering (a slow or hung gateway)


def created(intent_id: str = "xpay_pi_stub1") -> Reply:
    return Reply(
        200,
        {
            "success": True,
            "responseStatus": "OK",
            "message": "Request processed successfully.",
            "data": {
                "_id": intent_id,
                "pi_status": "requires_payment_method",
                "checkout_page_url": f"https://checkout.example.test/{intent_id}",
            },
        },
    )


@dataclass
class StubGateway:
    """Answers every request with ``reply`` (change it between calls); records request paths."""

    reply: Reply = field(default_factory=created)
    paths: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        stub = self
        self._closing = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                stub.paths.append(self.path)
                reply = stub.reply
                if reply.delay:
                    stub._closing.wait(reply.delay)
                body = json.dumps(reply.doc).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the client gave up (timeout test)

            do_GET = _answer
            do_POST = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
