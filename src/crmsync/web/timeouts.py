"""Read timeouts for the served app: a slow client cannot hold a connection open.

uvicorn closes an idle keep-alive connection, but once a client has sent one byte of a request
nothing bounds how long it may take over the rest. Two bounds fix that:

- :class:`HeaderTimeoutProtocol` (uvicorn's h11 protocol) closes a connection whose request line
  and headers are not complete ``header_timeout`` seconds after the connection opened, or after
  the previous response on it;
- :class:`BodyTimeout` (ASGI middleware) answers 408 and closes the connection when a request's
  body is not complete ``body_timeout`` seconds after the request began.

Behind a reverse proxy (nginx, Caddy, a cloud load balancer) the proxy usually buffers requests
and enforces its own timeouts; these stay as a second line.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

ASGIApp = Any  # (scope, receive, send) -> Awaitable[None]


class HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol, closing connections that are slow to send a request's headers."""

    header_timeout: float = 10.0

    def __init__(self, config: Config, server_state: ServerState, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, server_state, *args, **kwargs)
        # one timer per connection, moved on only when it fires (not one per request): it checks
        # when the wait for the current headers began, if one is under way
        self._header_timer: asyncio.TimerHandle | None = None
        self._waiting_since: float | None = None
        self._cycle_seen: object | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        if self.cycle is not None and self.cycle is not self._cycle_seen:
            self._cycle_seen = self.cycle  # the headers are in: the body has its own timeout
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and (self.cycle is None or self.cycle is self._cycle_seen):
            self._arm()  # the next request on this connection gets the same time for its headers

    def _arm(self) -> None:
        self._waiting_since = self.loop.time()
        if self._header_timer is None:
            self._header_timer = self.loop.call_at(self._waiting_since + self.header_timeout, self._check)

    def _disarm(self) -> None:
        self._waiting_since = None

    def _check(self) -> None:
        self._header_timer = None
        since = self._waiting_since
        if since is None or self.transport.is_closing():
            return  # no wait under way: the next one sets the timer again
        if since + self.header_timeout - self.loop.time() > 0.001:  # a later wait: not over yet
            self._header_timer = self.loop.call_at(since + self.header_timeout, self._check)
            return
        if self.cycle is not None and self.cycle is not self._cycle_seen:
            return  # a request began meanwhile
        self.logger.info("closing a connection whose request headers took over %.0f s", self.header_timeout)
        self.transport.close()


def header_timeout_protocol(seconds: float) -> type[HeaderTimeoutProtocol]:
    """The protocol class for uvicorn's ``http=`` setting, with its header timeout."""
    return type("HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), {"header_timeout": seconds})


class BodyTimeout:
    """Answer 408 (and close the connection) when a request's body takes over ``seconds``."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline = asyncio.get_running_loop().time() + self.seconds
        state = {"timed_out": False, "started": False, "done": False}

        async def timed_receive() -> dict[str, Any]:
            if state["done"]:
                return dict(await receive())
            try:  # asyncio's own timeout: a timer, much lighter than a cancel scope on each request
                async with asyncio.timeout_at(deadline):
                    message = dict(await receive())
            except TimeoutError:
                state["timed_out"] = True
                return {"type": "http.disconnect"}
            if message.get("type") != "http.request" or not message.get("more_body", False):
                state["done"] = True
            return message

        async def guarded_send(message: dict[str, Any]) -> None:
            if state["timed_out"]:
                if message["type"] == "http.response.start" and not state["started"]:
                    state["started"] = True
                    await _send_408(send, self.seconds)
                return  # the app's own reply to the "disconnect" is dropped
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        await self.app(scope, timed_receive, guarded_send)
        if state["timed_out"] and not state["started"]:
            await _send_408(send, self.seconds)


async def _send_408(send: Any, seconds: float) -> None:
    body = json.dumps(
        {
            "error": {
                "code": "request_timeout",
                "message": f"the request's body was not complete within {seconds:g} s",
            }
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 408,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
