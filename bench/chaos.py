"""The chaos suite's figures (``make chaos``; ``tests/chaos``) as a table of docs/performance.md.

The suite itself writes them to bench/results.json under ``chaos``, one entry per size it ran.
"""

from __future__ import annotations

from typing import Any


def section(c: dict[str, Any]) -> list[str]:
    out = [
        "### Chaos: W2 and W3 through killed processes, a stopped store and failing vendors",
        "",
        "`make chaos` (full) and `make test` (nightly): 2 `crmsync serve` behind a balancer and several "
        "`crmsync worker` on a PostgreSQL cluster of the test's own; the sandbox answers 10 % 5xx, "
        "5 % 429 and 5 % hangs, drops, duplicates and reorders webhook deliveries; sessions expire. "
        "Drain: from the faults' end until both sides hold every value sent (and the queue is empty).",
        "",
        "Only passing runs are recorded: lost, duplicated and wrong are 0 by the test's checks.",
        "",
        "| size | workflow | changes | workers | SIGKILLs | store down | retried submissions "
        "| lost, duplicated, wrong | dead letters (planted) | drain after the faults stop | seed |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for size in ("full", "nightly"):
        for workflow, x in sorted(c.get(size, {}).items(), reverse=True):
            changes = x["usage_changes_w3"] + x["edits_w2"]
            out.append(
                f"| {size} | {workflow.upper()} | {changes:,} | {x['worker_processes']} | {x['sigkills']} "
                f"| {x['postgresql_outage_seconds']} s | {x['submit_retries']} | 0, 0, 0 "
                f"| {x['dead_letters']} ({x['planted_dead_letters']}) "
                f"| {x['drain_seconds_after_faults_stop']} s | {x['seed']} |"
            )
    return [*out, ""]
