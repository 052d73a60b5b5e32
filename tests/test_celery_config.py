"""The Celery app's settings: reliability rules fixed, Flower's task events a choice."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from kombu.utils.imports import symbol_by_name

from workers.celery_app import EVENT_CONSUMER_STEP, TASKS_MODULE, ThreadedBeat, create_app
from workers.ingest import EventConsumerStep
from workers.runtime import LazyRuntime
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


def test_the_app_carries_the_runtime_and_names_the_tasks_and_bus_consumer_it_loads(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    app = create_app(settings)
    assert app.settings is settings and isinstance(app.runtime, LazyRuntime)
    # By name, so celery_app imports neither; the names must still lead to the real things.
    assert TASKS_MODULE in app.conf.include
    assert EVENT_CONSUMER_STEP in app.steps["consumer"]
    assert symbol_by_name(EVENT_CONSUMER_STEP) is EventConsumerStep
    assert (
        EVENT_CONSUMER_STEP
        not in create_app(Settings(state_dir=tmp_path, consume_events=False)).steps["consumer"]
    )


def test_the_bus_consumer_step_takes_its_settings_from_its_parents_app(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    step = EventConsumerStep(SimpleNamespace(app=create_app(settings), hub=None))
    assert step.settings is settings


def test_importing_the_edge_modules_builds_nothing_and_registers_nothing(tmp_path: Path) -> None:
    # A fresh interpreter: this one has imported celery_app (which builds its app) already.
    code = (
        "import sys\n"
        "from kombu.transport import TRANSPORT_ALIASES\n"
        "import workers.broker, workers.ingest\n"
        "from workers.broker import EMBEDDED_SCHEME\n"
        "assert EMBEDDED_SCHEME not in TRANSPORT_ALIASES, 'the broker module registered its scheme'\n"
        "assert 'workers.celery_app' not in sys.modules, 'the bus consumer imported the app'\n"
        "assert 'workers.tasks' not in sys.modules, 'the bus consumer imported the tasks'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
