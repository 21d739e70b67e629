"""``${VAR}`` and ``${VAR:-default}`` inside the string values of ``crmsync.yaml``.

``${secret:NAME}`` reads ``NAME`` from the encrypted secret store next to the file
(:mod:`crmsync.config.secrets`), where the dashboard's Settings page saves credentials.

One precedence, and only one: **the process environment, then the ``.env`` file next to the
config file, then the ``:-default``**. The first of the two sources that defines the variable
gives its value; when that value is empty (or neither defines it) the default applies, as in a
shell. A variable that is nowhere defined and has no default is a problem. ``$${`` writes a
literal ``${``. Values taken from the environment are used as they are (never interpolated again).

The ``.env`` file is read with python-dotenv's parser, without its own interpolation and without
touching ``os.environ``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from dotenv import dotenv_values

Origin = Literal["env", ".env", "default", "secrets"]

_TOKEN = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_EXPRESSION = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:(:-)(.*))?$", re.DOTALL)
_SECRET = re.compile(r"^secret:([A-Za-z_][A-Za-z0-9_.-]*)$")


@dataclass(frozen=True)
class Substitution:
    """One ``${VAR}`` replaced, and where its value came from."""

    variable: str
    origin: Origin


@dataclass
class Interpolated:
    text: str
    substitutions: list[Substitution] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    #: the text was nothing but one ``${...}``
    whole: bool = False


@dataclass(frozen=True)
class Sources:
    """Where variables come from, in order of precedence."""

    environ: Mapping[str, str]
    dotenv: Mapping[str, str]
    #: reads the secret store (``${secret:NAME}``), called only when a value names one
    secrets: Callable[[], Mapping[str, str]] | None = None

    def lookup(self, name: str) -> tuple[str, Origin] | None:
        if name in self.environ:
            return self.environ[name], "env"
        if name in self.dotenv:
            return self.dotenv[name], ".env"
        return None


def read_dotenv(path: Path) -> dict[str, str]:
    """The ``KEY=value`` pairs of a ``.env`` file (empty when there is none)."""
    if not path.is_file():
        return {}
    values = dotenv_values(path, interpolate=False)
    return {k: v if v is not None else "" for k, v in values.items()}


def has_variables(text: str) -> bool:
    return "${" in text


def interpolate(text: str, sources: Sources) -> Interpolated:
    """Replace every ``${VAR}`` / ``${VAR:-default}`` in ``text``."""
    out: list[str] = []
    result = Interpolated(text="")
    position = 0
    expressions = 0
    for m in _TOKEN.finditer(text):
        out.append(text[position : m.start()])
        position = m.end()
        if m.group(0) == "$${":
            out.append("${")
            continue
        expressions += 1
        if m.group(1) is None:
            result.problems.append("unclosed ${ (write $${ for a literal ${)")
            continue
        secret = _SECRET.match(m.group(1))
        if secret is not None:
            value = _secret(sources, secret.group(1), result)
            if value is not None:
                out.append(value)
                result.substitutions.append(Substitution(secret.group(1), "secrets"))
            continue
        expression = _EXPRESSION.match(m.group(1))
        if expression is None:
            result.problems.append(f"malformed ${{{m.group(1)}}}: expected ${{NAME}} or ${{NAME:-default}}")
            continue
        name, has_default, default = expression.groups()
        found = sources.lookup(name)
        if found is not None and (found[0] != "" or not has_default):
            out.append(found[0])
            result.substitutions.append(Substitution(name, found[1]))
        elif has_default:
            out.append(default)
            result.substitutions.append(Substitution(name, "default"))
        else:
            result.problems.append(
                f"variable {name} is not set (in the environment or .env) and has no default"
            )
    out.append(text[position:])
    result.text = "".join(out)
    result.whole = expressions == 1 and _TOKEN.fullmatch(text) is not None
    return result


def _secret(sources: Sources, name: str, result: Interpolated) -> str | None:
    if sources.secrets is None:
        result.problems.append(f"secret {name} cannot be read: no secret store here")
        return None
    try:
        found = sources.secrets().get(name)
    except Exception as exc:  # an unreadable store: the problem, with its line
        result.problems.append(str(exc))
        return None
    if found is None:
        result.problems.append(
            f"secret {name} is not in the secret store (save it from the dashboard's Settings)"
        )
    return found
