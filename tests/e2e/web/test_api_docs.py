"""Every example request in docs/api.md runs against a running crmsync and prints what the docs say.

The examples are read from the markdown itself — each ``bash`` or ``python`` block, in order,
with the ``json`` block after it as its expected output (``"..."`` matches any value) — so the
documentation and this test cannot drift apart.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from crmsync.sandbox.salesforce import SalesforceEmulator

from ..conftest import ROOT, Crmsync, wait_until

DOC = ROOT / "docs" / "api.md"
_BLOCK = re.compile(r"^```(\w+)\n(.*?)^```$", re.M | re.S)


@dataclass
class Example:
    language: str
    code: str
    expected: Any
    line: int


def examples(text: str) -> list[Example]:
    found: list[Example] = []
    blocks = [(m.group(1), m.group(2), text.count("\n", 0, m.start()) + 1) for m in _BLOCK.finditer(text)]
    for i, (language, code, line) in enumerate(blocks):
        if language not in ("bash", "python"):
            continue
        following = blocks[i + 1] if i + 1 < len(blocks) else None
        expected = json.loads(following[1]) if following and following[0] == "json" else None
        found.append(Example(language, code, expected, line))
    return found


def matches(expected: Any, actual: Any) -> bool:
    """``actual`` is what ``expected`` documents; the string "..." stands for any value."""
    if expected == "...":
        return True
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and expected.keys() == actual.keys()
            and all(matches(v, actual[k]) for k, v in expected.items())
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(matches(e, a) for e, a in zip(expected, actual, strict=True))
        )
    return bool(expected == actual)


def run(example: Example, env: dict[str, str]) -> str:
    command = (
        ["bash", "-euo", "pipefail", "-c", example.code]
        if example.language == "bash"
        else [
            sys.executable,
            "-c",
            example.code,
        ]
    )
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, f"docs/api.md:{example.line} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _answers(url: str) -> bool:
    try:
        return httpx.get(url).status_code == 200
    except httpx.TransportError:
        return False


def test_the_examples_are_found() -> None:
    found = examples(DOC.read_text())
    assert {e.language for e in found} == {"bash", "python"}
    assert len(found) >= 12 and all(e.expected is not None for e in found)
    assert matches({"a": [1, "..."]}, {"a": [1, {"x": 2}]}) and not matches({"a": 1}, {"a": 1, "b": 2})


def test_every_documented_example_does_what_the_docs_say(
    salesforce: SalesforceEmulator, crmsync_factory: Callable[..., Crmsync]
) -> None:
    crm = crmsync_factory(workers=1)
    wait_until(lambda: _answers(f"{crm.base_url}/healthz"))
    env = {**os.environ, "CRMSYNC_URL": crm.base_url, "CRMSYNC_TOKEN": crm.token}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    for example in examples(DOC.read_text()):
        printed = run(example, env)
        actual = json.loads(printed)
        assert matches(example.expected, actual), (
            f"docs/api.md:{example.line} printed {printed!r}; the docs say {json.dumps(example.expected)}"
        )
