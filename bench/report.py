"""Render bench/results.json as the tables of docs/performance.md (between its bench markers).

``python -m bench.report`` rewrites the part of docs/performance.md between ``<!-- bench:start -->``
and ``<!-- bench:end -->``; ``make bench`` runs it after the benchmarks.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench import chaos, scale, w1

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results.json"
DOC = ROOT / "docs" / "performance.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def _row(*cells: Any) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def render(r: dict[str, Any]) -> str:
    out = [
        f"Measured {r.get('started', '?')} on {r['machine']['cpus']} CPUs, Python {r['machine']['python']}.",
        "",
    ]
    if "sandbox" in r:
        s = r["sandbox"]
        out += [
            "### Sandbox (target: each emulator ≥500 simple requests/s; 100,000 Salesforce records ≤500 MB)",
            "",
        ]
        out += [
            _row("emulator", "requests/s", "p50 ms", "p99 ms", "errors"),
            _row("---", "---:", "---:", "---:", "---:"),
        ]
        for name in ("salesforce", "trello", "monday"):
            x = s[name]
            out.append(_row(name, x["requests_per_s"], x["p50_ms"], x["p99_ms"], x["errors"]))
        m = s["salesforce_100k_records"]
        out += [
            "",
            f"100,000 `Usage__c` records in the Salesforce emulator: **{m['added_mb']} MB** "
            f"(process RSS {m['rss_before_mb']} → {m['rss_after_mb']} MB), "
            f"inserted in {m['insert_seconds']} s.",
            "",
        ]
    if "ingest" in r:
        out += [
            "### Ingest (targets: single records ≥40 % of the bare endpoint's rate; p99 ≤50 ms at "
            "200 entries/s; saturated: p99 ≤100 ms for what is accepted)",
            "",
            "`crmsync_*` use group commit (the default); `crmsync_*_per_request` one transaction per "
            "request (`web.group_commit: false`), in the same run. `of bare`: the share of the bare "
            "endpoint's rate measured at the start of the run / measured again just before this server "
            "(the machine's load changes) / of its CPU time per request, measured then too (the server's own "
            "CPU time over the requests wrk sent: what the share would be with a core to itself). "
            "`saturated`: wrk "
            "with one thread per connection, timing the accepted (2xx) requests only; the rest were "
            "answered 503 with `Retry-After`.",
            "",
        ]
        out += [
            _row(
                "server",
                "mode",
                "generator",
                "entries/s",
                "of bare",
                "CPU µs/request",
                "p50 ms",
                "p99 ms",
                "non-2xx",
            ),
            _row("---", "---", "---", "---:", "---:", "---:", "---:", "---:", "---:"),
        ]
        for server, modes in r["ingest"].items():
            for mode, x in modes.items():
                out.append(_ingest_row(server, mode, x))
        out.append("")
    if "e2e" in r:
        out += ["### End to end: ingest → Salesforce sandbox at 50 entries/s (target: p99 ≤500 ms)", ""]
        out += [
            _row(
                "worker poll interval", "entries", "p50 ms", "p99 ms", "Salesforce calls", "calls per entry"
            ),
            _row("---", "---:", "---:", "---:", "---:", "---:"),
        ]
        for x in r["e2e"].values():
            lat = x["ingest_to_salesforce"]
            out.append(
                _row(f"{x['worker_poll_interval_s']} s", x["entries"], lat["p50_ms"], lat["p99_ms"],
                     x["salesforce_calls"], x["salesforce_calls_per_entry"])
            )  # fmt: skip
        out.append("")
    if "drain" in r:
        d = r["drain"]
        out += ["### Draining a 10,000-entry backlog (target: ≥2,000 entries/s)", ""]
        out += [
            _row("entries", "seconds (with worker start)", "entries/s", "Salesforce calls", "per call"),
            _row("---:", "---:", "---:", "---:", "---:"),
            _row(d["entries"], d["seconds_including_worker_start"], d["entries_per_s"], d["salesforce_calls"],
                 d["entries_per_call"]),
        ]  # fmt: skip
        calls = ", ".join(f"`{k}` {v}" for k, v in d["salesforce_calls_by_endpoint"].items())
        out += ["", f"Calls by endpoint: {calls}.", ""]
    if "w1" in r:
        out += _measured(w1.section(r["w1"]), r, "w1")
    if "w2" in r:
        out += _w2(r["w2"])
    if "sweep" in r:
        out += _sweep(r["sweep"])
    if "report_import" in r:
        out += report_import_section(r["report_import"])
    if "scale" in r:
        out += scale.section(r["scale"])
    if "chaos" in r:
        out += chaos.section(r["chaos"])
    return "\n".join(out)


def _ingest_row(server: str, mode: str, x: dict[str, Any]) -> str:
    def pct(share: float | None) -> str:
        return f"{share:.0%}" if share is not None else "n/a"

    if "accepted_per_s" in x:  # wrk under saturation: the accepted requests' rate and latency
        return _row(
            server,
            mode,
            x["generator"],
            x["accepted_per_s"],
            "",
            "",
            x["accepted_p50_ms"],
            x["accepted_p99_ms"],
            f"{x['requests'] - x['statuses'].get('202', 0)} ({x['answered_503']} were 503)",
        )
    shares = [x.get(k) for k in ("share_of_bare", "share_of_bare_same_moment", "cpu_share_of_bare")]
    return _row(
        server,
        mode,
        x.get("generator", "python"),
        x["entries_per_s"],
        " / ".join(pct(v) for v in shares) if any(v is not None for v in shares) else "",
        x.get("server_cpu_us_per_request", ""),
        x["p50_ms"],
        x["p99_ms"],
        x.get("non_2xx", x.get("errors", 0)),
    )


def _measured(lines: list[str], r: dict[str, Any], name: str) -> list[str]:
    """A section's tables with when, by which command and at what load average it was measured,
    after its heading, when ``runs`` says so (``python -m bench --only`` keeps other sections)."""
    run = r.get("runs", {}).get(name)
    if not run or "command" not in run:
        return lines
    load = run.get("load_average_before") or []
    after = run.get("load_average_after") or []
    said = f"(Measured {run['started']} on {r['machine']['cpus']} CPUs, `{run['command']}`"
    if load and after:
        said += f"; load average {load[0]:g} before and {after[0]:g} after, the machine being shared"
    return [*lines[:2], said + ".)", "", *lines[2:]]


def report_import_section(x: dict[str, Any]) -> list[str]:
    c, again, base = x["crmsync"], x["crmsync_second_run"], x["baseline_csv_executemany"]
    return [
        f"### Report import: a {x['rows']:,}-row CSV ({x['csv_mb']:g} MB) into SQLite "
        "(targets: ≤60 s, ≤300 MB peak RSS)",
        "",
        _row("loader", "seconds", "rows/s", "peak RSS MB"),
        _row("---", "---:", "---:", "---:"),
        _row("`salesforce-report-import` (source csv), empty table", c["seconds"], f"{c['rows_per_s']:,}",
             c["peak_rss_mb"]),
        _row("the same again (every row unchanged, missing rows checked)", again["seconds"], "",
             again["peak_rss_mb"]),
        _row("baseline: `csv` + `executemany`, one transaction, no checks", base["seconds"],
             f"{base['rows_per_s']:,}", base["peak_rss_mb"]),
        "",
    ]  # fmt: skip


def _sweep(w: dict[str, Any]) -> list[str]:
    out = [
        f"### Salesforce polling: the lookback sweep's cost (`lookback_seconds: {w['lookback_seconds']:g}`, "
        f"`sweep_every_seconds: {w['sweep_every_seconds']:g}`, polls every {w['poll_interval_s']:g} s; "
        f"{w['simulated_seconds']:,} s on the sandbox's clock)",
        "",
        _row("objects polled", "calls/hour without sweep", "calls/hour with sweep", "extra calls/hour"),
        _row("---:", "---:", "---:", "---:"),
    ]
    for objects, x in w["by_objects"].items():
        out.append(
            _row(objects, x["calls_per_hour_without_sweep"], x["calls_per_hour_with_sweep"],
                 x["extra_calls_per_hour"])
        )  # fmt: skip
    return [*out, ""]


def _w2(w: dict[str, Any]) -> list[str]:
    out: list[str] = []
    if "monday_to_salesforce" in w:
        x = w["monday_to_salesforce"]
        lat = x["webhook_to_salesforce"]
        out += [
            f"### W2: Monday webhook → Salesforce sandbox at {x['rate_events_per_s']:g} events/s "
            "(target: p99 ≤500 ms)",
            "",
            _row("changes", "p50 ms", "p99 ms", "Salesforce calls", "writes per change", "calls per change",
                 "monday calls"),
            _row("---:", "---:", "---:", "---:", "---:", "---:", "---:"),
            _row(x["changes"], lat["p50_ms"], lat["p99_ms"], x["salesforce_calls"],
                 x["salesforce_writes_per_change"], x["salesforce_calls_per_change"], x["monday_calls"]),
        ]  # fmt: skip
        calls = ", ".join(f"`{k}` {v}" for k, v in x["salesforce_calls_by_endpoint"].items())
        out += ["", f"Salesforce calls by endpoint: {calls}.", ""]
    if "salesforce_to_monday" in w:
        x = w["salesforce_to_monday"]
        lat = x["salesforce_to_monday"]
        out += [
            f"### W2: Salesforce change → Monday, polled every {x['poll_interval_s']:g} s",
            "",
            _row("changes", "edits/s", "p50 ms", "p99 ms", "Salesforce calls", "per change", "monday calls",
                 "per change"),
            _row("---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:"),
            _row(x["changes"], x["edits_per_s"], lat["p50_ms"], lat["p99_ms"], x["salesforce_calls"],
                 x["salesforce_calls_per_change"], x["monday_calls"], x["monday_calls_per_change"]),
        ]  # fmt: skip
        calls = ", ".join(f"`{k}` {v}" for k, v in x["salesforce_calls_by_endpoint"].items())
        out += ["", f"Salesforce calls by endpoint: {calls}.", ""]
    if "two_way_write_calls_per_change" in w:
        c = w["two_way_write_calls_per_change"]

        def ms(x: dict[str, Any], key: str) -> str:
            lat = x.get(key) or {}
            return f"{lat.get('p50_ms', '-')} / {lat.get('p99_ms', '-')}"

        out += [
            "### W2: two-way write calls per change, each record in its own call and batched",
            "",
            "The two measurements above, and a bulk edit (every qualified lead edited at once, three "
            "times, on the board and then in Salesforce), run twice in the same run: first with "
            "`worker.two_way_batch_size: 1` (each record in its own call, as two-way changes were written "
            "before batching), then as configured (the writes of one object a worker claimed together in "
            "one call). The tables above are the second run's.",
            "",
            _row("measurement", "write calls per change", "one record per call", "batched",
                 "p50 / p99 ms, one per call", "p50 / p99 ms, batched"),
            _row("---", "---", "---:", "---:", "---:", "---:"),
        ]  # fmt: skip
        rows = (
            ("Monday → Salesforce, edits at 20/s", "monday_to_salesforce", "sObject writes", ""),
            (
                "Monday → Salesforce, every lead edited at once",
                "monday_to_salesforce",
                "sObject writes",
                "bulk_",
            ),
            ("Salesforce → Monday, edits polled every 2 s", "salesforce_to_monday", "mutations", ""),
            ("Salesforce → Monday, every lead updated at once", "salesforce_to_monday", "mutations", "bulk_"),
        )
        for name, direction, what, bulk in rows:
            x = c[direction]
            if f"{bulk}batched" not in x:
                continue
            out.append(
                _row(name, what, x[f"{bulk}one_record_per_call"], x[f"{bulk}batched"],
                     "" if bulk else ms(x, "latency_one_record_per_call"),
                     "" if bulk else ms(x, "latency_batched"))
            )  # fmt: skip
        to_sf = c["monday_to_salesforce"]
        if "queued_to_applied_batched" in to_sf:
            out += [
                "",
                "Monday → Salesforce from the queue to the sync log's `applied` (crmsync's own part, "
                "without the webhook's delivery), p50 / p99 ms: one record per call "
                f"{ms(to_sf, 'queued_to_applied_one_record_per_call')}, batched "
                f"{ms(to_sf, 'queued_to_applied_batched')}.",
            ]
        out.append("")
    if "migration" in w:
        m = w["migration"]
        out += [
            f"### W2: `crmsync migrate`, {m['records']:,} Salesforce records → a Monday board",
            "",
            _row("records", "seconds (with process start)", "records/s", "records/s writing",
                 "GraphQL requests", "mutations", "items per mutation", "refused", "points per record",
                 "records/s in 10M/min"),
            _row(*(["---:"] * 10)),
            _row(m["records"], m["seconds_including_process_start"], m["records_per_s"],
                 m["records_per_s_writing"], m["graphql_requests"], m["graphql_mutations"],
                 m["items_per_mutation"], m["refused_requests"], m["points_per_record"],
                 m["records_per_s_in_real_budget"]),
        ]  # fmt: skip
        calls = ", ".join(f"`{k}` {v}" for k, v in m["salesforce_calls_by_endpoint"].items())
        out += ["", f"Salesforce calls by endpoint: {calls}.", ""]
    return out


def main() -> None:
    results = json.loads(RESULTS.read_text())
    doc = DOC.read_text()
    if START not in doc or END not in doc:
        sys.exit(f"{DOC} has no {START} … {END} markers")
    head, rest = doc.split(START, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{START}\n{render(results)}\n{END}{tail}")
    print(f"{DOC} updated from {RESULTS}")


if __name__ == "__main__":
    main()
