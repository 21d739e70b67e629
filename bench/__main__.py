"""``make bench``: run the benchmarks, write bench/results.json, print a summary.

Each figure stands beside a baseline measured in the same run (a bare ASGI endpoint for ingest;
the emulators themselves for end-to-end and drain), because these machines are shared and noisy.
``python -m bench --only ingest,drain`` runs some, and keeps the figures of the sections it did not
run (``runs`` says when, with which command and at what load average, each section was measured);
``--quick`` shortens each measurement.
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
    if args.out.exists():  # the sections not run now (and make chaos's figures) keep their figures
        before = json.loads(args.out.read_text())
        results.update({k: v for k, v in before.items() if k not in (*chosen, "machine", "started", "runs")})
        if "started" in before:  # when each kept section was measured
            kept_runs = {
                k: {"started": before["started"]} for k in before if k in SECTIONS and k not in chosen
            }
            results["runs"] = {**kept_runs, **before.get("runs", {})}
    runs: dict[str, Any] = results.setdefault("runs", {})
    for name in list(runs):
        if name in chosen or name not in results:
            del runs[name]
    command = "python -m bench --only " + ",".join(chosen) + (" --quick" if args.quick else "")
    for name in chosen:
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        runs[name] = {
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "command": command,
            "load_average_before": [round(x, 2) for x in os.getloadavg()],
        }
        results[name] = SECTIONS[name](quick=args.quick)
        runs[name]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
        print(json.dumps(results[name], indent=2), flush=True)
        print(f"   ({time.perf_counter() - started:.0f} s)", flush=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()
