"""W1, Salesforce ⇄ Trello with a reporting database: the Trello budget a backfill uses, and
webhook → reporting row latency.

- **backfill**: "[Delivery]" Tasks inserted into the Salesforce sandbox while ``crmsync run`` (the
  sales-to-trello recipe) is up become cards; the Trello emulator enforces Trello's limits (100
  requests per token per window, 300 per key) and counts every request and every 429. Trello's window
  is 10 s; to keep the section short, the emulator's window *and* the connector's are shortened by
  the same factor (``window_seconds``, and ``rate_margin_seconds`` with them), so the figure is the
  share of the configured ceiling (100 per window) used while the backfill runs. The baseline is the
  ceiling itself, and what a client without a governor gets from the same emulator (requests
  answered per window, and 429s).
- **latency**: board actions (comments and list moves) made at 20 per second in the emulator, timed
  from the action to its ``crm_events`` row's ``recorded_at`` (the reporting database, SQLite);
  beside it, the bare acknowledgement time of crmsync's webhook route: the same deliveries sent to
  it again at the same rate (signature checked, then de-duplicated), timed to the answer.

The emulators run in this process (their Python APIs make the Tasks and the actions, and count the
requests); crmsync runs in its own process.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from bench.common import ROOT, crmsync, free_port, summary_ms, wait_for
from crmsync.sandbox.runner import Sandbox

RECIPE = ROOT / "examples" / "sales-to-trello" / "crmsync.yaml"
TRELLO_WINDOW = 10.0  # Trello's real window (seconds)
SCALE = 5.0  # the window is shortened by this factor for the benchmark
TOKEN_LIMIT = 100
ACTION_RATE = 20.0  # board actions per second


def run(quick: bool = False) -> dict[str, Any]:
    cards = 500 if quick else 2000
    window = TRELLO_WINDOW / SCALE
    directory = Path(tempfile.mkdtemp(prefix="crmsync-bench-w1-"))
    box = Sandbox(
        ports={"salesforce": 0, "trello": 0, "monday": 0},
        seed="demo",
        directory=directory / "keys",
        options={
            "salesforce": {"daily_api_limit": 10**9},
            "trello": {"window_seconds": window, "token_limit": TOKEN_LIMIT, "key_limit": 3 * TOKEN_LIMIT},
        },
    )
    box.start()
    try:
        config = write_config(directory, box.env(), window)
        crmsync("db", "upgrade", "-c", str(config))
        baseline = ungoverned(box.trello, window)
        with crmsync_run(config) as port:
            crmsync("webhooks", "ensure", "--url", f"http://127.0.0.1:{port}", "-c", str(config))
            backfill_figures = backfill(box, cards, window)
            settle(box, directory / "crmsync.db")  # the backfill's board actions written first
            latency_figures = latency(box, directory / "reporting.db", port, quick)
    finally:
        box.stop()
    return {
        "backfill": {**backfill_figures, "baseline_without_governor": baseline},
        "latency": latency_figures,
    }


@contextmanager
def crmsync_run(config: Path) -> Iterator[int]:
    """``crmsync run`` in its own process, its log in a file beside the configuration (it logs a
    line per card: a pipe nobody reads would fill and stop it)."""
    port = free_port()
    log = (config.parent / "crmsync.log").open("wb")
    args = [sys.executable, "-m", "crmsync", "run", "-c", str(config), "--port", str(port)]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: _answers(port) or proc.poll() is not None, 60, "crmsync run")
        if proc.poll() is not None:
            raise RuntimeError((config.parent / "crmsync.log").read_text())
        yield port
    finally:
        proc.terminate()
        proc.wait(60)
        log.close()


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def settle(box: Sandbox, store: Path) -> None:
    """Deliveries done and crmsync's queue empty."""
    trello: Any = box.trello
    engine = sa.create_engine(f"sqlite:///{store}")

    def empty() -> bool:
        with engine.connect() as conn:
            query = "SELECT COUNT(*) FROM changes WHERE state IN ('pending', 'leased', 'retrying')"
            return int(conn.execute(sa.text(query)).scalar_one()) == 0

    try:
        wait_for(lambda: bool(trello.dispatcher.wait_idle(5)) and empty(), 600, "queue settled")
    finally:
        engine.dispose()


