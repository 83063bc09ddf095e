"""`STK_TRACING` (`docs/operations.md` "Tracing"): one server span per request that continues the
caller's W3C trace, and no tracing work at all when off."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from support.bridge import running_bridge
from support.world import World, host

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


async def test_a_request_continues_the_callers_trace(tmp_path):
    exporter = InMemorySpanExporter()
    async with running_bridge(tmp_path, span_exporter=exporter, tracing="otlp") as bridge:
        key = await World(bridge).demo("shop")
        exporter.clear()
        response = await bridge.client.post(
            "/call",
            json={"path": "logics/public/stats"},
            headers={
                **host("shop"),
                "X-Santokit-Api-Key": key,
                "traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01",
                "tracestate": "vendor=opaque",
            },
        )
        assert response.status_code == 200
        [span] = exporter.get_finished_spans()
    assert span.kind is SpanKind.SERVER
    assert span.context is not None and span.parent is not None
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert format(span.parent.span_id, "016x") == PARENT_ID
    assert span.parent.is_remote
    assert span.context.trace_state.to_header() == "vendor=opaque"
    assert span.name == "POST logics/public/stats"
    assert span.attributes == {
        "http.request.method": "POST",
        "http.route": "logics/public/stats",
        "http.response.status_code": 200,
        "santokit.project": "shop",
        "santokit.env": "prod",
        "santokit.request_id": response.headers["x-request-id"],
    }
    assert span.resource.attributes["service.name"] == "santokit-bridge"


async def test_without_or_with_a_bad_traceparent_a_new_trace_starts(tmp_path):
    exporter = InMemorySpanExporter()
    async with running_bridge(tmp_path, span_exporter=exporter, tracing="console") as bridge:
        assert (await bridge.client.get("/healthz")).status_code == 200
        bad = {"traceparent": f"00-{'0' * 32}-{PARENT_ID}-01"}  # all-zero trace id: invalid
        assert (await bridge.client.get("/healthz", headers=bad)).status_code == 200
        missing = await bridge.client.post("/call", json={"path": "nope"}, headers=host("shop"))
        assert missing.status_code >= 400
        first, second, refused = exporter.get_finished_spans()
    for span in (first, second):
        assert span.parent is None
        assert span.context is not None and span.context.trace_id != int(TRACE_ID, 16)
        assert span.attributes is not None and span.attributes["http.route"] == "/healthz"
        assert "santokit.project" not in span.attributes  # no tenant was resolved
    assert first.context is not None and second.context is not None
    assert first.context.trace_id != second.context.trace_id
    assert refused.attributes is not None
    assert refused.attributes["http.response.status_code"] == missing.status_code
    assert refused.status.status_code is StatusCode.UNSET  # a 4xx is the caller's, not ours


def test_off_by_default_then_the_request_path_imports_no_tracing(tmp_path):
    """FastAPI itself imports `opentelemetry`'s API; with tracing off, serving a request loads
    nothing more: not `bridge.tracing`, not the SDK, no exporter."""
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from pathlib import Path
        import httpx
        from bridge.app import create_app
        from tenancy.keyring import Keyring
        from tenancy.settings import load_settings

        async def main():
            data = Path({str(tmp_path)!r})
            settings = load_settings(
                data_dir=data, registry_url=f"sqlite+aiosqlite:///{{data}}/registry.db",
                kv_url="memory://", tenant_data_dir=data,
            )
            before = {{m for m in sys.modules if m.startswith("opentelemetry")}}
            assert settings.tracing == "off"
            app = create_app(settings, Keyring.parse(Keyring.generate_entry("t")), [], migrate=True)
            async with app.lifespan():
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
                    assert (await client.get("/healthz")).status_code == 200
            loaded = {{m for m in sys.modules if m.startswith(("opentelemetry", "bridge.tracing"))}}
            print(sorted(loaded - before))

        asyncio.run(main())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_tracing_without_the_extra_stops_start_up(tmp_path, monkeypatch):
    from tenancy.settings import ConfigError, load_settings

    monkeypatch.setitem(sys.modules, "opentelemetry.sdk", None)  # as if not installed
    with pytest.raises(ConfigError) as refused:
        load_settings(data_dir=tmp_path, tracing="otlp")
    assert refused.value.problems == [
        "STK_TRACING: needs the OpenTelemetry SDK: pip install 'santokit-bridge[tracing]'"
    ]
    assert load_settings(data_dir=tmp_path, tracing="off").tracing == "off"
