"""Group commit: concurrent ingest requests share one transaction, each answered after it commits.

::

    request ─► checks (a thread) ─► submit(changes) ─┐
    request ─► checks (a thread) ─► submit(changes) ─┼─► committer thread ─► one transaction
    request ─► checks (a thread) ─► submit(changes) ─┘   (ChangeQueue.enqueue_groups)
                                                                │
                         each request's future is set once it committed ─► 202 (or 503 if it failed)

Requests that arrive while a commit runs wait for the next one, so the store sees one commit per
group rather than one per request: at low load a request commits alone, at once; under load the
groups grow by themselves. ``window`` seconds (bounded, 0 by default) may be spent waiting for
more requests after the first; a group holds at most ``max_records`` records.

A duplicate delivery id is judged in the group as it is across groups: the first request that
carries it queues it, any later one counts it as a duplicate. A group whose transaction fails
fails every request in it (none of them was stored; each answers 503 and may be sent again).

A request may hand over its checks rather than its changes (:meth:`check_and_commit`, from the
event loop): the committer runs them, one request after the other, just before the group's
transaction, so a request costs no thread of its own, and a request its checks refuse is left out
of the group (it learns why; the others are not affected). The answers of a group reach the event
loop together (one wake-up per group, not one per request).

With ``threads`` above 1 (a server store: PostgreSQL, MySQL) that many groups commit at once, each
in a transaction of its own, so one group's round trips to the store overlap the next one's; a
delivery id sent in two of them at once is still queued once (the store's unique index decides, and
the later transaction counts it a duplicate).

The committer threads start with the first submission and stop with :meth:`close`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

from crmsync.engine.queue import ChangeQueue, EnqueueResult, NewChange

log = logging.getLogger(__name__)


#: a request's checks, run by the committer: its changes, or an exception saying why they are refused
Check = Callable[[], Sequence[NewChange]]
#: what the event loop learns: (future, the result or the exception)
_Answer = tuple["asyncio.Future[EnqueueResult]", "EnqueueResult | BaseException"]


@dataclass(slots=True)
class _Entry:
    changes: Sequence[NewChange]
    #: answered by a thread's future (:meth:`GroupCommitter.submit`) or on its event loop
    #: (:meth:`GroupCommitter.check_and_commit`)
    future: Future[EnqueueResult] | asyncio.Future[EnqueueResult]
    check: Check | None = None

    @property
    def size(self) -> int:
        return len(self.changes) if self.check is None else 1

    def start(self) -> bool:
        """False if the request went away before its commit started (it is not stored then)."""
        if isinstance(self.future, Future):
            return self.future.set_running_or_notify_cancel()
        return not self.future.done()


class GroupCommitter:
    """Commits the submitted changes of concurrent requests in shared transactions."""

    def __init__(
        self, queue: ChangeQueue, *, window: float = 0.0, max_records: int = 5000, threads: int = 1
    ) -> None:
        if window < 0:
            raise ValueError("window must be 0 or more seconds")
        self.queue = queue
        self.window = window
        self.max_records = max(1, max_records)
        self.threads = max(1, threads)
        self._pending: deque[_Entry] = deque()
        self._records = 0  # records in _pending
        self._cond = threading.Condition()
        self._closed = False
        self._idle = 0  # threads waiting for a submission
        self._threads: list[threading.Thread] = []
        #: transactions committed and requests they carried (for tests and metrics)
        self.commits = 0
        self.requests = 0

    @property
    def waiting(self) -> int:
        """Requests waiting for the next commit."""
        with self._cond:
            return len(self._pending)

    def submit(self, changes: Sequence[NewChange]) -> Future[EnqueueResult]:
        """Queue ``changes`` for the next group; the future holds their result once committed."""
        future: Future[EnqueueResult] = Future()
        self._add(_Entry(changes, future))
        return future

    def check_and_commit(self, check: Check) -> asyncio.Future[EnqueueResult]:
        """From the event loop: run ``check`` in the committer, then commit the changes it returns
        with the next group. The future (of the running loop) holds their result once committed, or
        what ``check`` raised."""
        waiter: asyncio.Future[EnqueueResult] = asyncio.get_running_loop().create_future()
        self._add(_Entry((), waiter, check))
        return waiter

    def _add(self, entry: _Entry) -> None:
        with self._cond:
            if self._closed:
                raise RuntimeError("the committer is closed")
            if not self._threads:
                for i in range(self.threads):
                    name = "group-commit" if i == 0 else f"group-commit-{i}"
                    self._threads.append(threading.Thread(target=self._run, name=name, daemon=True))
                    self._threads[-1].start()
            self._pending.append(entry)
            self._records += entry.size
            if self._idle:  # under load the threads are busy and find it when done: no wake-up
                self._cond.notify()

    def _take(self) -> list[_Entry] | None:
        with self._cond:
            while not self._pending and not self._closed:
                self._idle += 1
                self._cond.wait()
                self._idle -= 1
            if not self._pending:
                return None  # closed and nothing left
            if self.window > 0 and not self._closed:
                self._idle += 1
                self._cond.wait_for(lambda: self._records >= self.max_records or self._closed, self.window)
                self._idle -= 1
            group: list[_Entry] = []
            records = 0
            while self._pending and (not group or records + self._pending[0].size <= self.max_records):
                entry = self._pending.popleft()
                self._records -= entry.size
                # a request whose client went away before its commit started is not stored
                if entry.start():
                    records += entry.size
                    group.append(entry)
            return group

    def _run(self) -> None:
        while (taken := self._take()) is not None:
            answers: list[tuple[_Entry, EnqueueResult | BaseException]] = []
            group = [entry for entry in taken if self._checked(entry, answers)]
            try:
                if group:
                    results = self.queue.enqueue_groups([e.changes for e in group])
            except BaseException as exc:  # every request of the group learns it was not stored
                answers.extend((entry, exc) for entry in group)
                self._answer(answers)
                if not isinstance(exc, Exception):
                    raise
                continue
            if group:
                with self._cond:
                    self.commits += 1
                    self.requests += len(group)
                answers.extend(zip(group, results, strict=True))
            self._answer(answers)

    @staticmethod
    def _checked(entry: _Entry, answers: list[tuple[_Entry, EnqueueResult | BaseException]]) -> bool:
        """Run the entry's checks, if it has any: False (and its answer noted) if they refuse it."""
        if entry.check is None:
            return True
        try:
            entry.changes = entry.check()
        except Exception as exc:
            answers.append((entry, exc))
            return False
        return True

    @staticmethod
    def _answer(answers: list[tuple[_Entry, EnqueueResult | BaseException]]) -> None:
        """Each request learns its answer; those waiting on an event loop, with one wake-up per loop."""
        loops: dict[asyncio.AbstractEventLoop, list[_Answer]] = {}
        for entry, outcome in answers:
            if not isinstance(entry.future, Future):
                loops.setdefault(entry.future.get_loop(), []).append((entry.future, outcome))
            elif isinstance(outcome, BaseException):
                entry.future.set_exception(outcome)
            else:
                entry.future.set_result(outcome)
        for loop, settled in loops.items():
            try:
                loop.call_soon_threadsafe(_settle, settled)
            except RuntimeError:  # the loop is closed: nobody waits for these answers any more
                log.debug("%d answers for a closed event loop dropped", len(settled))

    def close(self, timeout: float = 10.0) -> None:
        """Commit what was submitted, then stop the threads."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            threads = list(self._threads)
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))


def _settle(answers: list[_Answer]) -> None:
    """On the event loop: set each waiting request's answer (unless it went away meanwhile)."""
    for waiter, outcome in answers:
        if waiter.done():
            continue
        if isinstance(outcome, BaseException):
            waiter.set_exception(outcome)
        else:
            waiter.set_result(outcome)
