"""The dashboard in a real browser (Debian's chromium, driven by Playwright) against crmsync and the
Salesforce sandbox: log in, watch the overview move, replay a dead letter, trace a record, edit a
field map, and the refusals (a viewer's replay, no session, a bad CSRF token). Every page passes
axe-core's WCAG 2 A/AA rules without serious or critical violations. Each test leaves screenshots
in its tmp_path (docs/images/ holds a few of them)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright
from tests.e2e.conftest import Crmsync, wait_until

from crmsync.client import Client
from crmsync.config.secrets import SecretStore
from crmsync.sandbox.salesforce import SalesforceEmulator
from crmsync.scheduler import runs
from crmsync.store import users

CHROMIUM = "/usr/bin/chromium"
AXE = Path(__file__).parent / "vendor" / "axe-4.10.2.min.js"
ADMIN, VIEWER, PASSWORD = "ada", "vic", "correct horse battery"


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: make test installs it (apt-get install chromium)")
    with sync_playwright() as pw:
        found = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield found
        found.close()


@pytest.fixture
def crm(crmsync_factory: Callable[..., Crmsync]) -> Crmsync:
    started = crmsync_factory(workers=2)
    users.add_user(started.runtime.store, ADMIN, PASSWORD, "admin")
    users.add_user(started.runtime.store, VIEWER, PASSWORD, "viewer")
    return started


class LogIn(Protocol):
    """The ``log_in`` fixture: a new browser context's page, logged in as ``user`` on the overview."""

    def __call__(self, user: str = ADMIN) -> Page: ...


@pytest.fixture
def new_context(browser: Browser, crm: Crmsync) -> Iterator[Callable[[], BrowserContext]]:
    """``new_context()``: a browser context of its own (no session yet) on crm's dashboard; every
    context it made is closed after the test."""
    made: list[BrowserContext] = []

    def new() -> BrowserContext:
        # axe is injected as an inline script: the page's Content-Security-Policy would refuse it
        context = browser.new_context(
            base_url=crm.base_url, bypass_csp=True, viewport={"width": 1280, "height": 900}
        )
        made.append(context)
        return context

    yield new
    for context in made:
        context.close()


@pytest.fixture
def log_in(new_context: Callable[[], BrowserContext]) -> LogIn:
    def as_user(user: str = ADMIN) -> Page:
        page = new_context().new_page()
        page.goto("/")
        expect(page).to_have_url(re.compile(r"/login\?next=/$"))
        page.get_by_label("User name").fill(user)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("heading", name="Overview")).to_be_visible()
        return page

    return as_user


