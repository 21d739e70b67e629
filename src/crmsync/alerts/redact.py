"""Keep the secrets of alert URLs out of logs, errors and messages.

An apprise URL *is* a credential: ``tgram://BOT_TOKEN/CHAT``, ``mailto://user:PASSWORD@host``,
``slack://TOKEN_A/TOKEN_B/TOKEN_C``. crmsync prints such a URL only through :func:`redact_url`,
which keeps the scheme and a host name (when it is one) and hides the rest. apprise itself, and
the HTTP libraries under it, log URLs at debug level (Telegram's token is part of its API path),
so :func:`protect` also installs a log filter on those loggers that masks every fragment of a
registered URL that could be secret.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from urllib.parse import parse_qsl, unquote

MASK = "****"

#: loggers that may print a notification URL (or the API URL built from its token)
LEAKY_LOGGERS = ("apprise", "urllib3.connectionpool", "requests", "httpx", "httpcore")

#: the shortest fragment masked: shorter ones (a port, "com") are not secrets and would mangle text
MIN_SECRET_LENGTH = 6

_HOST_NAME = re.compile(r"^(localhost|[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+|\[[0-9A-Fa-f:.]+\])$")


def _authority(url: str) -> str:
    rest = url.partition("://")[2]
    return re.split(r"[/?#]", rest, maxsplit=1)[0]


def _shown_host(url: str) -> str | None:
    """The host part of ``url`` worth showing (a DNS name or IP address, with its port), if any."""
    host = _authority(url).rpartition("@")[2]
    if host.startswith("["):
        name, _, after = host.partition("]")
        name, port = name + "]", after.removeprefix(":")
    else:
        name, _, port = host.partition(":")
    if not _HOST_NAME.match(name) or (port and not port.isdigit()):
        return None
    return f"{name}:{port}" if port else name


def redact_url(url: str) -> str:
    """``url`` with everything but its scheme and host name hidden:
    ``json://127.0.0.1:8080/****``, ``mailto://smtp.example.com/****``, ``tgram://****``."""
    scheme, sep, rest = url.partition("://")
    if not sep or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
        return MASK
    host = _shown_host(url)
    if host is None:
        return f"{scheme}://{MASK}"
    authority = _authority(url)
    more = "@" in authority or len(rest.rstrip("/")) > len(authority)
    return f"{scheme}://{host}/{MASK}" if more else f"{scheme}://{host}"


def secret_fragments(url: str) -> set[str]:
    """Every part of ``url`` that might be a secret: the whole URL, the user and password, the
    host when it is not a host name (apprise puts tokens there), each path segment and each query
    value, quoted and unquoted. The shown host name and fragments shorter than
    :data:`MIN_SECRET_LENGTH` are left out."""
    found = {url}
    rest = url.partition("://")[2]
    if rest:
        authority = _authority(url)
        userinfo, at, host = authority.rpartition("@")
        if at:
            found.add(userinfo)
            found.update(userinfo.split(":", 1))
        shown = _shown_host(url)
        if shown is None:
            found.add(host)
            found.update(host.split(":"))
        tail = rest[len(authority) :].split("#", 1)[0]
        path, _, query = tail.partition("?")
        found.update(path.split("/"))
        found.update(query.split("&"))
        found.update(value for _, value in parse_qsl(query))
        if shown is not None:
            found -= {shown, shown.rsplit(":", 1)[0]}
    found |= {unquote(f) for f in found}
    return {f for f in found if len(f) >= MIN_SECRET_LENGTH}


class Scrubber(logging.Filter):
    """Masks registered secrets in every record logged on the loggers it is attached to."""

    def __init__(self) -> None:
        super().__init__("crmsync.alerts.scrubber")
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()

    def register(self, secrets: Iterable[str]) -> None:
        with self._lock:
            merged = set(self._secrets) | {s for s in secrets if len(s) >= MIN_SECRET_LENGTH}
            self._secrets = tuple(sorted(merged, key=len, reverse=True))

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to the handler to report
            return True
        scrubbed = self.scrub(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        if record.exc_info and record.exc_info[1] is not None:
            text = self.scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info, record.exc_text = None, text
        return True


_scrubber = Scrubber()
_installed = False
_install_lock = threading.Lock()


def protect(urls: Iterable[str]) -> Scrubber:
    """Register the secrets of ``urls`` and make sure the log filter is on the leaky loggers
    (installed on first use: importing this module changes no logging)."""
    global _installed
    _scrubber.register(f for url in urls for f in secret_fragments(url))
    with _install_lock:
        if not _installed:
            for name in LEAKY_LOGGERS:
                logging.getLogger(name).addFilter(_scrubber)
            _installed = True
    return _scrubber


def scrub(text: str) -> str:
    """``text`` with every registered secret masked."""
    return _scrubber.scrub(text)
