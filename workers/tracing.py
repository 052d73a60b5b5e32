"""Continues the event's trace (W3C ``traceparent`` or Jaeger ``uber-trace-id``) around delivery."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

tracer = trace.get_tracer("workers")


def _from_uber_trace_id(value: str) -> Context | None:
    """``{trace-id}:{span-id}:{parent-span-id}:{flags}`` in hex, as Jaeger clients send it."""
    parts = value.split(":")
    if len(parts) != 4:
        return None
    try:
        trace_id, span_id, flags = int(parts[0], 16), int(parts[1], 16), int(parts[3], 16)
    except ValueError:
        return None
    if not trace_id or not span_id:
        return None
    parent = SpanContext(
        trace_id=trace_id,
        span_id=span_id,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED if flags & 1 else TraceFlags.DEFAULT),
    )
    return trace.set_span_in_context(NonRecordingSpan(parent))


def parent_context(carrier: Mapping[str, str]) -> Context | None:
    """The remote parent carried in ``trace.trace_context``, if it holds one we understand."""
    lowered = {key.lower(): value for key, value in carrier.items()}
    if "traceparent" in lowered:
        context = propagate.extract(lowered)
        if trace.get_current_span(context).get_span_context().is_valid:
            return context
    if "uber-trace-id" in lowered:
        return _from_uber_trace_id(lowered["uber-trace-id"])
    return None


@contextmanager
def delivery_span(
    notification_id: str, carrier: Mapping[str, str], *, channel: str, attempt: int
) -> Iterator[trace.Span]:
    """The span of one delivery attempt, a child of the producer's span when the event carried one."""
    with tracer.start_as_current_span(
        "notifications.deliver",
        context=parent_context(carrier),
        kind=SpanKind.CONSUMER,
        attributes={"notification.id": notification_id, "notification.channel": channel, "attempt": attempt},
    ) as span:
        yield span


@contextmanager
def provider_span(provider: str) -> Iterator[trace.Span]:
    with tracer.start_as_current_span(
        "provider.send", kind=SpanKind.CLIENT, attributes={"provider": provider}
    ) as span:
        yield span
