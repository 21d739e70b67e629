"""Run a process's parts: the web app, workers, pollers, reconcilers, the watchdog and the scheduler.

``crmsync run`` runs all of them in one process (the embedded default); ``crmsync serve`` only
the web app, ``crmsync worker`` workers with the pollers, reconcilers and watchdog (and the
scheduler, unless told not to), ``crmsync scheduler`` only the scheduler — each as many times as
needed against one store (store leases make one poller per connection and one firing per job
occurrence, whatever the number of processes).
SIGTERM or Ctrl-C stops taking new work; each worker finishes the batch it holds, then exits.

::

    Process(runtime, web=…, workers=…, scheduler=…)
      ├─ web app (uvicorn, one listening socket)        web
      ├─ workers (N)  ─► engine.worker.Worker            workers > 0
      ├─ pollers, one per polled connection             workers > 0 (a store lease each)
      ├─ reconcilers, one per webhook connection        workers > 0 (a store lease each)
      ├─ watchdog (queue lag, dead letters)             workers > 0
      ├─ scheduler (cron jobs)                          scheduler (default: workers > 0)
      ├─ heartbeat (its row of ``processes``)           always: `crmsync status` lists the live ones
      └─ configuration watch                            always (a file read from disk)

Every lease owner a process uses starts with its id, ``host:pid:`` (:mod:`crmsync.store.processes`),
so `crmsync status` can tell what each live process holds.

The configuration watch reads ``crmsync.yaml`` again when it changes on disk (the dashboard's
Settings page, or an editor) and hands it to the runtime: every process of a deployment picks up
an edit without a restart. A file that no longer validates is logged and ignored.
"""

from __future__ import annotations

import gc
import logging
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import uvicorn

