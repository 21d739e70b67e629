"""``pip install crmsync`` stays lean: the emulators and their dependencies are the sandbox extra."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import requires

BLOCK_SANDBOX_DEPS = """
import importlib.abc, sys
class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("lark", "graphql"):
            raise ImportError(f"No module named {name!r}")
        return None
sys.meta_path.insert(0, Missing())
"""


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_the_command_line_imports_no_emulator_code() -> None:
    done = run_python(
        "import sys, crmsync.cli.main\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('lark', 'graphql')"
        " or (m.startswith('crmsync.sandbox.') and m != 'crmsync.sandbox.defaults')]\n"
        "print(loaded)\n"
        "sys.exit(1 if loaded else 0)"
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_without_the_sandbox_extra_crmsync_works_and_the_sandbox_says_what_to_install() -> None:
    helped = run_python(
        BLOCK_SANDBOX_DEPS + "import sys; sys.argv = ['crmsync', '--help']\n"
        "from crmsync.cli.main import main; main()"
    )
    assert helped.returncode == 0, helped.stderr
    assert "sandbox" in helped.stdout
    refused = run_python(
        BLOCK_SANDBOX_DEPS + "import sys; sys.argv = ['crmsync', 'sandbox', '--salesforce-port', '0']\n"
        "from crmsync.cli.main import main; main()"
    )
    assert refused.returncode == 2
    assert "pip install 'crmsync[sandbox]'" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_the_sandbox_dependencies_are_an_extra_and_unused_ones_are_gone() -> None:
    declared = requires("crmsync") or []
    core = [r for r in declared if "extra ==" not in r]
    sandbox = [r for r in declared if r.replace("'", '"').endswith('extra == "sandbox"')]
    names = {r.split(";")[0].split("[")[0].split(">")[0].split("=")[0].strip().lower() for r in core}
    assert not names & {"lark", "graphql-core", "tenacity", "ariadne", "httpx2"}
    assert {r.split(">")[0].strip() for r in sandbox} == {"graphql-core", "lark"}
