"""Keep the secrets of URLs out of logs, errors and messages: the one place crmsync redacts a URL.

crmsync prints a URL only through :func:`redact_url`, in one of two ways:

- a *database URL* (``store.url``: ``postgresql+psycopg://crm:PASSWORD@db/crm``) keeps everything
  but its password and the values of secret-looking query parameters (``?password=``,
  ``?sslpassword=``): ``postgresql+psycopg://crm:********@db/crm``;
- any other URL, e.g. an apprise notification URL, which *is* a credential
  (``tgram://BOT_TOKEN/CHAT``, ``slack://TOKEN_A/TOKEN_B/TOKEN_C``), keeps only its scheme and a
  host name (when it is one): ``mailtos://smtp.example.com/********``.

apprise itself, and the HTTP libraries under it, log URLs at debug level (Telegram's token is
part of its API path), so :func:`protect` also installs a log filter on those loggers that masks
every fragment of a registered URL that could be secret.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from urllib.parse import parse_qsl, unquote

MASK = "********"

#: query parameters of a database URL whose values are hidden (matched as parts of the name)
SECRET_PARAMETERS = ("pass", "secret", "token", "key", "credential", "auth")

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


def redact_url(url: str, *, database: bool = False) -> str:
    """``url`` fit to print.

    With ``database`` (a store URL), only the password and secret query values are hidden:
    ``postgresql+psycopg://crm:********@db:5432/crm``, ``sqlite:///crmsync.db`` as it is. Otherwise
    everything but the scheme and host name is: ``json://127.0.0.1:8080/********``,
    ``mailto://smtp.example.com/********``, ``tgram://********``. Text that is not a URL is hidden.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
        return MASK
    if database:
        return _redact_database_url(scheme, rest)
    host = _shown_host(url)
    if host is None:
        return f"{scheme}://{MASK}"
    authority = _authority(url)
    more = "@" in authority or len(rest.rstrip("/")) > len(authority)
    return f"{scheme}://{host}/{MASK}" if more else f"{scheme}://{host}"


def _redact_database_url(scheme: str, rest: str) -> str:
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    userinfo, at, host = authority.rpartition("@")
    if at and ":" in userinfo:
        userinfo = f"{userinfo.partition(':')[0]}:{MASK}"
    tail = rest[len(authority) :]
    path, question, query = tail.partition("?")
    if question:
        params = []
        for param in query.split("&"):
            name, equals, _ = param.partition("=")
            secret = equals and any(word in name.lower() for word in SECRET_PARAMETERS)
            params.append(f"{name}={MASK}" if secret else param)
        query = "&".join(params)
    return f"{scheme}://{userinfo}{at}{host}{path}{question}{query}"


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
