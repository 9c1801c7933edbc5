"""A tiny scripted HTTP server standing in for XPay when a test needs it to misbehave."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Answer = tuple[int, Any]  # HTTP status, and a JSON document (or raw bytes)


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


class StubServer:
    """A threaded HTTP server on a free port whose answers come from ``answer``.

    ``answer(handler, body)`` returns (status, JSON document) to send, or None when it has
    answered (or dropped the connection) itself. ``wait(seconds)`` sleeps, but returns at
    once when the server is closing, so a hanging answer never outlives its test.
    """

    def __init__(self, answer: Callable[[BaseHTTPRequestHandler, bytes], Answer | None]):
        self._closing = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                reply = answer(self, body)
                if reply is None:
                    return
                status, doc = reply
                data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up (timeout tests)

            do_GET = do_POST = _serve

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def wait(self, seconds: float) -> None:
        self._closing.wait(seconds)

    def close(self) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()


class StubGateway(StubServer):
    """Answers every request with ``reply`` (change it between calls); records request paths."""

    def __init__(self, reply: Reply | None = None):
        self.reply = reply or created()
        self.paths: list[str] = []
        super().__init__(self._answer)

    def _answer(self, handler: BaseHTTPRequestHandler, body: bytes) -> Answer:
        self.paths.append(handler.path)
        reply = self.reply
        if reply.delay:
            self.wait(reply.delay)
        return reply.status, reply.doc
