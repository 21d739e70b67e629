"""The live processes: heartbeats, what each holds (read from its leases), the dead dropped."""

from __future__ import annotations

from datetime import timedelta

from crmsync.engine.queue import ChangeQueue, NewChange
from crmsync.store import Store, leases, processes
from crmsync.store.schema import utcnow


def test_live_processes_show_what_they_hold_and_the_dead_are_dropped(store: Store) -> None:
    now = utcnow()
    processes.beat(store, "web-host:11", "serve", now, {"port": 8080}, now=now)
    processes.beat(store, "work_host:12", "worker", now, now=now)
    processes.beat(store, "work-host:12", "worker", now, now=now)  # "_" is no wildcard
    processes.beat(
        store, "old-host:13", "worker", now - timedelta(minutes=5), now=now - timedelta(seconds=31)
    )
    queue = ChangeQueue(store)
    queue.enqueue([NewChange("app", "usage", f"k{i}", "upsert", {"n": i}) for i in range(3)])
    assert len(queue.claim("work_host:12:0", 2)) == 2
    assert len(queue.claim("work_host:120:0", 5)) == 1  # another process whose id shares a prefix
    assert leases.try_acquire(store, "poller:salesforce", "work_host:12:poller", 30, now=now)
    assert leases.try_acquire(store, "reconcile:monday", "old-host:13:reconcile", 30, now=now)

    found = {p.id: p for p in processes.live(store, now=now)}

    assert set(found) == {"web-host:11", "work_host:12", "work-host:12"}  # old-host stopped beating
    worker = found["work_host:12"]
    assert (worker.host, worker.pid, worker.role) == ("work_host", 12, "worker")
    assert worker.leased_changes == 2 and worker.leases == ("poller:salesforce",)
    assert found["work-host:12"].leased_changes == 0 and found["work-host:12"].leases == ()
    assert found["web-host:11"].details == {"port": 8080} and found["web-host:11"].role == "serve"
    assert [p.id for p in processes.live(store, now=now)] == list(found)  # the dead row is gone

    later = now + timedelta(seconds=10)
    processes.beat(store, "web-host:11", "serve", now, {"port": 8080}, now=later)  # renewed
    processes.gone(store, "work-host:12")
    assert [p.id for p in processes.live(store, now=now + timedelta(seconds=35))] == ["web-host:11"]
