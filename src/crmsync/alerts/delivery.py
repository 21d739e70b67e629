"""Sending a notification through apprise: the only module that imports it.

An apprise URL names a destination and carries its credentials: ``tgram://TOKEN/CHAT``,
``slack://A/B/C``, ``mailtos://user:password@smtp.example.com``, ``json://host:port/path`` (a JSON
webhook), and a hundred more (https://github.com/caronc/apprise/wiki). URLs are never printed
as they are: see :mod:`crmsync.redact`.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Sequence

from crmsync.errors import ConfigError
from crmsync.redact import protect, redact_url

log = logging.getLogger(__name__)

#: notice → apprise notification type (sets the colour or icon where the service shows one)
NOTIFY_TYPES = {"problem": "failure", "reminder": "warning", "resolved": "success"}


class AppriseNotifier:
    """``notifier(title, body, notice) -> bool``: sends to every URL; True if all of them took it.

    ``notice`` is "problem", "reminder" or "resolved". Raises :class:`ConfigError` (with the URL
    redacted) for a URL apprise does not understand."""

    def __init__(self, urls: Sequence[str], *, timeout_seconds: float = 10.0) -> None:
        with warnings.catch_warnings():  # apprise imports the deprecated imghdr
            warnings.simplefilter("ignore", DeprecationWarning)
            import apprise

        protect(urls)  # before apprise sees them: it logs URLs it cannot parse
        self._urls = list(urls)
        self._apprise = apprise.Apprise(asset=apprise.AppriseAsset(storage_mode="memory"))
        self._timeout = timeout_seconds
        self._lock = threading.Lock()
        for index, url in enumerate(self._urls):
            with warnings.catch_warnings():  # the first add loads every plugin module
                warnings.simplefilter("ignore", DeprecationWarning)
                added = self._apprise.add(url)
            if not added:
                raise ConfigError(
                    f"alerts.urls[{index}] ({redact_url(url)}) is not a notification URL apprise understands"
                )

    def __repr__(self) -> str:
        return f"AppriseNotifier({[redact_url(u) for u in self._urls]!r})"

    def __call__(self, title: str, body: str, notice: str) -> bool:
        with self._lock:  # one delivery at a time: apprise objects are not shared across threads
            try:
                result = self._apprise.notify(
                    body=body,
                    title=title,
                    notify_type=NOTIFY_TYPES.get(notice, "info"),
                    timeout=self._timeout,
                )
            except Exception as exc:  # a plugin bug must not take the caller (a worker) down
                log.warning("alert delivery failed: %s", type(exc).__name__)
                return False
        if not result:
            log.warning("alert %r not delivered to every destination (%s)", title, self.destinations())
        return bool(result)

    def destinations(self) -> str:
        return ", ".join(redact_url(u) for u in self._urls)
