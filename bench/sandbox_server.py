"""The sandbox in its own process for benchmarks: ``python -m bench.sandbox_server DIR SEED``.

Vendor rate limits are lifted (a benchmark measures capacity, not the limits); the credentials
and a few ids the benchmarks need are written to DIR/ready.json once the emulators listen.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from crmsync.sandbox.runner import Sandbox


def main() -> None:
    directory = Path(sys.argv[1])
    seed = sys.argv[2] if len(sys.argv) > 2 else "demo"
    box = Sandbox(
        ports={"salesforce": 0, "trello": 0, "monday": 0},
        seed=seed,
        directory=directory / "keys",
        options={
            "salesforce": {"daily_api_limit": 10**9},
            "trello": {"token_limit": 10**9, "key_limit": 10**9},
            "monday": {"complexity_per_minute": 10**9},
        },
    )
    box.start()
    sf: Any = box.salesforce
    trello: Any = box.trello
    monday: Any = box.monday
    info = {
        "env": box.env(),
        "urls": {name: server.url for name, server in box.servers.items()},
        "contracts": [c["Id"] for c in sf.records("Contract") if c.get("Status") == "Activated"],
        "trello_board": trello.board_id("Delivery"),
        "monday_board": monday.board_id("Leads"),
    }
    (directory / "ready.json").write_text(json.dumps(info))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    box.stop()


if __name__ == "__main__":
    main()
