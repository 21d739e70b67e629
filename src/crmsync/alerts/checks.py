"""The problems crmsync alerts on, as plain functions the worker, the web app and the periodic
checks call. Each returns True if a notification went out just now.

=====================  ================================  =======================================
problem                raised by                          cleared by
=====================  ================================  =======================================
``dead_letters:FLOW``  :func:`dead_letter_alert`          :func:`dead_letters_cleared` (or
                                                          :func:`check_dead_letters`)
``auth:CONNECTION``    :func:`auth_failure`               :func:`auth_ok`
``webhook:CONNECTION`` :func:`webhook_problem`            :func:`webhook_ok`
``queue_lag``          :func:`check_queue_lag`            :func:`check_queue_lag`
=====================  ================================  =======================================

One key per flow or connection, not per record: a thousand dead letters in one flow are one
problem, one alert.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import sqlalchemy as sa

from crmsync.alerts.alerter import Alerter
from crmsync.store.schema import dead_letters


class QueueStats(Protocol):
    """What the queue-lag check reads of the queue's figures (the engine's ``QueueStats``)."""

    @property
    def oldest_pending_age(self) -> float | None: ...
    @property
    def pending(self) -> int: ...
    @property
    def retrying(self) -> int: ...
    @property
    def leased(self) -> int: ...


DEAD_LETTERS = "dead_letters:"
AUTH = "auth:"
WEBHOOK = "webhook:"
QUEUE_LAG = "queue_lag"


def describe(error: object) -> str:
    """One line about an error: a crmsync error (with its vendor code, record and URL), a
    stored error (a dict with "message"), any other exception, or a text."""
    if isinstance(error, Mapping):
        message = str(error.get("message") or error)
        kind = error.get("kind")
        return f"{kind}: {message}" if kind else message
    if isinstance(error, BaseException):
        return f"{type(error).__name__}: {error}"
    return str(error)


# -- dead letters -------------------------------------------------------------------------------


def dead_letter_alert(alerter: Alerter, flow: str, record_key: str, error: object) -> bool:
    """A change of ``flow`` became a dead letter (call it for each one; one alert per flow)."""
    return alerter.problem(
        DEAD_LETTERS + flow,
        f"dead letters in flow {flow}",
        f"Record {record_key} of flow {flow} failed for good: {describe(error)}\n"
        f"Inspect: crmsync dead-letters list --flow {flow}; once fixed: crmsync dead-letters replay ID",
    )


def dead_letters_cleared(alerter: Alerter, flow: str) -> bool:
    """``flow`` has no open dead letter any more (all replayed or discarded)."""
    return alerter.clear(DEAD_LETTERS + flow, f"Flow {flow} has no dead letters left.")


def check_dead_letters(alerter: Alerter) -> bool:
    """Clear the dead-letter problem of every flow whose dead letters have all been replayed or
    discarded (a periodic check: cheap when nothing is open). True if a notice went out."""
    flows = [
        p.key.removeprefix(DEAD_LETTERS) for p in alerter.open_problems() if p.key.startswith(DEAD_LETTERS)
    ]
    if not flows:
        return False
    c = dead_letters.c
    with alerter.store.read() as conn:
        still = {
            row.flow
            for row in conn.execute(
                sa.select(c.flow)
                .where(c.flow.in_(flows), c.discarded_at.is_(None), c.replay_requested_at.is_(None))
                .group_by(c.flow)
            )
        }
    sent = False
    for flow in flows:
        if flow not in still:
            sent = dead_letters_cleared(alerter, flow) or sent
    return sent


# -- connections ------------------------------------------------------------------------------


def auth_failure(alerter: Alerter, connection: str, error: object) -> bool:
    """Logging in to ``connection`` failed (bad or revoked credentials): its flows are stopped."""
    return alerter.problem(
        AUTH + connection,
        f"cannot log in to {connection}",
        f"Connection {connection} refused crmsync's credentials: {describe(error)}\n"
        f"Its flows wait until this is fixed. Check the connection's settings, then: crmsync check --connect",
    )


def auth_ok(alerter: Alerter, connection: str) -> bool:
    """Logging in to ``connection`` works (again)."""
    return alerter.clear(AUTH + connection, f"crmsync logs in to {connection} again.")


def webhook_problem(alerter: Alerter, connection: str, message: str) -> bool:
    """Webhooks of ``connection`` are failing (refused signatures, a lost registration, ...)."""
    return alerter.problem(WEBHOOK + connection, f"webhooks of {connection} are failing", message)


def webhook_ok(alerter: Alerter, connection: str) -> bool:
    """Webhooks of ``connection`` arrive and check out (again)."""
    return alerter.clear(WEBHOOK + connection, f"Webhooks of {connection} arrive again.")


# -- the queue ----------------------------------------------------------------------------------


def check_queue_lag(alerter: Alerter, stats: QueueStats, threshold_seconds: float) -> bool:
    """Raise ``queue_lag`` while the oldest pending change is older than ``threshold_seconds``;
    clear it once the queue has caught up."""
    age = stats.oldest_pending_age
    if age is not None and age > threshold_seconds:
        return alerter.problem(
            QUEUE_LAG,
            "the change queue is falling behind",
            f"The oldest pending change waits for {age:.0f} s (threshold {threshold_seconds:.0f} s); "
            f"{stats.pending} pending, {stats.retrying} of them retrying, {stats.leased} in progress.\n"
            "Are the workers running, and is every target system up? crmsync status",
        )
    return alerter.clear(QUEUE_LAG, "The change queue has caught up.")
