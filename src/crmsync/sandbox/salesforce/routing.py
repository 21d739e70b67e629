"""Point an unmodified simple-salesforce at the emulator.

simple-salesforce logs in at ``https://{login,test,<domain>}.salesforce.com`` only. The
``requests.Session`` from :func:`routed_session` sends those hosts to the emulator instead
(everything else goes where it was addressed) and verifies TLS with the sandbox CA::

    session = routed_session(emulator.base_url, ca_file=materials.ca_file)
    sf = Salesforce(username=..., consumer_key=..., privatekey_file=..., session=session)

``requests`` is imported when the function is called: it is a client-side (test) dependency.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    import requests


def routed_session(base_url: str, *, ca_file: Path | str | None = None) -> requests.Session:
    """A session that sends ``*.salesforce.com`` requests to ``base_url`` (verified with ``ca_file``)."""
    import requests
    from requests.adapters import HTTPAdapter

    target = urlsplit(base_url)

    class _Route(HTTPAdapter):
        def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
            parts = urlsplit(request.url or "")
            host = parts.hostname or ""
            if host == "salesforce.com" or host.endswith(".salesforce.com"):
                request.url = urlunsplit(
                    (target.scheme, target.netloc, parts.path, parts.query, parts.fragment)
                )
                request.headers["Host"] = target.netloc
                parts = urlsplit(request.url)
            if ca_file is not None and parts.netloc == target.netloc:
                # requests lets REQUESTS_CA_BUNDLE override Session.verify: pin the CA here
                kwargs["verify"] = str(ca_file)
            return super().send(request, *args, **kwargs)

    session = requests.Session()
    adapter = _Route()
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    if ca_file is not None:
        session.verify = str(ca_file)
    return session
