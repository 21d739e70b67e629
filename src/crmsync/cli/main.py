"""Entry point of the ``crmsync`` command: assembles the command groups."""

from __future__ import annotations

import logging

import typer

from crmsync.cli import (
    config,
    db,
    demo,
    jobs,
    log,
    migrate,
    preview,
    run,
    sandbox,
    sync,
    tokens,
    users,
    webhooks,
)

app = typer.Typer(
    name="crmsync",
    help=(
        "Keep Salesforce, Trello, Monday.com, SQL databases and your own applications in sync.\n\n"
        "Start with `crmsync init` (a commented crmsync.yaml), `crmsync check`, then `crmsync run`.\n"
        "`crmsync sandbox` starts local emulators of Salesforce, Trello and Monday.com."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug detail."),
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not verbose:  # one line per HTTP call, alembic's plugins and migration steps are detail, not news
        for noisy in ("httpx", "httpcore", "uvicorn.access", "alembic"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


config.register(app)
run.register(app)
tokens.register(app)
db.register(app)
webhooks.register(app)
log.register(app)
jobs.register(app)
migrate.register(app)
preview.register(app)
sync.register(app)
sandbox.register(app)
demo.register(app)
users.register(app)


def main() -> None:
    app()
