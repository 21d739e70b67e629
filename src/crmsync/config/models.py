"""The typed shape of ``crmsync.yaml``: every key with its type, default and a one-line description.

These models feed the JSON Schema (``crmsync config schema``) and the key tables of
``docs/configuration.md``. Checks that span sections (a flow naming a connection, a transform
name, a view's query parameters) live in :mod:`crmsync.config.checks`, so that every problem of
a file can be reported at once with its line.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    field_validator,
)

from crmsync.connectors import registry
from crmsync.connectors.app.settings import AppConnection
from crmsync.connectors.monday.settings import MondayConnection
from crmsync.connectors.salesforce.settings import SalesforceConnection
from crmsync.connectors.settings import ConnectionSettings, Model
from crmsync.redact import MASK, redact_url

REDACTED = MASK
#: the built-in connections' models, importable from here as before
__all__ = ["AppConnection", "MondayConnection", "SalesforceConnection"]


# ---------------------------------------------------------------- store, web, worker


class StoreConfig(Model):
    url: str = Field(
        "sqlite:///crmsync.db",
        description="SQLAlchemy URL of the store: sqlite:///file.db, postgresql+psycopg://…, mysql+pymysql://…",
    )


class WebConfig(Model):
    host: str = Field("127.0.0.1", description="Address the web process listens on.")
    port: int = Field(8080, ge=0, le=65535, description="Port the web process listens on (0: any free port).")
    max_body_bytes: int = Field(
        1_048_576, gt=0, description="Largest request body accepted; larger ingest bodies get 413."
    )
    max_batch: int = Field(1000, gt=0, description="Most records accepted in one ingest request.")
    header_timeout_seconds: float = Field(
        10.0, gt=0, description="A connection that has not sent a request's headers within this is closed."
    )
    body_timeout_seconds: float = Field(
        30.0, gt=0, description="A request whose body is not complete within this is answered 408 and closed."
    )
    token_cache_seconds: float = Field(
        5.0,
        ge=0,
        le=60,
        description=(
            "How long a verified API token is trusted without asking the store again (ingest). A token "
            "revoked by another process (crmsync token revoke) is refused within this; 0: every request asks."
        ),
    )
    group_commit: bool = Field(
        True,
        description=(
            "Concurrent ingest requests share one store transaction (each answered 202 once it committed); "
            "false: one transaction per request."
        ),
    )
    group_commit_window_seconds: float = Field(
        0.0,
        ge=0,
        le=0.05,
        description=(
            "How long a group waits for more requests after its first before committing (0: requests that "
            "arrive while a commit runs share the next one)."
        ),
    )
    ingest_backlog: int = Field(
        64,
        ge=1,
        description=(
            "Most ingest requests in progress at once in one web process; past it the API answers 503 with "
            "Retry-After, so the latency of what is accepted stays bounded."
        ),
    )


class BackoffConfig(Model):
    initial_seconds: float = Field(1.0, gt=0, description="Delay before the first retry.")
    factor: float = Field(2.0, ge=1, description="Each further retry waits this many times longer.")
    max_seconds: float = Field(300.0, gt=0, description="Longest delay between two retries.")
    jitter: float = Field(
        0.2, ge=0, lt=1, description="Random share (0 up to, not including, 1) added or taken off each delay."
    )


class WorkerConfig(Model):
    concurrency: int = Field(4, ge=1, description="Changes applied at the same time by one worker process.")
    lease_seconds: float = Field(
        60.0, gt=0, description="How long a claimed change stays reserved before another worker may take it."
    )
    poll_interval_seconds: float = Field(0.2, gt=0, description="Pause between two looks at an empty queue.")
    batch_size: int = Field(200, ge=1, description="Most changes claimed (and written) in one batch.")
    two_way_batch_size: int | None = Field(
        None,
        ge=1,
        description=(
            "Most records one write call of a two-way flow carries: a batch's changes to one object are "
            "written together. Null: as many as the vendor takes in one call (200 per Salesforce "
            "Collections call, what one monday request may carry); 1: each record in its own call."
        ),
    )
    backoff: BackoffConfig = Field(
        default_factory=BackoffConfig, description="Delays between retries of transient failures."
    )
    max_attempts: int | None = Field(
        10,
        ge=1,
        description=(
            "Attempts before a change that keeps failing on its own (an unexpected error, a record the "
            "vendor cannot take now) becomes a dead letter; null: never. Failures of a whole call (the "
            "vendor down, a rate limit) retry until they succeed and do not count."
        ),
    )
    pause_probe_seconds: float = Field(
        30.0,
        gt=0,
        description=(
            "How often a paused flow's connection is tried again (one cheap call) to find it accepts "
            "crmsync again; a change to its settings resumes the flow at once."
        ),
    )


class AlertsConfig(Model):
    urls: list[SecretStr] = Field(
        default_factory=list,
        description=(
            "apprise URLs alerts go to (tgram://…, slack://…, mailtos://…, json://…); "
            "they hold credentials, so they are secrets. Empty: problems are recorded, nobody is told."
        ),
    )
    reminder_minutes: int = Field(
        60, ge=1, description="A problem still open this many minutes after the last message is sent again."
    )
    queue_lag_seconds: float = Field(
        300.0, gt=0, description="Alert when the oldest pending change has waited longer than this."
    )


# ---------------------------------------------------------------- connections


# Each connector declares its settings model in its own folder (``connectors/<kind>/settings.py``);
# the union of connections is built from the registry, so adding a connector touches no model here.
if TYPE_CHECKING:
    Connection = ConnectionSettings
else:
    Connection = Annotated[Union[tuple(registry.settings_models())], Field(discriminator="type")]  # noqa: UP007
CONNECTION_TYPES = tuple(registry.kinds())


# ---------------------------------------------------------------- flows


class FieldMapping(Model):
    source: str = Field(description="Field name in the source record.")
    target: str = Field(description="Field name in the target system.")
    transform: str | None = Field(None, description="Name of a registered transform applied on the way.")
    args: dict[str, Any] = Field(default_factory=dict, description="Arguments of the transform.")
    owner: Literal["source", "target"] = Field(
        "source", description="Which side owns the field; the other side may not change it."
    )
    direction: Literal["both", "to_target", "to_source"] = Field(
        "to_target", description="Which way changes of this field travel."
    )
    reverse_transform: str | None = Field(
        None,
        description=(
            "Transform applied from target to source (two-way fields); by default value_map is inverted "
            "and other values travel unchanged."
        ),
    )
    reverse_args: dict[str, Any] = Field(default_factory=dict, description="Arguments of reverse_transform.")


class MatchRule(Model):
    field: str = Field(
        description="Target field that finds an existing record (an external id, or e.g. Email)."
    )
    source: str | None = Field(
        None,
        description=(
            "Source field whose value the target field must hold; unset: the record's key, and the "
            "target field is an external id written by upsert."
        ),
    )


class Condition(Model):
    field: str = Field(description="Source field the condition looks at.")
    equals: Any = Field(None, description="The record matches when the field holds this value.")
    one_of: list[Any] | None = Field(
        None, alias="in", description="The record matches when the field holds one of these."
    )
    starts_with: str | None = Field(
        None,
        description="The record matches when the field holds text starting with this (a subject prefix).",
    )


class RelatedObject(Model):
    object: str = Field(description="Target object created with the record, e.g. Account.")
    fields: list[FieldMapping] = Field(description="Field mappings, source → this object.")
    refs: dict[str, str] = Field(
        default_factory=dict,
        description="Reference fields set to the id of an object made in that call: {AccountId: Account}.",
    )
    write_back: str | None = Field(
        None, description="Source field that receives this object's id once created."
    )


class LockRule(Model):
    object: str = Field(description="Parent object the lock looks at, e.g. Contract.")
    key: str = Field(description="Source field holding the parent's id.")
    when: str = Field(description="Condition on the parent (SOQL WHERE syntax) that locks its children.")
    message: str | None = Field(
        None,
        description="Error shown when a change is refused; {field} inserts a source field, {parent} the id.",
    )
    cache_seconds: float = Field(
        5.0, ge=0, description="How long a parent's answer is reused before the target is asked again."
    )
    check_timeout_seconds: float = Field(
        2.0,
        gt=0,
        description=(
            "How long ingest waits for the target's answer; past it the change is accepted "
            "and the worker asks again before writing."
        ),
    )


class ConflictPolicy(Model):
    policy: Literal["owner_wins", "newest_wins", "source_wins", "target_wins"] = Field(
        "owner_wins", description="Who wins when both sides changed the same field since the last sync."
    )


class Flow(Model):
    source: str = Field(description="Name of the connection changes come from.")
    target: str = Field(description="Name of the connection changes are written to.")
    object: str = Field(description="Object (table, board) written in the target, e.g. Usage__c.")
    key: str = Field(description="Source field that identifies a record.")
    match: MatchRule | None = Field(
        None, description="How to find an existing target record (upsert by external id)."
    )
    fields: list[FieldMapping] = Field(min_length=1, description="Field mappings, source → target.")
    on_delete: Literal["delete", "archive", "ignore"] = Field(
        "delete",
        description=(
            "What deleting a record on one side does to its counterpart: delete it, archive it (a Monday.com "
            "item; Salesforce records are left in place), or nothing."
        ),
    )
    lock: LockRule | None = Field(None, description="Rule that freezes records once their parent is locked.")
    conflict: ConflictPolicy = Field(
        default_factory=ConflictPolicy, description="How two-way conflicts are resolved."
    )
    source_object: str | None = Field(
        None, description="What is read at the source: a Monday.com board (name or id); none for an app."
    )
    when: Condition | None = Field(
        None,
        description=(
            "Only source records matching it reach the target; the first change that matches creates the "
            "target record (and its related objects)."
        ),
    )
    write_back: str | None = Field(
        None, description="Source field that receives the target record's id once created."
    )
    related: list[RelatedObject] = Field(
        default_factory=list,
        description="Objects created with the record in one all-or-none call, and updated with it later.",
    )
    urgent: bool = Field(
        True,
        description=(
            "Urgent flows write even when the target's daily API use is past its daily_limit_guard; "
            "the changes of other flows (backfills, reconciles) wait until the budget recovers."
        ),
    )
    initial_sync: bool = Field(
        True,
        description=(
            "Two-way flows: `crmsync run` first applies what `crmsync preview` shows (`crmsync sync`) "
            "while the flow has never synced, and the first reconcile reads the whole board; false "
            "leaves the records that exist before crmsync first ran the flow as they are."
        ),
    )


# ---------------------------------------------------------------- views


class ViewParam(Model):
    type: Literal["id", "string", "int", "number", "date", "boolean"] = Field(
        "string", description="Type the parameter's value must have (checked and escaped)."
    )
    required: bool = Field(False, description="Whether a request without this parameter is refused.")
    default: Any = Field(None, description="Value used when the parameter is not given.")


class View(Model):
    connection: str = Field(description="Name of the connection the query runs against.")
    query: str = Field(description="Query with :name placeholders for the parameters (SOQL for Salesforce).")
    params: dict[str, ViewParam] = Field(
        default_factory=dict, description="Parameters the query takes, by name."
    )


# ---------------------------------------------------------------- jobs


class JobConfig(Model):
    job: str = Field(description="Name of a registered job, e.g. purge-history.")
    cron: str = Field(
        description='When it runs: a cron expression in UTC, e.g. "0 3 * * *" (every day at 03:00).'
    )
    args: dict[str, Any] = Field(
        default_factory=dict, description="Settings of the job (see `jobs.NAME.args` of each job below)."
    )
    enabled: bool = Field(
        True, description="false: the scheduler skips the job; `crmsync jobs run` still runs it."
    )

    @classmethod
    def nested_model(cls, key: str, data: Any) -> type[BaseModel] | None:
        """The model of ``args`` for the job ``data`` names (messages list its keys)."""
        from crmsync.jobs import registry

        name = data.get("job") if isinstance(data, dict) else None
        if key != "args" or not isinstance(name, str) or name not in registry.names():
            return None
        return registry.get(name).Settings

    @field_validator("job")
    @classmethod
    def _registered_job(cls, value: str) -> str:
        from pydantic_core import PydanticCustomError

        from crmsync.jobs import registry

        if value not in registry.names():
            valid = ", ".join(registry.names())
            raise PydanticCustomError(
                "unknown_job", "unknown job '{job}'; valid: {valid}", {"job": value, "valid": valid}
            )
        return value

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        from pydantic_core import PydanticCustomError

        from crmsync.scheduler.cron import is_valid

        if not is_valid(value):
            raise PydanticCustomError("invalid_cron", "invalid cron expression '{cron}'", {"cron": value})
        return value

    @field_validator("args")
    @classmethod
    def _job_args(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        from crmsync.jobs import registry

        if "job" in info.data:  # else the job's own error is reported
            # the job's settings model: each problem at its own key (and line)
            registry.get(info.data["job"]).settings_of(value)
        return value


# ---------------------------------------------------------------- the file


class Config(Model):
    """A validated ``crmsync.yaml``; :func:`crmsync.config.load_config` builds it."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        title="crmsync.yaml",
        json_schema_extra={"$schema": "https://json-schema.org/draft/2020-12/schema"},
    )

    version: Literal[1] = Field(1, description="Version of the file format.")
    store: StoreConfig = Field(default_factory=StoreConfig, description="Where crmsync keeps its state.")
    web: WebConfig = Field(default_factory=WebConfig, description="The web process (webhooks, ingest API).")
    worker: WorkerConfig = Field(default_factory=WorkerConfig, description="The worker processes.")
    connections: dict[str, Connection] = Field(
        default_factory=dict, description="Systems crmsync talks to, by name; `type` picks the kind."
    )
    flows: dict[str, Flow] = Field(default_factory=dict, description="What is synced where, by name.")
    views: dict[str, View] = Field(
        default_factory=dict, description="Read-through queries applications may call, by name."
    )
    alerts: AlertsConfig = Field(
        default_factory=AlertsConfig, description="Who is told when something needs a person, and when."
    )
    jobs: dict[str, JobConfig] = Field(
        default_factory=dict,
        description="Scheduled jobs, by name; each run is recorded (`crmsync jobs list`).",
    )

    _path: Path | None = PrivateAttr(None)
    _origins: dict[str, str] = PrivateAttr(default_factory=dict)
    _variables: dict[str, tuple[tuple[str, str], ...]] = PrivateAttr(default_factory=dict)
    _lines: dict[tuple[str | int, ...], int] = PrivateAttr(default_factory=dict)
    #: where its variables came from (:class:`crmsync.config.interpolate.Sources`): a reload reads them again
    _sources: Any = PrivateAttr(None)

    @property
    def path(self) -> Path | None:
        """The file this configuration was read from (None when built in code)."""
        return self._path

    @property
    def origins(self) -> dict[str, str]:
        """Dotted key → where its interpolated value came from: "env", ".env" or "default"."""
        return dict(self._origins)

    @property
    def variables(self) -> dict[str, tuple[tuple[str, str], ...]]:
        """Dotted key → the ``${VARIABLES}`` its value was built from, each with its origin."""
        return dict(self._variables)

    def line_of(self, path: tuple[str | int, ...]) -> int | None:
        """The line of the file that holds ``path`` (or its nearest parent); None when built in code."""
        for n in range(len(path), 0, -1):
            if path[:n] in self._lines:
                return self._lines[path[:n]]
        return None

    def redacted(self) -> dict[str, Any]:
        """The whole configuration as plain data, secrets replaced by ``********``."""
        data = _redact(self)
        assert isinstance(data, dict)
        data["store"]["url"] = redact_url(self.store.url, database=True)
        return data


def _redact(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return REDACTED
    if isinstance(value, BaseModel):
        return {name: _redact(getattr(value, name)) for name in type(value).model_fields}
    if isinstance(value, dict):
        return {k: _redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
