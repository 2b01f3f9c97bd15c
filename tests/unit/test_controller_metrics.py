"""Watch metrics: Prometheus text, the loopback-only rule, and the HTTP endpoints."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

import pytest

from reconciler.errors import PermanentError
from reconciler.watch.metrics import Metrics, parse_addr, serve


def test_render_counts_passes_changes_failures_and_histogram() -> None:
    """The exposition has every series with the recorded values."""
    m = Metrics()
    m.pass_done("ok", 0.2, when=1234.5)
    m.pass_done("failed", 3.0)
    m.change_applied("Volume", "create")
    m.change_applied("Volume", "create")
    m.change_failed("Network")
    text = m.render()
    assert 'reconcile_passes_total{result="ok"} 1' in text
    assert 'reconcile_passes_total{result="failed"} 1' in text
    assert 'reconcile_changes_applied_total{kind="Volume",action="create"} 2' in text
    assert 'reconcile_change_failures_total{kind="Network"} 1' in text
    assert "reconcile_last_successful_pass_timestamp_seconds 1234.500" in text
    assert 'reconcile_pass_duration_seconds_bucket{le="0.25"} 1' in text
    assert 'reconcile_pass_duration_seconds_bucket{le="5.0"} 2' in text
    assert 'reconcile_pass_duration_seconds_bucket{le="+Inf"} 2' in text
    assert "reconcile_pass_duration_seconds_count 2" in text
    assert "# TYPE reconcile_pass_duration_seconds histogram" in text


@pytest.mark.parametrize(
    ("addr", "expected"),
    [("127.0.0.1:9469", ("127.0.0.1", 9469)), ("localhost:1", ("127.0.0.1", 1)), ("[::1]:9469", ("::1", 9469))],
)
def test_loopback_addresses_are_accepted(addr: str, expected: tuple[str, int]) -> None:
    """Loopback HOST:PORT forms parse."""
    assert parse_addr(addr) == expected


@pytest.mark.parametrize("addr", ["0.0.0.0:9469", "192.0.2.1:9469", ":9469", "127.0.0.1", "127.0.0.1:0", "x:y"])
def test_other_addresses_are_refused(addr: str) -> None:
    """Non-loopback or malformed addresses are a clear error (the endpoints have no authentication)."""
    with pytest.raises(PermanentError, match="--metrics-addr"):
        parse_addr(addr)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_server_serves_metrics_and_health() -> None:
    """/metrics answers Prometheus text, /healthz JSON, anything else 404."""
    m = Metrics()
    m.pass_done("ok", 0.1)
    server = serve(f"127.0.0.1:{free_port()}", m)
    try:
        base = f"http://127.0.0.1:{server.port}"
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as resp:
            assert resp.status == 200 and b"reconcile_passes_total" in resp.read()
        with urllib.request.urlopen(f"{base}/healthz", timeout=5) as resp:
            assert json.loads(resp.read())["status"] == "ok"
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"{base}/nope", timeout=5)
    finally:
        server.close()
