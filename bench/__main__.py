"""``make bench``: run the benchmarks, write bench/results.json, print a summary.

Each figure stands beside a baseline measured in the same run (a bare ASGI endpoint for ingest;
the emulators themselves for end-to-end and drain), because these machines are shared and noisy.
``python -m bench --only ingest,drain`` runs some; ``--quick`` shortens each measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from bench import drain, e2e, ingest, report_import, sandbox_bench, scale, sweep, w1, w2

SECTIONS = {
    "sandbox": sandbox_bench.run,
    "ingest": ingest.run,
    "e2e": e2e.run,
    "drain": drain.run,
    "scale": scale.run,
    "w1": w1.run,
    "w2": w2.run,
    "sweep": sweep.run,
    "report_import": report_import.run,
}
OUT = Path(__file__).resolve().parent / "results.json"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated: " + ", ".join(SECTIONS))
    parser.add_argument("--quick", action="store_true", help="shorter measurements")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown sections {unknown}; valid: {', '.join(SECTIONS)}")
    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if args.out.exists():  # the chaos suite's figures (make chaos) are not measured here: kept
        kept = json.loads(args.out.read_text()).get("chaos")
        if kept:
            results["chaos"] = kept
    for name in chosen:
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        results[name] = SECTIONS[name](quick=args.quick)
        print(json.dumps(results[name], indent=2), flush=True)
        print(f"   ({time.perf_counter() - started:.0f} s)", flush=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()
