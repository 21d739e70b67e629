from __future__ import annotations

import pytest

from crmsync.errors import ConfigError
from crmsync.jobs import registry
from crmsync.jobs.base import Job, JobContext
from crmsync.jobs.purge import PurgeHistory


def test_builtin_jobs_are_registered_by_name() -> None:
    assert "purge-history" in registry.names()
    assert registry.get("purge-history") is PurgeHistory
    assert PurgeHistory.name == "purge-history"
    assert PurgeHistory.summary().startswith("Delete finished changes")


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown job 'purge-everything'; valid: .*purge-history"):
        registry.get("purge-everything")


def test_register_a_job_and_refuse_a_second_class_under_the_same_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry.names()
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    @registry.job("test-hello")
    class Hello(Job):
        def run(self, ctx: JobContext) -> str:
            return "hello"

    assert registry.get("test-hello") is Hello
    assert Hello.name == "test-hello"
    assert "test-hello" in registry.names()
    with pytest.raises(ConfigError, match="registered twice"):

        @registry.job("test-hello")
        class Other(Job):
            def run(self, ctx: JobContext) -> str:
                return "other"


def test_a_broken_plug_in_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib.metadata import EntryPoint

    broken = EntryPoint(name="broken", value="crmsync_no_such_module", group=registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.setattr(registry, "entry_points", lambda group: [broken] if group == broken.group else [])
    with pytest.raises(ConfigError, match=r"job plug-in 'broken' .* failed to load"):
        registry.names()
    with pytest.raises(ConfigError, match="failed to load"):  # and keeps failing
        registry.get("purge-history")


@pytest.mark.parametrize(
    ("args", "problems"),
    [
        ({}, []),
        ({"days": 7}, []),
        ({"days": 0}, ["args.days: Input should be greater than or equal to 1"]),
        ({"days": "7"}, ["args.days: Input should be a valid integer"]),
        ({"days": True}, ["args.days: Input should be a valid integer"]),
        ({"weeks": 1}, ["args.weeks: Extra inputs are not permitted"]),
    ],
)
def test_purge_history_args(args: dict[str, object], problems: list[str]) -> None:
    assert PurgeHistory.check_args(args) == problems
