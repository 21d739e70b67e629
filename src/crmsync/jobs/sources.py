"""Where the report import reads its rows: a saved report, a query export, or a CSV file or URL.

Each source is an iterator of rows (column → value) read as it goes, so memory does not grow
with the size of the data (a saved report through the Reports API is at most 2,000 rows, read
at once).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from crmsync.errors import ConfigError, Fatal, RetryLater

#: bytes read from a CSV URL at a time
CHUNK = 1 << 16


class TooManyRows(ConfigError):
    """A saved report has more detail rows than its API returns."""


def csv_rows(
    location: str, *, base_dir: Path | None = None, encoding: str = "utf-8-sig"
) -> Iterator[dict[str, Any]]:
    """The rows of a CSV file (a path, relative to ``base_dir``) or URL (http/https), by header."""
    if location.startswith(("http://", "https://")):
        yield from _url_rows(location, encoding)
        return
    path = Path(location)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if not path.is_file():
        raise ConfigError(f"CSV file {str(path)!r} not found")
    with path.open(encoding=encoding, newline="") as handle:
        yield from csv.DictReader(handle)


def _url_rows(url: str, encoding: str) -> Iterator[dict[str, Any]]:
    try:
        with httpx.stream("GET", url, timeout=60.0, follow_redirects=True) as response:
            if response.status_code >= 400:
                kind = RetryLater if response.status_code >= 500 or response.status_code == 429 else Fatal
                raise kind(f"CSV download answered HTTP {response.status_code}", url=url)
            stream = io.TextIOWrapper(
                io.BufferedReader(_ByteStream(response.iter_bytes(CHUNK))), encoding=encoding, newline=""
            )
            yield from csv.DictReader(stream)
    except httpx.TransportError as exc:
        raise RetryLater(f"cannot read the CSV at {url}: {exc!r}", url=url) from exc


class _ByteStream(io.RawIOBase):
    """A readable raw stream over an iterator of byte chunks."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._left = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._left:
            try:
                self._left = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(buffer), len(self._left))
        buffer[:n] = self._left[:n]
        self._left = self._left[n:]
        return n
