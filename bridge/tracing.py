"""Optional OpenTelemetry tracing (`STK_TRACING`, `docs/operations.md` "Tracing"): one server span
per HTTP request, continuing the caller's trace from `traceparent`/`tracestate`.

Imported only when tracing is on (`bridge/app.py`), so with it off no SDK is loaded and the request
path does no tracing work beyond one `is None` check in `bridge/middleware.py`. Knows nothing of
tenancy: the middleware hands it plain strings.
"""

from __future__ import annotations

from typing import Literal

from opentelemetry import context, trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace import Span, SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.types import Scope

_PROPAGATED = (b"traceparent", b"tracestate")


def tracer_provider(
    mode: Literal["otlp", "console"], exporter: SpanExporter | None = None
) -> TracerProvider:
    """The provider for `mode`; `exporter` replaces the mode's own and exports each span as it
    ends (the hook tests use with the SDK's `InMemorySpanExporter`). The OTLP exporter reads the
    standard `OTEL_EXPORTER_OTLP_*` variables, the resource `OTEL_SERVICE_NAME`/
    `OTEL_RESOURCE_ATTRIBUTES`. Never installed as the global provider: the app owns it."""
    provider = TracerProvider(resource=Resource.create({"service.name": "santokit-bridge"}))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        own = OTLPSpanExporter() if mode == "otlp" else ConsoleSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(own))
    return provider


class RequestSpan:
    """The server span of one request, current while the request is served."""

    def __init__(self, span: Span, method: str) -> None:
        self.span = span
        self.method = method
        self._token = context.attach(trace.set_span_in_context(span))

    def end(
        self, route: str, status: int, project: str | None, env: str | None, request_id: str
    ) -> None:
        span = self.span
        span.update_name(f"{self.method} {route}")
        span.set_attribute("http.route", route)
        span.set_attribute("http.response.status_code", status)
        span.set_attribute("santokit.request_id", request_id)
        if project is not None:
            span.set_attribute("santokit.project", project)
        if env is not None:
            span.set_attribute("santokit.env", env)
        if status >= 500:
            span.set_status(StatusCode.ERROR)
        context.detach(self._token)
        span.end()


class RequestTracer:
    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self._tracer = provider.get_tracer("santokit.bridge")
        self._propagator = TraceContextTextMapPropagator()

    def start(self, scope: Scope) -> RequestSpan:
        """A server span whose parent is the W3C trace context the request carries, if valid."""
        carrier = {
            key.decode("latin-1"): value.decode("latin-1")
            for key, value in scope["headers"]
            if key in _PROPAGATED
        }
        method = scope.get("method", "")
        span = self._tracer.start_span(
            method,
            context=self._propagator.extract(carrier),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method},
        )
        return RequestSpan(span, method)

    def shutdown(self) -> None:
        """Flushes the spans still batched (the app's lifespan end)."""
        self.provider.shutdown()
