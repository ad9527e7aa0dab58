"""OpenTelemetry set-up: OTLP when an endpoint is configured, in memory for tests."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

_provider: TracerProvider | None = None


def setup_tracing(
    service_name: str, otlp_endpoint: str = "", exporter: InMemorySpanExporter | None = None
) -> TracerProvider:
    """Returns the process's tracer provider, creating it on first use.

    The provider is global to the process (the OpenTelemetry API allows one), so when several
    services share a process, as in tests, their spans go to the same exporter.
    """
    global _provider
    if _provider is None:
        _provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        trace.set_tracer_provider(_provider)
        if otlp_endpoint:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            _add(_provider, BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint)))
    if exporter is not None:
        _add(_provider, SimpleSpanProcessor(exporter))
    return _provider


def _add(provider: TracerProvider, processor: SpanProcessor) -> None:
    provider.add_span_processor(processor)


def current_trace_id() -> str:
    """Hex trace id of the current span, or empty when there is none."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else ""
