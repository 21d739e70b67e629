from __future__ import annotations

import logging
from pathlib import Path

import pytest

from crmsync.alerts import Alerter
from crmsync.alerts.testing import Outbox
from crmsync.errors import ConfigError
from crmsync.redact import protect, redact_url, scrub, secret_fragments
from crmsync.store import Store

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
TELEGRAM = f"tgram://{TOKEN}/-1001234"
MAIL = "mailtos://ops:Pa55-w0rd-xyz@smtp.example.com?to=oncall@example.com"
SLACK = "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (TELEGRAM, "tgram://********"),
        (MAIL, "mailtos://smtp.example.com/********"),
        (SLACK, "slack://********"),
        ("https://hooks.slack.com/services/T00/B00/XXXXXXXXXXXX", "https://hooks.slack.com/********"),
        ("json://127.0.0.1:8080", "json://127.0.0.1:8080"),
        ("json://127.0.0.1:8080/", "json://127.0.0.1:8080"),
        ("json://user:pw@127.0.0.1:8080/", "json://127.0.0.1:8080/********"),
        ("json://[::1]:99/hook", "json://[::1]:99/********"),
        ("not a url", "********"),
    ],
)
def test_redact_url_keeps_the_scheme_and_a_host_name_only(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql+psycopg://postgres:SECRET@127.0.0.1:1/x",
            "postgresql+psycopg://postgres:********@127.0.0.1:1/x",
        ),
        ("mysql+pymysql://root:p%40ss@[::1]:3306/db", "mysql+pymysql://root:********@[::1]:3306/db"),
        (
            "postgresql://db/crm?sslpassword=k3y&sslmode=require",
            "postgresql://db/crm?sslpassword=********&sslmode=require",
        ),
        ("postgresql+psycopg://crm@db/crm", "postgresql+psycopg://crm@db/crm"),
        ("sqlite:///crmsync.db", "sqlite:///crmsync.db"),
        ("sqlite:////var/lib/crmsync/crm sync.db", "sqlite:////var/lib/crmsync/crm sync.db"),
        ("not a url", "********"),
    ],
)
def test_a_database_url_keeps_all_but_its_password(url: str, shown: str) -> None:
    assert redact_url(url, database=True) == shown


def test_the_store_and_the_configuration_show_the_store_url_redacted() -> None:
    from crmsync.config import Config

    url = "postgresql+psycopg://postgres:SECRET-pw@127.0.0.1:1/x"
    assert repr(Store(url)) == "Store('postgresql+psycopg://postgres:********@127.0.0.1:1/x')"
    assert Store(url).shown_url == redact_url(url, database=True)
    shown = Config.model_validate({"version": 1, "store": {"url": url}}).redacted()["store"]["url"]
    assert shown == redact_url(url, database=True)


def test_secret_fragments_cover_tokens_passwords_and_path_secrets() -> None:
    assert {TOKEN, "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw", TELEGRAM} <= secret_fragments(TELEGRAM)
    assert {"Pa55-w0rd-xyz", "ops:Pa55-w0rd-xyz"} <= secret_fragments(MAIL)
    assert "smtp.example.com" not in secret_fragments(MAIL)
    assert "TIiajkdnlazkcOXrIdevi7FQ" in secret_fragments(SLACK)
    assert all(len(f) >= 6 for f in secret_fragments(SLACK))


def test_apprise_and_http_logs_never_show_a_token(caplog: pytest.LogCaptureFixture) -> None:
    protect([TELEGRAM, MAIL])
    caplog.set_level(logging.DEBUG)
    logging.getLogger("apprise").debug("Telegram POST URL: https://api.telegram.org/bot%s/sendMessage", TOKEN)
    logging.getLogger("urllib3.connectionpool").debug('"POST /bot%s/sendMessage HTTP/1.1" 200', TOKEN)
    try:
        raise RuntimeError(f"login failed with Pa55-w0rd-xyz for {MAIL}")
    except RuntimeError:
        logging.getLogger("apprise").exception("email failed")
    text = caplog.text
    assert TOKEN not in text and "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw" not in text
    assert "Pa55-w0rd-xyz" not in text
    assert "https://api.telegram.org/bot********/sendMessage" in text
    assert scrub(f"token {TOKEN}") == "token ********"


def test_an_invalid_url_is_a_config_error_without_its_secret(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'x.db'}")
    with pytest.raises(ConfigError) as caught:
        Alerter(store, ["nosuchservice://admin:hunter2-secret@example.com/x"])
    assert "hunter2-secret" not in str(caught.value)
    assert "nosuchservice://example.com/********" in str(caught.value)


def test_alerter_repr_and_sent_bodies_hide_url_secrets(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'x.db'}")
    store.upgrade()
    outbox = Outbox()
    alerter = Alerter(store, [TELEGRAM], notify=outbox)
    assert TOKEN not in repr(alerter) and "tgram://********" in repr(alerter)
    alerter.problem("k", f"title {TOKEN}", f"the channel said: bad token {TOKEN}")
    assert outbox.sent[0].body == "the channel said: bad token ********"
    assert TOKEN not in alerter.open_problems()[0].title
    store.dispose()
