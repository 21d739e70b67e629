"""The configuration file, ``crmsync.yaml``: typed models, loading with line-accurate problems.

``load_config(path)`` returns a validated :class:`Config` or raises
:class:`crmsync.errors.ConfigError` listing every problem as ``<file>:<line>: <key>: <what>``.
See ``docs/configuration.md`` for every key.
"""

from crmsync.config.loader import DEFAULT_PATH, load_config, parse_config
from crmsync.config.models import (
    AppConnection,
    BackoffConfig,
    Config,
    ConflictPolicy,
    FieldMapping,
    Flow,
    LockRule,
    MatchRule,
    MondayConnection,
    SalesforceConnection,
    StoreConfig,
    View,
    ViewParam,
    WebConfig,
    WorkerConfig,
)

__all__ = [
    "DEFAULT_PATH",
    "AppConnection",
    "BackoffConfig",
    "Config",
    "ConflictPolicy",
    "FieldMapping",
    "Flow",
    "LockRule",
    "MatchRule",
    "MondayConnection",
    "SalesforceConnection",
    "StoreConfig",
    "View",
    "ViewParam",
    "WebConfig",
    "WorkerConfig",
    "load_config",
    "parse_config",
]