def accessible(page: Page) -> None:
    """No serious or critical WCAG 2 A/AA violation on the page, as axe-core finds them."""
    page.add_script_tag(path=str(AXE))
    found = page.evaluate("axe.run(document, {runOnly: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']})")
    bad = [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in found["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert not bad, f"{page.url}: " + "; ".join(bad)


def shot(page: Page, folder: Path, name: str) -> None:
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def open_contracts(salesforce: SalesforceEmulator) -> list[str]:
    return [str(c["Id"]) for c in salesforce.records("Contract") if c.get("Status") != "Fulfilled"]


def usage(salesforce: SalesforceEmulator, key: str) -> dict[str, Any] | None:
    return next((r for r in salesforce.records("Usage__c") if r.get("Ad_Id__c") == key), None)


def send_usage(
    crm: Crmsync, salesforce: SalesforceEmulator, key: str, product: str, quantity: int = 1
) -> None:
    """One usage entry for the first open contract, sent to crmsync's API."""
    with Client(crm.base_url, crm.token) as client:
        client.upsert(
            "usage",
            key,
            {"contract_id": open_contracts(salesforce)[0], "product": product, "quantity": quantity},
        )


def dead_letter(crm: Crmsync, salesforce: SalesforceEmulator, key: str = "ad-too-long") -> None:
    """A usage entry Salesforce refuses for good: its product is longer than the field."""
    send_usage(crm, salesforce, key, "x" * 100)
    wait_until(lambda: crm.runtime.queue.stats().dead == 1)


def test_log_in_and_see_the_overview_update_while_the_sandbox_flows(
    log_in: LogIn,
    crm: Crmsync,
    salesforce: SalesforceEmulator,
    tmp_path: Path,
) -> None:
    page = log_in()
    applied = page.locator("tr[data-flow=usage] .applied-hour")
    expect(applied).to_have_text("0")
    page.evaluate("window.sameDocument = true")
    contract = open_contracts(salesforce)[0]
    with Client(crm.base_url, crm.token) as client:
        for i in range(5):
            client.upsert(
                "usage", f"ad-live-{i}", {"contract_id": contract, "product": "small", "quantity": i + 1}
            )
    expect(applied).to_have_text("5", timeout=20_000)  # polled in place, no reload
    assert page.evaluate("window.sameDocument") is True
    accessible(page)
    shot(page, tmp_path, "overview")

    page.get_by_role("link", name="Charts").click()
    page.wait_for_function("window.Chart && Chart.getChart('throughput') && Chart.getChart('depth')")
    total = page.evaluate("Chart.getChart('throughput').data.datasets[0].data.reduce((a, b) => a + b, 0)")
    assert total == 5
    accessible(page)
    shot(page, tmp_path, "charts")


def test_replay_a_dead_letter_and_see_it_land(
    log_in: LogIn,
    crm: Crmsync,
    salesforce: SalesforceEmulator,
    tmp_path: Path,
) -> None:
    dead_letter(crm, salesforce)
    page = log_in()
    page.get_by_role("link", name="Dead letters").first.click()
    row = page.locator("tr[data-letter]")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("STRING_TOO_LONG")
    accessible(page)
    shot(page, tmp_path, "dead-letters")
    row.get_by_role("link").first.click()
    expect(page.get_by_role("heading", name=re.compile("Dead letter"))).to_be_visible()
    expect(page.locator("dl.details")).to_contain_text("data value too large")
    accessible(page)
    page.go_back()

    # an administrator widens the field in Salesforce; the letter is replayed from the dashboard
    salesforce.org.schema.get("Usage__c").fields["Product__c"].length = 255  # type: ignore[union-attr]
    page.get_by_label("select dead letter").first.check()
    page.locator("#replay").click()
    expect(page.get_by_role("status")).to_have_text("replayed 1 of 1")
    wait_until(lambda: usage(salesforce, "ad-too-long") is not None)
    expect(page.locator("tr[data-letter] .state")).to_have_text("replayed")
    shot(page, tmp_path, "dead-letters-replayed")


def test_find_a_record_by_its_salesforce_id(
    log_in: LogIn,
    crm: Crmsync,
    salesforce: SalesforceEmulator,
    tmp_path: Path,
) -> None:
    send_usage(crm, salesforce, "ad-traced", "big", 2)
    wait_until(lambda: usage(salesforce, "ad-traced") is not None)
    record = usage(salesforce, "ad-traced")
    assert record is not None
    page = log_in()
    page.get_by_role("link", name="Trace").click()
    page.get_by_label(re.compile("Any id")).fill(str(record["Id"]))
    page.get_by_role("button", name="Find").click()
    expect(page.locator("#links")).to_contain_text("service_app ad-traced")
    expect(page.locator("#links")).to_contain_text(f"salesforce {record['Id']}")
    expect(page.locator("#history tbody tr").first).to_contain_text("applied")
    accessible(page)
    shot(page, tmp_path, "trace")


def test_edit_a_field_map_a_bad_edit_refused_with_its_line_a_good_one_used_next(
    log_in: LogIn,
    crm: Crmsync,
    salesforce: SalesforceEmulator,
    tmp_path: Path,
) -> None:
    page = log_in()
    page.get_by_role("link", name="Settings").click()
    expect(page.locator("#effective")).to_contain_text("private_key_file")
    accessible(page)
    shot(page, tmp_path, "settings")
    page.get_by_role("link", name="usage").click()
    product = page.get_by_label("transform of row 3")
    product.fill("upper_case")
    page.get_by_role("button", name="Save").click()
    problems = page.locator("#problems")
    line = next(
        n for n, text in enumerate(crm.config_path.read_text().splitlines(), 1) if "source: product" in text
    )
    expect(problems).to_contain_text(
        f"crmsync.yaml:{line}: flows.usage.fields.2.transform: unknown transform 'upper_case'"
    )
    assert "upper_case" not in crm.config_path.read_text()
    accessible(page)
    shot(page, tmp_path, "settings-refused")

    page.get_by_label("transform of row 3").fill("upper")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("flow usage saved")
    assert "- {source: product, target: Product__c, transform: upper}" in crm.config_path.read_text()
    send_usage(crm, salesforce, "ad-after-edit", "medium")
    wait_until(lambda: usage(salesforce, "ad-after-edit") is not None)
    assert usage(salesforce, "ad-after-edit")["Product__c"] == "MEDIUM"  # type: ignore[index]
    shot(page, tmp_path, "settings-saved")


def test_credentials_saved_from_the_settings_go_to_the_secret_store_and_are_never_shown(
    log_in: LogIn, crm: Crmsync, tmp_path: Path
) -> None:
    secret = "typed-in-the-browser-9f3a"
    page = log_in()
    page.get_by_role("link", name="Settings").click()
    page.get_by_role("link", name="salesforce").click()
    page.get_by_label("client_secret").fill(secret)
    accessible(page)
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("credentials of salesforce saved to the secret store")
    text = crm.config_path.read_text()
    assert "client_secret: ${secret:SALESFORCE_CLIENT_SECRET}" in text and secret not in text
    store = SecretStore(crm.config_path)
    assert secret.encode() not in store.path.read_bytes()  # encrypted at rest
    assert store.read() == {"SALESFORCE_CLIENT_SECRET": secret}
    wait_until(lambda: crm.runtime.config.connections["salesforce"].client_secret is not None)  # type: ignore[union-attr]
    expect(page.locator("#effective")).to_contain_text("client_secret: '********'")
    for path in ("/settings", "/settings/connections/salesforce", "/api/v1/dashboard/settings"):
        page.goto(path)
        assert secret not in page.content(), path
    shot(page, tmp_path, "settings-credentials")


def test_a_viewer_cannot_replay(
    log_in: LogIn,
    crm: Crmsync,
    salesforce: SalesforceEmulator,
    tmp_path: Path,
) -> None:
    dead_letter(crm, salesforce)
    page = log_in(VIEWER)
    page.goto("/dead-letters")
    expect(page.locator("tr[data-letter]")).to_have_count(1)
    expect(page.locator("#replay")).to_have_count(0)
    expect(page.get_by_text("Replaying and discarding need the admin role")).to_be_visible()
    csrf = page.evaluate("document.body.dataset.csrf")
    letter = crm.runtime.queue.dead_letters()[0].id
    refused = page.request.post(
        "/api/v1/dashboard/dead-letters/replay",
        data=json.dumps({"ids": [letter]}),
        headers={"X-CSRF-Token": csrf, "Content-Type": "application/json"},
    )
    assert refused.status == 403 and refused.json()["error"]["code"] == "forbidden"
    form = page.request.post("/dead-letters/replay", form={"csrf_token": csrf, "ids": str(letter)})
    assert form.status == 403
    assert crm.runtime.queue.stats().dead == 1
    shot(page, tmp_path, "viewer")


def test_no_session_or_a_bad_csrf_token_is_refused(
    new_context: Callable[[], BrowserContext], log_in: LogIn, tmp_path: Path
) -> None:
    anonymous = new_context()
    for path in (
        "/api/v1/dashboard/overview",
        "/api/v1/dashboard/dead-letters",
        "/api/v1/dashboard/settings",
    ):
        assert anonymous.request.get(path).status == 401
    assert anonymous.request.post("/api/v1/dashboard/dead-letters/replay", data="{}").status == 401
    page = anonymous.new_page()
    page.goto("/settings")
    expect(page).to_have_url(re.compile(r"/login\?next=/settings$"))
    accessible(page)
    shot(page, tmp_path, "login")

    admin = log_in()
    bad = admin.request.post(
        "/api/v1/dashboard/dead-letters/replay",
        data=json.dumps({"ids": [1]}),
        headers={"X-CSRF-Token": "forged", "Content-Type": "application/json"},
    )
    assert bad.status == 403 and bad.json()["error"]["code"] == "csrf"
    assert (
        admin.request.post(
            "/dead-letters/discard", form={"csrf_token": "forged", "ids": "1", "reason": "x"}
        ).status
        == 403
    )
    assert admin.request.post("/settings/flows/usage", form={"source_0": "a", "target_0": "b"}).status == 403
    good = admin.request.post(
        "/api/v1/dashboard/dead-letters/replay",
        data=json.dumps({"ids": [1]}),
        headers={
            "X-CSRF-Token": admin.evaluate("document.body.dataset.csrf"),
            "Content-Type": "application/json",
        },
    )
    assert good.status == 200 and good.json() == {"done": 0, "of": 1}


def test_every_page_has_no_serious_accessibility_violation(
    log_in: LogIn,
    crm: Crmsync,
    salesforce: SalesforceEmulator,
    tmp_path: Path,
) -> None:
    dead_letter(crm, salesforce)
    page = log_in()
    letter = crm.runtime.queue.dead_letters()[0].id
    for path in (
        "/",
        "/charts",
        "/dead-letters",
        f"/dead-letters/{letter}",
        "/trace?record=ad-too-long",
        "/jobs",
        "/settings",
        "/settings/flows/usage",
        "/settings/connections/salesforce",
    ):
        page.goto(path)
        accessible(page)
    shot(page, tmp_path, "connection")


def test_a_running_migration_shows_its_progress_then_its_summary_on_the_jobs_page(
    log_in: LogIn, crm: Crmsync, tmp_path: Path
) -> None:
    # what `crmsync migrate usage` records as it runs, in another process (see cli/migrate.py)
    migration = runs.CommandRun(crm.runtime.store, "migrate:usage")
    migration.advance(40, 100, "usage: Usage__c → board")
    page = log_in()
    page.get_by_role("link", name="Jobs").click()
    row = page.locator("#runs tr", has_text="migrate:usage")
    expect(row).to_contain_text("running")
    expect(row.get_by_role("progressbar")).to_have_attribute("value", "40")
    expect(row).to_contain_text("40 of 100 usage: Usage__c → board")
    accessible(page)
    shot(page, tmp_path, "jobs-migration")
    migration.advance(60, 100, "usage: Usage__c → board")
    migration.finish("succeeded", "created 100, updated 0, skipped 0, failed 0; 1.5 s")
    expect(row).to_contain_text("succeeded", timeout=10_000)  # refreshed in place
    expect(row).to_contain_text("100 of 100")
    expect(row).to_contain_text("created 100, updated 0, skipped 0, failed 0; 1.5 s")
