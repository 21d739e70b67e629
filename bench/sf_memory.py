"""Memory the Salesforce emulator needs for N records: ``python -m bench.sf_memory N``."""

from __future__ import annotations

import gc
import json
import sys
import time

from crmsync.sandbox.salesforce import SalesforceEmulator


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def main() -> None:
    count = int(sys.argv[1])
    emulator = SalesforceEmulator()
    emulator.seed("demo")
    contracts = [c["Id"] for c in emulator.records("Contract")]
    gc.collect()
    before = rss_mb()
    started = time.perf_counter()
    for i in range(count):
        emulator.insert(
            "Usage__c",
            {
                "Ad_Id__c": f"m-{i}",
                "Contract__c": contracts[i % len(contracts)],
                "Product__c": "S",
                "Quantity__c": 1,
            },
        )
    seconds = time.perf_counter() - started
    gc.collect()
    after = rss_mb()
    print(
        json.dumps(
            {
                "records": count,
                "rss_before_mb": round(before, 1),
                "rss_after_mb": round(after, 1),
                "added_mb": round(after - before, 1),
                "insert_seconds": round(seconds, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
