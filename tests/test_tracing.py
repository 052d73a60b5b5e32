"""The event's trace context continues as the deliver span and its provider call."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.factories import sms
from tests.test_dispatch import ScriptedProvider, make
from workers.events import parse_event_dict
from workers.ledger import Ledger
from workers.tracing import parent_context

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"

exporter = InMemorySpanExporter()
_provider = TracerProvider()
_provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(_provider)


@pytest.mark.parametrize(
    "carrier",
    [
        {"traceparent": f"00-{TRACE_ID}-{SPAN_ID}-01"},
        {"uber-trace-id": f"{TRACE_ID}:{SPAN_ID}:0:1"},
    ],
)
def test_deliver_span_continues_the_event_trace(ledger: Ledger, carrier: dict[str, str]) -> None:
    exporter.clear()
    dispatcher, _ = make(ledger, ScriptedProvider())
    event = sms()
    event["trace"] = {"traceContext": carrier}
    dispatcher.accept(parse_event_dict(event))
    dispatcher.deliver(event["core"]["id"])
    spans = {span.name: span for span in exporter.get_finished_spans()}
    deliver, send = spans["notifications.deliver"], spans["provider.send"]
    assert format(deliver.context.trace_id, "032x") == TRACE_ID
    assert deliver.parent is not None and format(deliver.parent.span_id, "016x") == SPAN_ID
    assert send.parent is not None and send.parent.span_id == deliver.context.span_id
    assert deliver.attributes is not None and deliver.attributes["notification.id"] == event["core"]["id"]


def test_garbage_trace_context_starts_a_fresh_trace() -> None:
    assert parent_context({"traceparent": "nonsense"}) is None
    assert parent_context({"uber-trace-id": "zz:1:0:1"}) is None
    assert parent_context({}) is None
