"""A slack_sdk WebClient that keeps its HTTP connections open between calls.

slack_sdk's sync client sends every call through ``urllib.request.urlopen``, which opens a
new TCP (and, against slack.com, TLS) connection per call and closes it after the answer.
Against slack.com each new connection is also a TLS handshake
(docs/decisions/0013-pooled-slack-connections.md).
This client sends the same requests over a urllib3 connection pool, and hands slack_sdk
what urllib would have: the answer, or ``HTTPError`` for a 4xx/5xx, ``TimeoutError`` when
the answer did not come in time, ``URLError`` when the connection failed. So slack_sdk's
retry handlers (connection errors, 429, 5xx) and its ``SlackApiError`` work as they do with
urllib.
"""

from __future__ import annotations

import io
from http.client import HTTPMessage
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.request import Request

import urllib3
from slack_sdk import WebClient

# Connections kept open per host: as many as threads call Slack at once (serve's after-ack
# pool has 32). A call beyond that still goes out, on a connection closed after it, and
# urllib3 logs a warning for each such connection.
POOL_SIZE = 40


class PooledWebClient(WebClient):
    """``WebClient`` over a urllib3 pool: one connection reused for many calls."""

    def __init__(self, *args: Any, pool: urllib3.PoolManager | None = None, **kwargs: Any) -> None:
        """``pool``: the connections of another client (see :meth:`with_token`)."""
        super().__init__(*args, **kwargs)
        self._owns_pool = pool is None
        self._pool = pool or urllib3.PoolManager(
            num_pools=2,
            maxsize=POOL_SIZE,
            # No retries here: slack_sdk's retry handlers decide, and a chat.postMessage
            # must never be sent twice behind the job runner's back.
            retries=False,
            timeout=urllib3.Timeout(connect=self.timeout, read=self.timeout),
            ssl_context=self.ssl,
        )

    def with_token(self, token: str | None) -> PooledWebClient:
        """This client with another token (a workspace's, in multi-workspace mode), over the
        same connections: a client per workspace would keep a pool per workspace."""
        if token == self.token:
            return self
        return PooledWebClient(
            token=token,
            base_url=self.base_url,
            timeout=self.timeout,
            ssl=self.ssl,
            retry_handlers=self.retry_handlers,
            pool=self._pool,
        )

    def _perform_urllib_http_request_internal(self, url: str, req: Request) -> dict[str, Any]:
        if self.proxy is not None or not url.lower().startswith("http"):
            return super()._perform_urllib_http_request_internal(url, req)
        try:
            resp = self._pool.request(
                "POST",
                url,
                body=req.data,
                headers={k: str(v) for k, v in req.header_items()},
                redirect=False,
                # The client's timeout as it is now (WebClient's knob), not the pool's default.
                timeout=urllib3.Timeout(connect=self.timeout, read=self.timeout),
            )
        except urllib3.exceptions.ReadTimeoutError as exc:
            raise TimeoutError(str(exc)) from exc
        except urllib3.exceptions.HTTPError as exc:
            # Refused, reset, connect timeout: urllib raises these as URLError too.
            raise URLError(exc) from exc
        headers = HTTPMessage()
        for name, value in resp.headers.items():
            headers[name] = value
        if resp.status >= 400:
            raise HTTPError(url, resp.status, resp.reason or "", headers, io.BytesIO(resp.data))
        charset = headers.get_content_charset() or "utf-8"
        return {"status": resp.status, "headers": headers, "body": resp.data.decode(charset)}

    def close(self) -> None:
        """Close the pooled connections (a later call opens new ones); a client made by
        :meth:`with_token` leaves them to the client it was made from."""
        if self._owns_pool:
            self._pool.clear()
