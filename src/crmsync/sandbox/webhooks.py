"""Outgoing webhook deliveries of the emulators: ordered, retried, subject to fault rules.

Each emulator builds a :class:`Delivery` (URL, body, headers: its own payload and signature)
and hands it to its :class:`WebhookDispatcher`. One background thread sends deliveries in the
order they were submitted; a failed delivery (no answer or a status outside 2xx) is retried
after each of ``retry_delays`` in turn. ``on_result`` is told of every attempt and may stop
further retries (Trello deletes a webhook whose callback answers 410).

Webhook fault rules (``FaultRule.webhook``) apply per attempt: ``drop`` loses it silently
(no retry: the vendor believes it delivered), ``duplicate`` sends it twice, ``reorder`` holds it
back and sends it right after the next delivery (or after ``hold_seconds`` when no other
delivery comes).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from crmsync.sandbox.faults import FaultSet

log = logging.getLogger(__name__)


@dataclass
class Delivery:
    url: str
    body: bytes
    headers: dict[str, str]
    meta: dict[str, Any] = field(default_factory=dict)
    attempt: int = 0


# (delivery, HTTP status or None when nothing answered) -> False to stop retrying
ResultHook = Callable[[Delivery, int | None], bool]


class WebhookDispatcher:
    def __init__(
        self,
        faults: FaultSet,
        *,
        retry_delays: Sequence[float] = (1.0, 2.0, 4.0),
        on_result: ResultHook | None = None,
        timeout: float = 5.0,
        hold_seconds: float = 1.0,
    ) -> None:
        self.faults = faults
        self.retry_delays = list(retry_delays)
        self.on_result = on_result
        self.timeout = timeout
        self.hold_seconds = hold_seconds
        self.sent: list[tuple[Delivery, int | None]] = []
        self._heap: list[tuple[float, int, Delivery]] = []
        self._held: list[Delivery] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._busy = 0
        self._stop = False
        self._thread: threading.Thread | None = None

    def submit(self, delivery: Delivery, delay: float = 0.0) -> None:
        with self._cond:
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._seq), delivery))
            self._ensure_thread()
            self._cond.notify_all()

    def pending(self) -> int:
        with self._cond:
            return len(self._heap) + len(self._held) + self._busy

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until nothing is queued, held or in flight; False if ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._heap or self._held or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    def clear(self) -> None:
        with self._cond:
            self._heap.clear()
            self._held.clear()
            self.sent.clear()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout + 1)
            self._thread = None
        with self._cond:
            self._stop = False

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="sandbox-webhooks", daemon=True)
            self._thread.start()

    def _next(self) -> tuple[Delivery, bool] | None:
        """The next delivery to attempt, and whether it is a held one being released (sent as is)."""
        with self._cond:
            held_since: float | None = None
            while not self._stop:
                now = time.monotonic()
                if self._heap and self._heap[0][0] <= now:
                    self._busy += 1
                    return heapq.heappop(self._heap)[2], False
                if self._held and not self._heap:
                    # nothing came after a held delivery within hold_seconds: release it
                    held_since = now if held_since is None else held_since
                    if now - held_since >= self.hold_seconds:
                        self._busy += 1
                        return self._held.pop(0), True
                    self._cond.wait(max(0.001, held_since + self.hold_seconds - now))
                    continue
                held_since = None
                wait = self._heap[0][0] - now if self._heap else 0.5
                self._cond.wait(max(0.001, min(wait, 0.5)))
        return None

    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout) as client:
            while True:
                taken = self._next()
                if taken is None:
                    return
                delivery, released = taken
                try:
                    if released:
                        self._send(client, delivery)
                        continue
                    if self._attempt(client, delivery):
                        continue  # held back: it goes right after the next delivery
                    with self._cond:
                        held, self._held = self._held, []
                    for late in held:
                        self._send(client, late)
                finally:
                    with self._cond:
                        self._busy -= 1
                        self._cond.notify_all()

    def _attempt(self, client: httpx.Client, delivery: Delivery) -> bool:
        """Send one delivery as the fault rules say; True when it was held back (``reorder``)."""
        rule = self.faults.for_webhook(delivery.url)
        if rule is not None and rule.webhook == "drop":
            log.debug("sandbox: dropped webhook delivery to %s", delivery.url)
            self.sent.append((delivery, None))
            return False
        if rule is not None and rule.webhook == "reorder":
            with self._cond:
                self._held.append(delivery)
            return True
        self._send(client, delivery)
        if rule is not None and rule.webhook == "duplicate":
            self._send(client, delivery, retry=False)
        return False

    def _send(self, client: httpx.Client, delivery: Delivery, retry: bool = True) -> None:
        status: int | None
        try:
            response = client.post(delivery.url, content=delivery.body, headers=delivery.headers)
            status = response.status_code
        except httpx.HTTPError as exc:
            log.debug("sandbox: webhook delivery to %s failed: %s", delivery.url, exc)
            status = None
        self.sent.append((delivery, status))
        keep_trying = self.on_result(delivery, status) if self.on_result else True
        ok = status is not None and 200 <= status < 300
        if not ok and retry and keep_trying and delivery.attempt < len(self.retry_delays):
            delay = self.retry_delays[delivery.attempt]
            delivery.attempt += 1
            self.submit(delivery, delay=delay)
