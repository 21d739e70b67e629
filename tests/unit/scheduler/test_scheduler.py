from __future__ import annotations

import logging
import threading

import pytest

from crmsync.config.models import Config
from crmsync.errors import ConfigError
from crmsync.scheduler import claims, runs
from crmsync.scheduler.scheduler import JobSpec, Scheduler, run_job, specs_from_config
from crmsync.store.db import Store

from .conftest import FakeClock, Recorder

EVERY_5_MIN = "*/5 * * * *"


def scheduler(store: Store, clock: FakeClock, **jobs: JobSpec) -> Scheduler:
    return Scheduler(store, jobs, owner="test-owner", clock=clock)


def test_a_new_job_fires_first_at_its_next_occurrence_then_once_per_occurrence(
    store: Store, clock: FakeClock, recorder: Recorder
) -> None:
    s = scheduler(store, clock, counter=JobSpec("test-count", EVERY_5_MIN, {"n": 1}))
    assert s.tick() == []  # 10:00:30: the 10:00 occurrence came before the job was known
    assert claims.next_due(store, "counter") == clock.now.replace(minute=5, second=0)
    clock.advance(minutes=4, seconds=29)  # 10:04:59
    assert s.tick() == []
    clock.advance(seconds=1)  # 10:05:00
    assert s.tick() == ["counter"]
    assert s.tick() == []
    clock.advance(minutes=4)
    assert s.tick() == []
    clock.advance(minutes=1, seconds=10)  # 10:10:10
    assert s.tick() == ["counter"]

    assert [c.scheduled_for for c in recorder.calls] == [
        clock.now.replace(minute=5, second=0),
        clock.now.replace(minute=10, second=0),
    ]
    assert recorder.calls[0].args == {"n": 1} and recorder.calls[0].name == "counter"
    history = runs.recent(store, "counter")
    assert [(r.status, r.message) for r in history] == [
        ("succeeded", "run 2 with args {'n': 1}"),  # the summary is kept on one line
        ("succeeded", "run 1 with args {'n': 1}"),
    ]
    assert history[0].started_at == clock.now and history[0].finished_at == clock.now


def test_a_missed_occurrence_fires_once_not_once_per_occurrence(
    store: Store, clock: FakeClock, recorder: Recorder
) -> None:
    s = scheduler(store, clock, counter=JobSpec("test-count", EVERY_5_MIN))
    s.tick()
    clock.advance(hours=3)  # 36 occurrences passed while no scheduler ran
    assert s.tick() == ["counter"]
    assert recorder.calls[0].scheduled_for == clock.now.replace(hour=10, minute=5, second=0)
    assert s.tick() == []
    assert claims.next_due(store, "counter") == clock.now.replace(minute=5, second=0)
    assert len(runs.recent(store, "counter")) == 1


def test_a_failing_job_is_recorded_as_failed_and_the_others_still_run(
    store: Store, clock: FakeClock, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    s = scheduler(
        store,
        clock,
        broken=JobSpec("test-fail", EVERY_5_MIN),
        counter=JobSpec("test-count", EVERY_5_MIN),
    )
    s.tick()
    clock.advance(minutes=5)
    with caplog.at_level(logging.ERROR, logger="crmsync.jobs"):
        assert s.tick() == ["broken", "counter"]
    (failed,) = runs.recent(store, "broken")
    assert failed.status == "failed"
    assert failed.message == "RuntimeError: the target said no"
    assert failed.finished_at == clock.now
    assert runs.recent(store, "counter")[0].status == "succeeded"
    assert "job broken failed: RuntimeError: the target said no" in caplog.text
    assert any(r.exc_info for r in caplog.records)  # the traceback is in the log


def test_run_keeps_ticking_until_stopped_and_survives_a_failing_tick(
    store: Store, clock: FakeClock, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = scheduler(store, clock, counter=JobSpec("test-count", EVERY_5_MIN))
    stop = threading.Event()
    ticks = 0
    real_tick = s.tick

    def tick() -> list[str]:
        nonlocal ticks
        ticks += 1
        if ticks == 1:
            raise OSError("store unreachable")
        fired = real_tick()
        clock.advance(minutes=5)
        if len(recorder.calls) == 2:
            stop.set()
        return fired

    monkeypatch.setattr(s, "tick", tick)
    thread = threading.Thread(target=s.run, args=(stop,), kwargs={"interval": 0.001})
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert len(recorder.calls) == 2 and ticks == 4  # failed, anchored, fired, fired


def test_a_changed_schedule_moves_the_next_occurrence_without_firing(
    store: Store, clock: FakeClock, recorder: Recorder
) -> None:
    daily = scheduler(store, clock, counter=JobSpec("test-count", "0 3 * * *"))
    daily.tick()
    assert claims.next_due(store, "counter") == clock.now.replace(day=7, hour=3, minute=0, second=0)
    hourly = scheduler(store, clock, counter=JobSpec("test-count", "30 * * * *"))
    assert hourly.tick() == []
    assert claims.next_due(store, "counter") == clock.now.replace(minute=30, second=0)
    clock.advance(hours=5)  # missed while down, then the schedule changed again
    assert scheduler(store, clock, counter=JobSpec("test-count", "0 4 * * *")).tick() == []
    assert claims.next_due(store, "counter") == clock.now.replace(day=7, hour=4, minute=0, second=0)
    assert recorder.calls == []


def test_disabled_jobs_are_not_fired(store: Store, clock: FakeClock, recorder: Recorder) -> None:
    s = scheduler(store, clock, counter=JobSpec("test-count", EVERY_5_MIN, enabled=False))
    s.tick()
    clock.advance(minutes=10)
    assert s.tick() == [] and recorder.calls == []
    assert claims.next_due(store, "counter") is None


def test_an_unknown_job_fails_when_the_scheduler_is_built(store: Store, clock: FakeClock) -> None:
    with pytest.raises(ConfigError, match="unknown job 'nope'"):
        scheduler(store, clock, x=JobSpec("nope", EVERY_5_MIN))


def test_run_job_by_hand_is_recorded_like_a_scheduled_run(
    store: Store, clock: FakeClock, recorder: Recorder
) -> None:
    run = run_job(store, "counter", JobSpec("test-count", EVERY_5_MIN, {"a": 1}), clock=clock)
    assert (run.job, run.status, run.started_at) == ("counter", "succeeded", clock.now)
    assert recorder.calls[0].scheduled_for is None
    failed = run_job(store, "broken", JobSpec("test-fail", EVERY_5_MIN), clock=clock)
    assert failed.status == "failed" and failed.message == "RuntimeError: the target said no"
    assert claims.next_due(store, "counter") is None  # the schedule is untouched
    latest = runs.latest(store, ["counter", "broken", "never"])
    assert {name: r.status for name, r in latest.items()} == {"counter": "succeeded", "broken": "failed"}


def test_long_messages_are_cut(store: Store, clock: FakeClock) -> None:
    run_id = runs.start(store, "x", clock.now)
    runs.finish(store, run_id, "failed", "e" * 5000, clock.now)
    run = runs.get(store, run_id)
    assert run is not None and run.message is not None
    assert len(run.message) == runs.MAX_MESSAGE and run.message.endswith("…")


def test_specs_from_config(recorder: Recorder) -> None:
    config = Config.model_validate(
        {"jobs": {"nightly": {"job": "test-count", "cron": "0 3 * * *", "args": {"a": 1}, "enabled": False}}}
    )
    assert specs_from_config(config) == {
        "nightly": JobSpec(job="test-count", cron="0 3 * * *", args={"a": 1}, enabled=False)
    }
