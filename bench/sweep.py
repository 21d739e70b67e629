"""The cost of the lookback sweep: extra Salesforce calls per hour at the default settings.

The poller runs against the Salesforce sandbox on a fake clock (the org's clock, moved by
``advance_clock``): one simulated hour of polls every 2 s (the process's poll interval), with a
light stream of edits, once with the sweep at the defaults of the connection settings
(``lookback_seconds: 300``, ``sweep_every_seconds: 60``) and once without. The difference in
Composite calls (each one API call) is the sweep's cost. Salesforce takes 5 query subrequests
per Composite call, so the sweep's queries ride free while the objects' fast queries leave room.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path
from typing import Any

from crmsync.config.models import SalesforceConnection
from crmsync.connectors.salesforce import SalesforceConnector, SalesforceSettings
from crmsync.connectors.salesforce.poller import PollTarget, SalesforcePoller, sweep_settings
from crmsync.engine.poller import QueueSink
from crmsync.engine.queue import ChangeQueue
from crmsync.sandbox.runner import serve
from crmsync.sandbox.salesforce import SalesforceEmulator
from crmsync.sandbox.tls import ensure_materials
from crmsync.store.db import Store

POLL_SECONDS = 2
OBJECTS = (1, 3, 5, 10)


def _settings(emu: SalesforceEmulator) -> SalesforceSettings:
    env = emu.credentials()
    return SalesforceSettings(
        auth="jwt",
        login_url=env["SALESFORCE_LOGIN_URL"],
        client_id=env["SALESFORCE_CLIENT_ID"],
        username=env["SALESFORCE_USERNAME"],
        private_key_file=Path(env["SALESFORCE_JWT_KEY_FILE"]),
        ca_file=Path(env["SALESFORCE_CA_FILE"]),
        timeout_seconds=10.0,
        client_name="crmsync-bench",
    )


def _calls(emu: SalesforceEmulator, workdir: Path, objects: int, seconds: int, sweep: bool) -> int:
    emu.reset()
    with emu.lock:
        emu.clock_offset = 0.0  # the JWT login is checked against the org's clock
    names = [f"Bench{i:02d}__c" for i in range(objects)]
    for name in names:
        emu.define_object(name, {"label": name, "fields": {"Code__c": {"type": "string"}}})
    emu.advance_clock(2)
    store = Store(f"sqlite:///{workdir / f'sweep-{objects}-{sweep}.db'}")
    store.upgrade()
    connector = SalesforceConnector("sf", settings=_settings(emu))
    defaults = SalesforceConnection(type="salesforce")
    options = sweep_settings(defaults.lookback_seconds if sweep else 0, defaults.sweep_every_seconds)
    poller = SalesforcePoller(
        connector,
        QueueSink(ChangeQueue(store)),
        store,
        [PollTarget(f"flow-{n}", "sf", n, ("Code__c",)) for n in names],
        clock=lambda: dt.datetime.now(dt.UTC) + dt.timedelta(seconds=emu.clock_offset),
        **options,
    )
    calls = 0
    try:
        for tick in range(seconds // POLL_SECONDS):
            if tick % 5 == 0:  # an edit every 10 s, object after object
                emu.insert(names[tick // 5 % objects], {"Code__c": f"edit {tick}"})
            calls += poller.poll_once().calls
            emu.advance_clock(POLL_SECONDS)
    finally:
        connector.close()
        store.dispose()
    return calls


def run(quick: bool = False) -> dict[str, Any]:
    seconds = 600 if quick else 3600
    per_hour = 3600 / seconds
    out: dict[str, Any] = {
        "poll_interval_s": POLL_SECONDS,
        "lookback_seconds": SalesforceConnection(type="salesforce").lookback_seconds,
        "sweep_every_seconds": SalesforceConnection(type="salesforce").sweep_every_seconds,
        "simulated_seconds": seconds,
        "by_objects": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        materials = ensure_materials(workdir / "keys")
        emu = SalesforceEmulator(materials=materials, daily_api_limit=1_000_000)
        with serve(emu, materials=materials):
            for objects in OBJECTS:
                without = _calls(emu, workdir, objects, seconds, sweep=False)
                with_sweep = _calls(emu, workdir, objects, seconds, sweep=True)
                out["by_objects"][str(objects)] = {
                    "calls_per_hour_without_sweep": round(without * per_hour),
                    "calls_per_hour_with_sweep": round(with_sweep * per_hour),
                    "extra_calls_per_hour": round((with_sweep - without) * per_hour),
                }
    return out
