"""Group commits under way at once (a server store's setting): every change is stored, and a
delivery id sent in several concurrent requests is queued once, on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import threading
from concurrent.futures import Future

import sqlalchemy as sa

from crmsync.engine.queue import ChangeQueue, EnqueueResult, NewChange
from crmsync.store import Store
from crmsync.store.schema import changes
from crmsync.web.commit import GroupCommitter


def test_two_committers_store_every_change_and_each_delivery_id_once(store: Store) -> None:
    committer = GroupCommitter(ChangeQueue(store), threads=2)
    futures: list[Future[EnqueueResult]] = []
    lock = threading.Lock()

    def sender(n: int) -> None:
        for i in range(40):
            # each request: a change of its own and one whose delivery id every sender also sends
            submitted = committer.submit(
                [
                    NewChange("shop", "orders", f"own-{n}-{i}", "upsert", {"i": i}),
                    NewChange("shop", "orders", f"shared-{i}", "upsert", {"n": n}, delivery_id=f"d-{i}"),
                ]
            )
            with lock:
                futures.append(submitted)

    senders = [threading.Thread(target=sender, args=(n,)) for n in range(4)]
    for t in senders:
        t.start()
    for t in senders:
        t.join(60)
    results = [f.result(60) for f in futures]
    committer.close()
    assert sum(r.accepted for r in results) == 4 * 40 + 40
    assert sum(r.duplicates for r in results) == 3 * 40
    with store.read() as conn:
        keys = list(conn.execute(sa.select(changes.c.record_key)).scalars())
        ids = list(
            conn.execute(sa.select(changes.c.delivery_id).where(changes.c.delivery_id.is_not(None))).scalars()
        )
    assert len(keys) == 4 * 40 + 40 and sorted(ids) == sorted(f"d-{i}" for i in range(40))
    assert committer.requests == 160 and 1 <= committer.commits <= 160
