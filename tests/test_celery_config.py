"""The Celery app's settings: reliability rules fixed, Flower's task events a choice."""

from __future__ import annotations

from pathlib import Path

from workers.celery_app import ThreadedBeat, create_app
from workers.settings import Settings


def test_reliability_settings_do_not_depend_on_the_event_knobs(tmp_path: Path) -> None:
    for events in (True, False):
        conf = create_app(Settings(state_dir=tmp_path, task_events=events, task_sent_events=events)).conf
        assert (conf.task_acks_late, conf.task_reject_on_worker_lost, conf.worker_prefetch_multiplier) == (
            True,
            True,
            1,
        )
        assert conf.accept_content == ["json"]
        assert (conf.worker_send_task_events, conf.task_send_sent_event) == (events, events)


def test_task_events_are_on_and_task_sent_events_off_by_default(tmp_path: Path) -> None:
    conf = create_app(Settings(state_dir=tmp_path)).conf
    assert (conf.worker_send_task_events, conf.task_send_sent_event) == (True, False)


def test_the_beat_thread_runs_only_when_asked_and_after_the_pool(tmp_path: Path) -> None:
    app = create_app(Settings(state_dir=tmp_path))
    assert ThreadedBeat in app.steps["worker"]
    assert "celery.worker.components:Pool" in ThreadedBeat.requires
    assert any(option.name == "sweeper_schedule" for option in app.user_options["worker"])
