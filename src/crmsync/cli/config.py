"""``crmsync check``, ``crmsync init`` and ``crmsync config schema|show``.

Other command groups read the configuration the same way: with :data:`CONFIG_OPTION` and
:func:`load_or_exit`, so a missing or invalid file is reported identically everywhere.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
import yaml

from crmsync.config import Config, load_config
from crmsync.config import connected as connected_checks
from crmsync.config.loader import DEFAULT_PATH, dotted
from crmsync.config.starter import SANDBOX_COMMAND, SANDBOX_SEED, VARIABLES, write_starter
from crmsync.connectors import registry
from crmsync.connectors.capabilities import Describes, PreparesSchema, WebhookSource, offers
from crmsync.engine.flows import FlowRuntime, target_shapes
from crmsync.errors import ConfigError

#: the ``-c/--config`` option every command that reads crmsync.yaml takes
CONFIG_OPTION: Any = typer.Option(DEFAULT_PATH, "--config", "-c", help="The configuration file.")

config_app = typer.Typer(help="Inspect the configuration: its JSON Schema, or the file as resolved.")


def register(app: typer.Typer) -> None:
    app.command("check")(check)
    app.command("init")(init)
    app.add_typer(config_app, name="config")


def load_or_exit(path: Path, *, err: bool = True) -> Config:
    """The configuration at ``path``; on any problem, print every one and exit with status 1."""
    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            typer.secho(problem, fg=typer.colors.RED, err=err)
        if exc.problems != [exc.message]:
            typer.echo(exc.message, err=err)
        raise typer.Exit(1) from None


def check(
    config: Path = CONFIG_OPTION,
    connect: bool = typer.Option(
        False,
        "--connect",
        help="Also log in to each connection once and check every object and field the flows name.",
    ),
) -> None:
    """Validate the configuration file: print every problem with its line, or a summary."""
    cfg = load_or_exit(config, err=False)
    name = cfg.path.name if cfg.path else str(config)
    typer.echo(
        f"{name} is valid: {_count(len(cfg.connections), 'connection')}, "
        f"{_count(len(cfg.flows), 'flow')}, {_count(len(cfg.views), 'view')}"
    )
    if connect and not _check_connections(cfg):
        raise typer.Exit(1)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _check_connections(cfg: Config) -> bool:
    """Log in to each connection; then check the objects and fields the flows name on those that work."""
    ok = True
    connected: dict[str, Any] = {}
    try:
        for name, model in cfg.connections.items():
            if set(type(model).model_fields) == {"type"}:  # no settings: no credentials (an app)
                typer.echo(f"  {name} ({model.type}): OK (nothing to log in to)")
                continue
            connector = None
            try:
                connector = registry.create(name, model)
                connector.check()
            except Exception as exc:  # every failure is reported, connection by connection
                ok = False
                typer.secho(f"  {name} ({model.type}): FAILED: {_describe(exc)}", fg=typer.colors.RED)
                if connector is not None:
                    connector.close()
            else:
                typer.secho(f"  {name} ({model.type}): OK", fg=typer.colors.GREEN)
                connected[name] = connector
                if offers(connector, WebhookSource):
                    _report_webhooks(cfg, name)
        names_ok = _check_names(cfg, connected)
        return _prepare_schemas(cfg, connected) and names_ok and ok
    finally:
        for connector in connected.values():
            connector.close()


def _report_webhooks(cfg: Config, name: str) -> None:
    """How the connection's webhook deliveries are protected, and what does not fit (warnings)."""
    from crmsync.cli.webhooks import protection_report

    try:
        report = protection_report(cfg, name)
    except Exception as exc:  # listing the boards' webhooks failed: say so, the login worked
        typer.secho(f"    webhooks: could not check: {_describe(exc)}", fg=typer.colors.YELLOW)
        return
    for line, warning in report:
        if warning:
            typer.secho(f"    warning: {line}", fg=typer.colors.YELLOW)
        else:
            typer.echo(f"    {line}")


