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

The committer thread starts with the first submission and stops with :meth:`close`.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from crmsync.engine.queue import ChangeQueue, EnqueueResult, NewChange

log = logging.getLogger(__name__)


@dataclass
class _Entry:
    changes: Sequence[NewChange]
    future: Future[EnqueueResult] = field(default_factory=Future)


class GroupCommitter:
    """Commits the submitted changes of concurrent requests in shared transactions."""

    def __init__(self, queue: ChangeQueue, *, window: float = 0.0, max_records: int = 5000) -> None:
        if window < 0:
            raise ValueError("window must be 0 or more seconds")
        self.queue = queue
        self.window = window
        self.max_records = max(1, max_records)
        self._pending: deque[_Entry] = deque()
        self._records = 0  # records in _pending
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
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
        entry = _Entry(changes)
        with self._cond:
            if self._closed:
                raise RuntimeError("the committer is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="group-commit", daemon=True)
                self._thread.start()
            self._pending.append(entry)
            self._records += len(changes)
            self._cond.notify()
        return entry.future

    def _take(self) -> list[_Entry] | None:
        with self._cond:
            while not self._pending and not self._closed:
                self._cond.wait()
            if not self._pending:
                return None  # closed and nothing left
            if self.window > 0 and not self._closed:
                self._cond.wait_for(lambda: self._records >= self.max_records or self._closed, self.window)
            group: list[_Entry] = []
            records = 0
            while self._pending and (
                not group or records + len(self._pending[0].changes) <= self.max_records
            ):
                entry = self._pending.popleft()
                self._records -= len(entry.changes)
                # a request whose client went away before its commit started is not stored
                if entry.future.set_running_or_notify_cancel():
                    records += len(entry.changes)
                    group.append(entry)
            return group

    def _run(self) -> None:
        while (group := self._take()) is not None:
            if not group:
                continue
            try:
                results = self.queue.enqueue_groups([e.changes for e in group])
            except BaseException as exc:  # every request of the group learns it was not stored
                for entry in group:
                    entry.future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            self.commits += 1
            self.requests += len(group)
            for entry, result in zip(group, results, strict=True):
                entry.future.set_result(result)

    def close(self, timeout: float = 10.0) -> None:
        """Commit what was submitted, then stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