def write_config(directory: Path, env: dict[str, str], window: float) -> Path:
    text = RECIPE.read_text().replace("sqlite:///crmsync.db", f"sqlite:///{directory / 'crmsync.db'}")
    anchor = "    default_list: Backlog                        # where new cards go\n"
    assert anchor in text, "the recipe's Trello connection changed: update bench/w1.py"
    margin = 0.3 / SCALE  # the connector's default margin, shortened with the window
    text = text.replace(anchor, f"{anchor}    window_seconds: {window}\n    rate_margin_seconds: {margin}\n")
    path = directory / "crmsync.yaml"
    path.write_text(text)
    env = {**env, "REPORTING_DB_URL": f"sqlite:///{directory / 'reporting.db'}"}
    (directory / ".env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    return path


class Sampler:
    """Samples the emulator's call log: (time, requests answered, 429s) every 100 ms."""

    def __init__(self, trello: Any) -> None:
        self.trello = trello
        self.samples: list[tuple[float, int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            calls = self.trello.calls.calls()
            refused = sum(1 for c in calls if c.status == 429)
            self.samples.append((time.monotonic(), len(calls) - refused, refused))

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def ungoverned(trello: Any, window: float) -> dict[str, Any]:
    """A client without a governor: GETs back to back for three windows, same token."""
    trello.calls.clear()
    url = f"{trello.credentials()['TRELLO_API_URL']}/members/me/boards"
    creds = trello.credentials()
    auth = f'oauth_consumer_key="{creds["TRELLO_KEY"]}", oauth_token="{creds["TRELLO_TOKEN"]}"'
    headers = {"Authorization": f"OAuth {auth}"}
    answered = refused = 0
    started = time.monotonic()
    with httpx.Client(headers=headers, timeout=10) as client:
        while time.monotonic() - started < 3 * window:
            status = client.get(url, params={"fields": "name"}).status_code
            answered += status < 400
            refused += status == 429
    seconds = time.monotonic() - started
    trello.limiter.reset()
    trello.calls.clear()
    return {
        "seconds": round(seconds, 2),
        "answered_per_window": round(answered / (seconds / window), 1),
        "requests_429": refused,
        "attempted_per_window": round((answered + refused) / (seconds / window), 1),
    }


def backfill(box: Sandbox, cards: int, window: float) -> dict[str, Any]:
    sf: Any = box.salesforce
    trello: Any = box.trello
    board = trello.board_id("Delivery")
    opportunities = [o["Id"] for o in sf.records("Opportunity")]
    before = len(trello.cards(board))
    trello.calls.clear()
    with Sampler(trello) as sampler:
        for n in range(cards):
            sf.insert(
                "Task",
                {"Subject": f"[Delivery] bench {n:05d}", "WhatId": opportunities[n % len(opportunities)]},
            )

        def done() -> bool:
            made = [c for c in trello.cards(board) if len(c.get("customFieldItems") or []) >= 2]
            return len(made) - before >= cards

        deadline = time.monotonic() + 1800
        while not done():  # rendering the board takes the emulator's lock: look once a second
            if time.monotonic() > deadline:
                raise RuntimeError("the backfill did not finish within 30 minutes")
            time.sleep(1.0)
    calls = trello.calls.calls()
    refused = sum(1 for c in calls if c.status == 429)
    moving = [s for s, prev in zip(sampler.samples[1:], sampler.samples, strict=False) if s[1] > prev[1]]
    first, last = moving[0][0], moving[-1][0]
    span = last - first
    answered = moving[-1][1] - moving[0][1]
    by_endpoint: dict[str, int] = {}
    for c in calls:
        key = f"{c.method} {_shape(c.path)}"
        by_endpoint[key] = by_endpoint.get(key, 0) + 1
    per_window = answered / (span / window)
    return {
        "cards": cards,
        "window_seconds": window,
        "scale": SCALE,
        "token_limit": TOKEN_LIMIT,
        "seconds": round(span, 1),
        "requests": len(calls) - refused,
        "requests_429": refused,
        "requests_per_window": round(per_window, 1),
        "budget_used_percent": round(100 * per_window / TOKEN_LIMIT, 1),
        "calls_per_card": round((len(calls) - refused) / cards, 2),
        "seconds_at_real_window": round(span * SCALE),
        "calls_by_endpoint": dict(sorted(by_endpoint.items(), key=lambda kv: -kv[1])),
    }


def _shape(path: str) -> str:
    parts = path.split("?")[0].split("/")
    return "/".join(
        "{id}" if len(p) == 24 and all(ch in "0123456789abcdef" for ch in p) else p for p in parts
    )


def latency(box: Sandbox, reporting: Path, port: int, quick: bool) -> dict[str, Any]:
    trello: Any = box.trello
    board = trello.board_id("Delivery")
    lists = [trello.list_id(board, name) for name in ("Backlog", "In progress")]
    on_board = trello.cards(board)[:50]
    cards = [c["id"] for c in on_board]
    where = {c["id"]: c["idList"] for c in on_board}  # each move goes to the other list: a real action
    trello.dispatcher.wait_idle(60)
    first_delivery = len(trello.dispatcher.sent)
    seconds = 5.0 if quick else 10.0
    total = int(ACTION_RATE * seconds)
    made: dict[str, float] = {}
    start = time.perf_counter()
    for i in range(total):
        delay = start + i / ACTION_RATE - time.perf_counter()
        if delay > 0:
            time.sleep(delay)  # an open-loop schedule: each action at its own time
        card = cards[i % len(cards)]
        at = time.time()
        if i % 2:
            action = trello.comment(card, f"bench note {i}")
        else:
            where[card] = lists[1] if where[card] == lists[0] else lists[0]
            trello.move_card(card, where[card])
            action = trello.actions(board, filter="updateCard", limit=1)[0]
            assert (action["data"].get("card") or {}).get("id") == card, "the move made no action"
        made[str(action["id"])] = at
    engine = sa.create_engine(f"sqlite:///{reporting}")
    try:
        recorded: dict[str, float] = {}

        def landed() -> bool:
            with engine.connect() as conn:
                rows = conn.execute(sa.text("SELECT delivery_id, recorded_at FROM crm_events")).all()
            for delivery, at in rows:
                if delivery in made and delivery not in recorded:
                    moment = at if not isinstance(at, str) else _parse(at)
                    recorded[delivery] = moment.replace(tzinfo=UTC).timestamp()
            return len(recorded) == len(made)

        wait_for(landed, 120, "history rows")
    finally:
        engine.dispose()
    latencies = [recorded[k] - made[k] for k in made]
    trello.dispatcher.wait_idle(60)
    deliveries = [d for d, status in trello.dispatcher.sent[first_delivery:] if status == 200][:total]
    acks = acknowledgements(deliveries, port)
    return {
        "actions": total,
        "rate_per_s": ACTION_RATE,
        "webhook_to_reporting_row": {**summary_ms(latencies), "max_ms": round(max(latencies) * 1000, 2)},
        "bare_acknowledgement": summary_ms(acks),
        "acknowledged": len(acks),
    }


def acknowledgements(deliveries: list[Any], port: int) -> list[float]:
    """The deliveries sent again to crmsync at the same rate: the time to its answer."""
    out: list[float] = []
    with httpx.Client(timeout=10) as client:
        start = time.perf_counter()
        for i, delivery in enumerate(deliveries):
            delay = start + i / ACTION_RATE - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            t0 = time.perf_counter()
            reply = client.post(delivery.url, content=delivery.body, headers=delivery.headers)
            if reply.status_code == 200:
                out.append(time.perf_counter() - t0)
    return out


def _parse(text: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(text)


def _row(*cells: Any) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def section(x: dict[str, Any]) -> list[str]:
    """The W1 tables of docs/performance.md."""
    b, base, lat = x["backfill"], x["backfill"]["baseline_without_governor"], x["latency"]
    hook, ack = lat["webhook_to_reporting_row"], lat["bare_acknowledgement"]
    calls = ", ".join(f"`{k}` {v}" for k, v in b["calls_by_endpoint"].items())
    return [
        f"### W1: Trello budget during a {b['cards']:,}-card backfill (target: ≥90 % of 100 requests "
        "per window, no 429)",
        "",
        f"Trello's window is 10 s; here the emulator's and the connector's are both "
        f"{b['window_seconds']:g} s (÷{b['scale']:g}, `rate_margin_seconds` with them), so the "
        f"backfill takes {b['seconds']:g} s instead of about {b['seconds_at_real_window']:,} s; the "
        "budget used is requests answered per window over the configured 100.",
        "",
        _row("client", "requests", "requests per window", "budget used", "429s", "calls per card"),
        _row("---", "---:", "---:", "---:", "---:", "---:"),
        _row("crmsync (governor, sales-to-trello recipe)", b["requests"], b["requests_per_window"],
             f"{b['budget_used_percent']} %", b["requests_429"], b["calls_per_card"]),
        _row("ceiling (the token's limit)", "", b["token_limit"], "100 %", 0, ""),
        _row(f"baseline: no governor, GETs back to back for {base['seconds']:g} s "
             f"({base['attempted_per_window']:g} sent per window)", "", base["answered_per_window"],
             f"{base['answered_per_window']:g} %", base["requests_429"], ""),
        "",
        f"Calls by endpoint: {calls}.",
        "",
        f"### W1: webhook → reporting row at {lat['rate_per_s']:g} board actions/s (target: p99 ≤500 ms)",
        "",
        _row("measured", "actions", "p50 ms", "p99 ms", "max ms"),
        _row("---", "---:", "---:", "---:", "---:"),
        _row("board action → its `crm_events` row (SQLite)", lat["actions"], hook["p50_ms"], hook["p99_ms"],
             hook["max_ms"]),
        _row("baseline: crmsync's acknowledgement of the same deliveries sent again", lat["acknowledged"],
             ack["p50_ms"], ack["p99_ms"], ""),
        "",
    ]  # fmt: skip