from crmsync.alerts import check_dead_letters, check_queue_lag
from crmsync.connectors.polling import ChangePoller
from crmsync.engine.poller import poller_for
from crmsync.engine.reconcile import BoardReconciler
from crmsync.engine.runtime import Runtime
from crmsync.engine.worker import Worker
from crmsync.store import leases, processes
from crmsync.store.schema import utcnow
from crmsync.web.sockets import listening_socket

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the process stops its workers first, then exits 0."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Process:
    def __init__(
        self,
        runtime: Runtime,
        *,
        web: bool = True,
        workers: int = 1,
        host: str | None = None,
        port: int | None = None,
        poll_interval: float = 2.0,
        reconcile_interval: float = 60.0,
        watchdog_interval: float = 15.0,
        scheduler: bool | None = None,
        role: str | None = None,
    ) -> None:
        self.rt = runtime
        self.id = processes.this_process()
        self.role = role or (
            "run" if web and workers else "serve" if web else "worker" if workers else "scheduler"
        )
        self.web = web
        self.workers = workers
        self.host = host if host is not None else runtime.config.web.host
        self.port = port if port is not None else runtime.config.web.port
        self.poll_interval = poll_interval
        self.reconcile_interval = reconcile_interval
        self.watchdog_interval = watchdog_interval
        self.scheduler = workers > 0 if scheduler is None else scheduler
        self.stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server: _Server | None = None
        self._sock: socket.socket | None = None
        self._serving = False
        self._heartbeat: threading.Thread | None = None

    @property
    def bound_port(self) -> int | None:
        return self._sock.getsockname()[1] if self._sock is not None else None

    def start_workers(self) -> None:
        base = self.id
        for i in range(self.workers):
            worker = Worker(
                self.rt,
                owner=f"{base}:{i}",
                batch_size=self.rt.config.worker.batch_size,
                poll_interval=self.rt.config.worker.poll_interval_seconds,
            )
            thread = threading.Thread(
                target=worker.run, args=(self.stopping,), name=f"worker-{i}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def start_pollers(self, interval: float = 2.0) -> None:
        """Poll the connections that are polled for changes and receive no webhooks (whatever their
        connector: its own cycle, or ``read_changes`` per object); one process polls a connection at
        a time (a lease in the store), the others stand by and take over if it stops."""
        owner = f"{self.id}:poller"
        for connection, targets in self.rt.poll_targets().items():
            poller = poller_for(self.rt.connector(connection), targets, self.rt.queue, self.rt.store)
            thread = threading.Thread(
                target=self._poll, args=(poller, owner, interval), name=f"poller-{connection}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _poll(self, poller: ChangePoller, owner: str, interval: float) -> None:
        lease = f"poller:{poller.connection}"
        while not self.stopping.is_set():
            try:
                if leases.try_acquire(self.rt.store, lease, owner, max(30.0, interval * 5)):
                    poller.poll_once()
            except Exception:  # a poller must survive a bad cycle; the watermark did not move
                log.exception("polling %s failed; trying again", poller.connection)
            self.stopping.wait(interval)
        leases.release(self.rt.store, lease, owner)

    def start_reconcilers(self, interval: float) -> None:
        """Read the boards of two-way flows now and then: a lost webhook is caught within ``interval``."""
        owner = f"{self.id}:reconcile"
        for connection, flows in self.rt.reconcile_targets().items():
            reconciler = BoardReconciler(self.rt, connection, flows)

            def loop(r: BoardReconciler = reconciler) -> None:
                lease = f"reconcile:{r.connection}"
                try:  # at start: what was missed while crmsync was down (sources that replay events)
                    if leases.try_acquire(self.rt.store, lease, owner, interval * 3):
                        r.catch_up()
                except Exception:
                    log.exception("catching up %s failed", r.connection)
                while not self.stopping.wait(interval):
                    try:
                        if leases.try_acquire(self.rt.store, lease, owner, interval * 3):
                            r.reconcile_once()
                    except Exception:  # a bad pass must not end reconciling; the watermark did not move
                        log.exception("reconciling %s failed", r.connection)

            thread = threading.Thread(target=loop, name=f"reconcile-{connection}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def start_scheduler(self) -> None:
        """Fire the configured cron jobs; with several processes each occurrence fires once."""
        from crmsync.scheduler.scheduler import Scheduler

        scheduler = Scheduler.from_config(
            self.rt.store, self.rt.config, runtime=self.rt, owner=f"{self.id}:scheduler"
        )
        if not scheduler.jobs:
            return
        thread = threading.Thread(target=scheduler.run, args=(self.stopping,), name="scheduler", daemon=True)
        thread.start()
        self._threads.append(thread)

    def start_config_watch(self, interval: float = 2.0) -> None:
        """Reload the configuration when its file changes (see the module's docstring)."""
        from crmsync.config.edit import reload
        from crmsync.errors import ConfigError

        path = self.rt.config.path
        if path is None:
            return

        def signature() -> tuple[int, int] | None:
            try:
                stat = path.stat()
            except OSError:
                return None
            return stat.st_mtime_ns, stat.st_size

        def watch() -> None:
            seen = signature()
            while not self.stopping.wait(interval):
                now = signature()
                if now == seen or now is None:
                    continue
                seen = now
                try:
                    changed = self.rt.reload(reload(self.rt.config))
                except ConfigError as exc:
                    log.warning("%s changed but is invalid; keeping the running configuration: %s", path, exc)
                    continue
                except Exception:
                    log.exception("reloading %s failed; keeping the running configuration", path)
                    continue
                log.info("configuration reloaded from %s (connections changed: %s)", path, changed or "none")

        thread = threading.Thread(target=watch, name="config-watch", daemon=True)
        thread.start()
        self._threads.append(thread)

    def start_watchdog(self, interval: float = 15.0) -> None:
        """Raise and clear the alerts that no single change raises: queue lag, dead letters dealt with."""

        def watch() -> None:
            while not self.stopping.wait(interval):
                try:
                    lag = self.rt.config.alerts.queue_lag_seconds
                    check_queue_lag(self.rt.alerter, self.rt.queue.stats(), lag)
                    check_dead_letters(self.rt.alerter)
                except Exception:  # the store may be down: try again next time
                    log.exception("alert checks failed")

        thread = threading.Thread(target=watch, name="watchdog", daemon=True)
        thread.start()
        self._threads.append(thread)

    def start_heartbeat(self, interval: float = processes.BEAT_SECONDS) -> None:
        """Keep this process's row of ``processes`` fresh while it runs (removed when it stops)."""
        started = utcnow()
        details: dict[str, object] = {"web": self.web, "workers": self.workers, "scheduler": self.scheduler}

        def beat() -> None:
            while True:
                if self.web and self.bound_port is not None:
                    details["port"] = self.bound_port
                try:
                    processes.beat(self.rt.store, self.id, self.role, started, details)
                except Exception:  # the store may be away for a moment: beat again next time
                    log.warning("could not write the heartbeat of %s", self.id, exc_info=True)
                if self.stopping.wait(interval):
                    break

        thread = threading.Thread(target=beat, name="heartbeat", daemon=True)
        thread.start()
        self._heartbeat = thread

    def bind(self) -> None:
        """Open the listening socket now (so a port of 0 is known before serving)."""
        from crmsync.web.app import create_app
        from crmsync.web.timeouts import BodyTimeout, header_timeout_protocol

        self._sock = listening_socket(self.host, self.port)
        web = self.rt.config.web
        config = uvicorn.Config(
            BodyTimeout(create_app(self.rt), web.body_timeout_seconds),  # slow bodies: 408
            http=header_timeout_protocol(web.header_timeout_seconds),  # slow headers: closed
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=10,
        )
        self._server = _Server(config)

    def run(self) -> None:
        """Serve until SIGTERM/SIGINT (blocking). Workers finish their current batch, then it returns."""
        self._handle_signals()
        self.start_heartbeat()
        self.start_config_watch()
        self.start_workers()
        if self.workers:
            self.start_pollers(self.poll_interval)
            self.start_reconcilers(self.reconcile_interval)
            self.start_watchdog(self.watchdog_interval)
        if self.scheduler:
            self.start_scheduler()
        try:
            if self.web:
                if self._server is None:
                    self.bind()
                assert self._server is not None and self._sock is not None
                log.info("serving on http://%s:%s", self.host, self.bound_port)
                if threading.current_thread() is threading.main_thread():  # a process of its own
                    # what it built to start (modules, config, the app) lives as long as it does:
                    # kept out of the garbage collector's full passes, which would walk it again
                    # and again while requests wait (long pauses under load)
                    gc.collect()
                    gc.freeze()
                self._serving = True
                try:
                    self._server.run(sockets=[self._sock])
                finally:
                    self._sock.close()
            else:
                self.stopping.wait()
        finally:
            self.stop()

    def _handle_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # embedded (tests, the demo): whoever started it calls stop()

        def _stop(signum: int, frame: FrameType | None) -> None:
            log.info("received %s: finishing the work in hand", signal.Signals(signum).name)
            self.stopping.set()
            if self._server is not None:
                self._server.should_exit = True

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)

    def stop(self, timeout: float = 60.0) -> None:
        self.stopping.set()
        if self._server is not None:
            self._server.should_exit = True
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout)
            self._heartbeat = None
            try:
                processes.gone(self.rt.store, self.id)
            except Exception:  # the store is away: the row is dropped once it stops beating
                log.warning("could not remove the heartbeat of %s", self.id, exc_info=True)
        if self._sock is not None and not self._serving:
            self._sock.close()  # bound but never served
