"""Signed deliveries of the in-memory system: HMAC-SHA256 over the timestamp and the body.

A delivery carries ``X-Memory-Timestamp`` (epoch seconds) and ``X-Memory-Signature``
(``sha256=<hex>`` of ``"<timestamp>." + body``), the scheme Stripe and Slack use: the signature
covers the body, and a delivery older than :data:`TOLERANCE_SECONDS` is refused, so a captured one
cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

SIGNATURE_HEADER = "x-memory-signature"
TIMESTAMP_HEADER = "x-memory-timestamp"
#: how old (or how far ahead) a delivery's timestamp may be
TOLERANCE_SECONDS = 300


class DeliveryRefused(Exception):
    """A delivery whose signature does not check out."""


def _mac(secret: str, timestamp: str, body: bytes) -> str:
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def sign(body: bytes, secret: str, *, now: float | None = None) -> dict[str, str]:
    """The headers that sign ``body`` with ``secret``."""
    timestamp = str(int(time.time() if now is None else now))
    return {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: "sha256=" + _mac(secret, timestamp, body)}


def verify(headers: Mapping[str, str], body: bytes, secret: str, *, now: float | None = None) -> None:
    """Raise :class:`DeliveryRefused` unless ``headers`` sign ``body`` with ``secret`` recently."""
    lowered = {k.lower(): v for k, v in headers.items()}
    timestamp = lowered.get(TIMESTAMP_HEADER, "")
    given = lowered.get(SIGNATURE_HEADER, "")
    if not timestamp or not given:
        raise DeliveryRefused("the delivery is not signed")
    if not timestamp.isdigit():
        raise DeliveryRefused("the delivery's timestamp is not a number")
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > TOLERANCE_SECONDS:
        raise DeliveryRefused("the delivery's timestamp is too old (or ahead): a replay?")
    expected = "sha256=" + _mac(secret, timestamp, body)
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise DeliveryRefused("the delivery's signature does not match its body")