def _check_names(cfg: Config, connected: dict[str, Any]) -> bool:
    """Every object and field a flow names, on the connections that logged in; problems with their line."""
    catalogs = {
        name: catalog
        for name, connector in connected.items()
        if (catalog := connected_checks.catalog_for(connector)) is not None
    }
    refs = connected_checks.references(cfg)
    try:
        problems = connected_checks.check_references(refs, catalogs)
    except Exception as exc:  # a describe that fails for another reason than "no such object"
        typer.secho(f"  objects and fields: could not check: {_describe(exc)}", fg=typer.colors.RED)
        return False
    checked = [r for r in refs if r.connection in catalogs]
    file = str(cfg.path) if cfg.path else "crmsync.yaml"
    for problem in problems:
        line = cfg.line_of(problem.path) or 1
        typer.secho(f"{file}:{line}: {dotted(problem.path)}: {problem.message}", fg=typer.colors.RED)
    if checked and not problems:
        objects = {(r.connection, r.object) for r in checked}
        typer.secho(
            f"  objects and fields: OK ({_count(len(checked), 'name')} on {_count(len(objects), 'object')})",
            fg=typer.colors.GREEN,
        )
    return not problems


def _prepare_schemas(cfg: Config, connected: dict[str, Any]) -> bool:
    """Create or migrate the storage the flows write to on targets that have one (a reporting
    database's tables), saying what changed; a destructive change is refused with what to do."""
    flows = [FlowRuntime(name, flow) for name, flow in cfg.flows.items()]

    def describe(connection: str, object_name: str) -> Any:
        source = connected.get(connection)
        return source.describe(object_name) if source is not None and offers(source, Describes) else None

    ok = True
    for name, connector in connected.items():
        if not offers(connector, PreparesSchema):
            continue
        try:
            changes = connector.prepare_schema(target_shapes(flows, name, describe))
        except ConfigError as exc:
            ok = False
            if not exc.problems:
                typer.secho(f"  {name}: tables: REFUSED: {exc.message}", fg=typer.colors.RED)
            for problem in exc.problems:  # each refused change, with what to do
                typer.secho(f"  {name}: tables: REFUSED: {problem}", fg=typer.colors.RED)
            continue
        except Exception as exc:  # a describe or the database failed: say so, go on with the others
            ok = False
            typer.secho(f"  {name}: tables: could not prepare: {_describe(exc)}", fg=typer.colors.RED)
            continue
        for change in changes:
            typer.echo(f"  {name}: {change}")
        typer.secho(f"  {name}: tables: OK ({_count(len(changes), 'change')} made)", fg=typer.colors.GREEN)
    return ok


def _describe(exc: Exception) -> str:
    if isinstance(exc, ModuleNotFoundError):
        return f"connector not available ({exc})"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def init(
    path: Path = typer.Argument(DEFAULT_PATH, help="File (or folder) to write."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Write a commented starter crmsync.yaml (usage entries from an app to Salesforce)."""
    try:
        written = write_starter(path, force=force)
    except FileExistsError as exc:
        typer.secho(str(exc), fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    typer.echo(f"wrote {written}")
    env_file = written.parent / ".env"
    typer.echo(f"it reads {', '.join(VARIABLES)} from the environment or {env_file}.")
    typer.echo("To try it against the local sandbox, run this in another terminal and keep it running:")
    typer.echo(f"    {sandbox_command(env_file)}")
    config_option = "" if written == DEFAULT_PATH else f" -c {written}"
    typer.echo(
        f"Then: crmsync check --connect{config_option}; crmsync token create my-app{config_option}; "
        f"crmsync run{config_option}"
    )


def sandbox_command(env_file: Path) -> str:
    """The ``crmsync sandbox`` command that serves what the starter file needs, writing ``env_file``."""
    if env_file == Path(".env"):
        return SANDBOX_COMMAND
    return f"crmsync sandbox --seed {SANDBOX_SEED} --env-file {env_file}"


@config_app.command("schema")
def schema() -> None:
    """Print the JSON Schema of crmsync.yaml (for editor completion and validation)."""
    typer.echo(json.dumps(Config.model_json_schema(), indent=2))


@config_app.command("show")
def show(
    config: Path = CONFIG_OPTION,
    origins: bool = typer.Option(False, "--origins", help="Also show where each ${VARIABLE} came from."),
) -> None:
    """Print the configuration as resolved (defaults filled in, variables replaced, secrets hidden)."""
    cfg = load_or_exit(config)
    typer.echo(yaml.safe_dump(cfg.redacted(), sort_keys=False, allow_unicode=True), nl=False)
    if origins:
        typer.echo("# where interpolated values came from (environment > .env > default):")
        for key, used in cfg.variables.items():
            typer.echo(f"#   {key}: " + ", ".join(f"{origin} ({variable})" for variable, origin in used))
