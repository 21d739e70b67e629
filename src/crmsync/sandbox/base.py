"""What every emulator shares: state lifecycle, call log, fault rules and the control API.

An emulator is a plain object holding its in-memory state and a Starlette app built from its
routes. :meth:`Emulator.app` wraps those routes in a middleware that records every call and
applies fault rules, and mounts the control API under ``/_sandbox``:

==========================  ====================================================
``GET  /_sandbox/state``    summary of the state (counts per object)
``POST /_sandbox/reset``    empty state, call log, fault rules
``POST /_sandbox/seed/N``   reset, then load seed data set ``N``
``GET  /_sandbox/calls``    calls served: total and per ``METHOD path``
``DELETE /_sandbox/calls``  forget the call log
``GET|POST|DELETE /_sandbox/faults[/ID]``  list, add, clear or remove fault rules
``POST /_sandbox/save``     write the state file now (when one is configured)
==========================  ====================================================

The same operations are methods of the emulator for tests in the same process.
"""

from __future__ import annotations

import abc
import asyncio
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crmsync.sandbox.calls import CallLog
from crmsync.sandbox.faults import FaultRule, FaultSet

log = logging.getLogger(__name__)


class Emulator(abc.ABC):
    """Base of the Salesforce, Trello and Monday.com emulators."""

    #: short name: ``salesforce``, ``trello``, ``monday``
    name: ClassVar[str]
    #: seed data sets this emulator knows
    seeds: ClassVar[tuple[str, ...]] = ("empty",)

    def __init__(self, *, state_file: Path | None = None) -> None:
        self.lock = threading.RLock()
        self.faults = FaultSet()
        self.calls = CallLog()
        self.state_file = state_file
        self.base_url = "http://127.0.0.1"
        #: requests served that may have changed the state (anything but GET/HEAD/OPTIONS)
        self.writes = 0
        self._app: ASGIApp | None = None

    # -- what each emulator provides -------------------------------------------------------
    @abc.abstractmethod
    def routes(self) -> list[BaseRoute]:
        """The vendor API's routes."""

    @abc.abstractmethod
    def reset_state(self) -> None:
        """Empty the vendor state (not the call log or fault rules)."""

    @abc.abstractmethod
    def load_seed(self, name: str) -> None:
        """Add the records of seed data set ``name`` to the (empty) state."""

    @abc.abstractmethod
    def fault_response(self, rule: FaultRule, request: Request) -> Response:
        """The vendor's own reply for a fault rule's ``error`` kind or ``status``."""

    @abc.abstractmethod
    def dump_state(self) -> dict[str, Any]:
        """The whole state as JSON-able data (for ``--state FILE``)."""

    @abc.abstractmethod
    def restore_state(self, data: dict[str, Any]) -> None:
        """Replace the state with what :meth:`dump_state` produced."""

    @abc.abstractmethod
    def summary(self) -> dict[str, Any]:
        """Counts per object, for ``GET /_sandbox/state`` and the sandbox banner."""

    @abc.abstractmethod
    def credentials(self) -> dict[str, str]:
        """The ``KEY=value`` credentials a client needs (keys as in ``crmsync sandbox``)."""

    # -- lifecycle ---------------------------------------------------------------------------
    def reset(self) -> None:
        with self.lock:
            self.reset_state()
            self.calls.clear()
            self.faults.clear()

    def seed(self, name: str) -> None:
        if name not in self.seeds:
            raise ValueError(f"unknown seed {name!r} for {self.name}; valid: {', '.join(self.seeds)}")
        with self.lock:
            self.reset()
            self.load_seed(name)

    def load_file(self) -> bool:
        """Load the state file if there is one; True if it was loaded."""
        if self.state_file is None or not self.state_file.exists():
            return False
        with self.lock:
            self.restore_state(json.loads(self.state_file.read_text()))
        return True

    def save_file(self) -> None:
        if self.state_file is None:
            return
        with self.lock:
            data = self.dump_state()
        tmp = self.state_file.with_suffix(self.state_file.suffix + ".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(self.state_file)

    def on_bound(self, base_url: str) -> None:
        """Called once the server knows its address (ports may have been picked at random)."""
        self.base_url = base_url

    def close(self) -> None:
        """Stop background work (webhook deliveries); called when the server stops."""

    # -- the ASGI app --------------------------------------------------------------------------
    def app(self) -> ASGIApp:
        if self._app is None:
            inner = Starlette(routes=[*self._control_routes(), *self.routes()])
            self._app = _SandboxMiddleware(inner, self)
        return self._app

    def _control_routes(self) -> list[BaseRoute]:
        async def state(request: Request) -> Response:
            with self.lock:
                return JSONResponse({"emulator": self.name, **self.summary()})

        async def reset(request: Request) -> Response:
            self.reset()
            return JSONResponse({"reset": True})

        async def seed(request: Request) -> Response:
            try:
                self.seed(request.path_params["name"])
            except ValueError as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            with self.lock:
                return JSONResponse(self.summary())

        async def calls(request: Request) -> Response:
            if request.method == "DELETE":
                self.calls.clear()
                return Response(status_code=204)
            return JSONResponse(
                {
                    "total": self.calls.total,
                    "by_endpoint": self.calls.by_endpoint(),
                    "peak_in_flight": self.calls.peak_in_flight(),
                }
            )

        async def faults(request: Request) -> Response:
            if request.method == "GET":
                return JSONResponse([r.to_dict() for r in self.faults.rules()])
            if request.method == "DELETE":
                self.faults.clear()
                return Response(status_code=204)
            try:
                body = await request.json()
                rules = [FaultRule.from_dict(b) for b in (body if isinstance(body, list) else [body])]
            except (ValueError, TypeError) as exc:
                return JSONResponse({"error": f"invalid fault rule: {exc}"}, status_code=400)
            for rule in rules:
                self.faults.add(rule)
            out = [r.to_dict() for r in rules]
            return JSONResponse(out if isinstance(body, list) else out[0], status_code=201)

        async def fault(request: Request) -> Response:
            found = self.faults.remove(int(request.path_params["rule_id"]))
            return Response(status_code=204 if found else 404)

        async def save(request: Request) -> Response:
            if self.state_file is None:
                return JSONResponse({"error": "no state file configured"}, status_code=400)
            self.save_file()
            return JSONResponse({"saved": str(self.state_file)})

        return [
            Route("/_sandbox/state", state, methods=["GET"]),
            Route("/_sandbox/reset", reset, methods=["POST"]),
            Route("/_sandbox/seed/{name}", seed, methods=["POST"]),
            Route("/_sandbox/calls", calls, methods=["GET", "DELETE"]),
            Route("/_sandbox/faults", faults, methods=["GET", "POST", "DELETE"]),
            Route("/_sandbox/faults/{rule_id:int}", fault, methods=["DELETE"]),
            Route("/_sandbox/save", save, methods=["POST"]),
        ]


class _SandboxMiddleware:
    """Records every vendor call and applies fault rules before the route sees the request."""

    def __init__(self, app: ASGIApp, emulator: Emulator) -> None:
        self.app = app
        self.emulator = emulator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in ("GET", "HEAD", "OPTIONS"):
            self.emulator.writes += 1  # tells the state saver there may be something new
        if scope["type"] != "http" or scope["path"].startswith("/_sandbox"):
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        path: str = scope["path"]
        recorded = False
        started = time.time()

        async def send_and_note(message: Message) -> None:
            nonlocal recorded
            if message["type"] == "http.response.start" and not recorded:
                # noted before the client can see the reply, so a test that counts calls right
                # after a reply never reads one short
                self.emulator.calls.record(method, path, message["status"], started)
                recorded = True
            await send(message)

        try:
            rule = self.emulator.faults.for_request(method, path)
            if rule is not None:
                if rule.latency_ms:
                    await asyncio.sleep(rule.latency_ms / 1000)
                if rule.hang:
                    withheld = await self._hang(rule, scope, receive, send_and_note)
                    if withheld is not None and not recorded:
                        self.emulator.calls.record(method, path, withheld, started)
                        recorded = True
                    return
                if rule.error or rule.status:
                    response = self.emulator.fault_response(rule, Request(scope, receive))
                    header = rule.retry_after_header()
                    if header is not None:
                        response.headers["Retry-After"] = header
                    await response(scope, receive, send_and_note)
                    return
            await self.app(scope, receive, send_and_note)
        finally:
            if not recorded:
                self.emulator.calls.record(method, path, 500, started)

    async def _hang(self, rule: FaultRule, scope: Scope, receive: Receive, send: Send) -> int | None:
        """Serve the request now (its write lands), but hold the answer back until the client
        gives up and closes the connection, or ``rule.hang_seconds`` pass (then send it).

        Returns the status of an answer nobody received (the client left first), else None.
        """
        body: list[Message] = []
        while True:  # the whole body first: a client that gives up must not take it away
            message = await receive()
            if message["type"] != "http.request":
                return None  # gone before it finished sending: nothing to serve
            body.append(message)
            if not message.get("more_body", False):
                break
        replay = iter(body)
        gone = asyncio.Event()

        async def replay_receive() -> Message:
            message = next(replay, None)
            if message is not None:
                return message
            await gone.wait()
            return {"type": "http.disconnect"}

        answer: list[Message] = []

        async def hold(message: Message) -> None:
            answer.append(message)

        await self.app(scope, replay_receive, hold)
        try:
            while True:  # after the body, the server's next message is the client going away
                if (await asyncio.wait_for(receive(), rule.hang_seconds))["type"] == "http.disconnect":
                    gone.set()
                    log.debug("sandbox: %s %s answered nobody (hang)", scope["method"], scope["path"])
                    started = answer[0] if answer else {}
                    return int(started.get("status", 500))
        except TimeoutError:
            pass
        for message in answer:
            await send(message)
        return None
