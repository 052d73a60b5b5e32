"""Two `notify worker` nodes on one RabbitMQ and PostgreSQL, one SIGKILLed mid-run: each event sent once.

The procedure is ``bench.scale.kill_one_node`` (``bench/scale.py`` runs it at 3,000 events): real
worker processes, the local Mandrill and Twilio servers answering every send after 100 ms, the second
node (no beat) killed once a third of the run reached the providers, the survivor left to finish,
and `unknown` rows settled the way the README tells an operator to. What the providers accepted,
per notification id, is the ground truth of what was sent.
"""

from __future__ import annotations

import pytest

from bench.scale import kill_one_node
from tests.conftest import require_service
from workers.messages import Status

pytestmark = [pytest.mark.slow, pytest.mark.rabbitmq, pytest.mark.postgres]

EVENTS = 300
CONCURRENCY = 8  # per node: sends still in flight at the kill, on a machine CI can afford


def test_a_node_killed_mid_send_leaves_every_event_sent_exactly_once() -> None:
    require_service("rabbitmq")
    require_service("postgres")
    report = kill_one_node(EVENTS, CONCURRENCY, delay=0.1)
    print("\n" + report.summary())

    assert report.victim_dead and report.survivor_alive
    assert report.at_provider_before_kill < EVENTS, "the kill came after the run was over"
    # The survivor took over the queue: it delivered after the kill and nothing is left queued.
    assert report.arrived_after_kill > 0
    assert dict(report.queues_left) == dict.fromkeys(report.queues_left, 0)
    # Nothing was sent twice, and nothing was lost.
    assert report.sent_twice == {}, f"sent twice: {report.sent_twice}"
    assert report.never_sent == frozenset(), f"never sent: {sorted(report.never_sent)}"
    assert set(report.final) == set(report.ids)
    # Only a send cut off by the kill may be in doubt; every other row ended `sent` by itself.
    for notification_id, status in report.statuses.items():
        if status is not Status.SENT:
            assert status is Status.UNKNOWN, (notification_id, status)
            assert notification_id in report.in_flight_at_kill, notification_id
    # After the operator's resends: `sent`, or `unknown` for a send the provider did accept.
    for notification_id, status in report.final.items():
        assert status is Status.SENT or (
            status is Status.UNKNOWN and report.accepted[notification_id] == 1
        ), (notification_id, status)
