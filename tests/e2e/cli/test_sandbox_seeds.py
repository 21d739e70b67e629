"""``crmsync sandbox --seed``: a seed only some emulators have loads there and leaves the others empty."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx

from .test_sandbox_cmd import read_env, start


def test_a_seed_only_salesforce_has_loads_there_and_says_which_emulators_have_none(tmp_path: Path) -> None:
    proc, env_file = start(tmp_path, "--seed", "billing", "--no-tls")
    try:
        env = read_env(env_file)
        printed = (tmp_path / "sandbox.log").read_text()
        assert "Traceback" not in printed
        assert "seed 'billing' loaded into salesforce; trello and monday have no 'billing' seed" in printed
        state = httpx.get(f"{env['SALESFORCE_INSTANCE_URL']}/_sandbox/state").json()
        assert "Usage__c" in str(state) and "Contract" in str(state)
        boards = httpx.get(
            f"{env['TRELLO_API_URL']}/members/me/boards",
            params={"key": env["TRELLO_KEY"], "token": env["TRELLO_TOKEN"]},
        )
        assert boards.status_code == 200 and boards.json() == []
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_a_seed_no_emulator_has_is_a_clear_error_listing_each_ones_choices(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable, "-m", "crmsync", "sandbox", "--seed", "biling",
            "--salesforce-port", "0", "--trello-port", "0", "--monday-port", "0",
            "--dir", str(tmp_path / "keys"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "no emulator has a seed named 'biling'" in result.stderr
    assert "salesforce: empty, demo, billing" in result.stderr and "trello: empty, demo" in result.stderr
