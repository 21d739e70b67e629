"""A claimed change says whether an earlier attempt may have written it already (the writes it
becomes carry it: ``Write.maybe_applied``), on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

from crmsync.engine.queue import ChangeQueue
from crmsync.errors import RetryLater

from .conftest import Clock
from .test_queue import up


def test_a_first_claim_cannot_have_landed_a_retried_one_may(queue: ChangeQueue, clock: Clock) -> None:
    queue.enqueue([up("a", x=1), up("b", x=1)])
    first = {c.record_key: c for c in queue.claim("w")}
    assert not first["a"].maybe_applied and not first["b"].maybe_applied
    queue.retry(first["a"], RetryLater("the answer was lost"), transient=True)
    queue.complete([first["b"]])
    clock.advance(1.0)
    [again] = queue.claim("w")
    assert again.record_key == "a" and again.attempts == 1 and again.maybe_applied


def test_a_change_claimed_again_after_its_lease_ran_out_may_have_landed(
    queue: ChangeQueue, clock: Clock
) -> None:
    queue.enqueue([up("a", x=1)])
    [held] = queue.claim("stopped-worker")
    assert not held.maybe_applied
    clock.advance(31)  # the worker stopped mid-write: its lease ran out
    queue.enqueue([up("a", y=2)])
    [taken] = queue.claim("w2")
    assert taken.attempts == 0 and taken.reclaimed and taken.maybe_applied
    assert taken.fields == {"x": 1, "y": 2}


def test_a_change_given_back_untried_is_a_first_attempt_again(queue: ChangeQueue) -> None:
    queue.enqueue([up("a", x=1)])
    claimed = queue.claim("w")
    queue.release(claimed)  # a paused flow gives its changes back before writing them
    [again] = queue.claim("w")
    assert not again.maybe_applied


def test_a_change_given_back_after_its_write_was_sent_may_have_landed(
    queue: ChangeQueue, clock: Clock
) -> None:
    queue.enqueue([up("a", x=1), up("b", x=1)])
    claimed = {c.record_key: c for c in queue.claim("w")}
    # a Fatal came after the write of "a" was sent (it may have landed), before "b" was sent
    queue.release([claimed["a"]], sent=True)
    queue.release([claimed["b"]])
    queue.enqueue([up("a", y=2)])
    clock.advance(1.0)
    again = {c.record_key: c for c in queue.claim("w")}
    assert again["a"].attempts == 0 and again["a"].maybe_applied  # no attempt counted, yet flagged
    assert again["a"].fields == {"x": 1, "y": 2}
    assert not again["b"].maybe_applied
    queue.retry(again["a"], RetryLater("the answer was lost"), transient=True)
    queue.complete([again["b"]])
    clock.advance(60)
    [retried] = queue.claim("w")
    assert retried.attempts == 1 and retried.maybe_applied
    queue.complete([retried])
    assert queue.stats().pending == queue.stats().leased == 0
