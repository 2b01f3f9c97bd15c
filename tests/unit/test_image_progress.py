"""Progress streams -> structlog events: one per layer status change, build steps, errors with their step."""

from __future__ import annotations

import pytest
import structlog
from structlog.testing import capture_logs

from reconciler.drivers.image.progress import BuildProgress, LayerProgress, StreamFailed


def test_pull_progress_reports_status_changes_and_quarters_only() -> None:
    """Byte-level progress collapses to quarter steps; repeated statuses are not repeated."""
    stream = [
        {"status": "Pulling from t/x", "id": "1"},
        {"status": "Pulling fs layer", "id": "abc"},
        *({"status": "Downloading", "id": "abc", "progressDetail": {"current": c, "total": 100}} for c in range(101)),
        {"status": "Pull complete", "id": "abc"},
        {"status": "Digest: sha256:" + "d" * 64},
        {"status": "Status: Downloaded newer image for t/x:1"},
    ]
    with capture_logs() as logs:
        digest = LayerProgress(structlog.get_logger(), "image.pull.progress", "t/x:1").follow(stream)
    assert digest == "sha256:" + "d" * 64
    events = [(e.get("status"), e.get("percent")) for e in logs if e.get("layer") == "abc"]
    assert events == [
        ("Pulling fs layer", None),
        ("Downloading", 25),
        ("Downloading", 50),
        ("Downloading", 75),
        ("Pull complete", None),
    ]
    assert all(e["event"] == "image.pull.progress" for e in logs)


def test_stream_error_becomes_an_exception() -> None:
    """An error item in a pull/push stream raises with the engine's message."""
    with pytest.raises(StreamFailed, match="denied: access"):
        LayerProgress(structlog.get_logger(), "image.push.progress", "x").follow([{"error": "denied: access"}])


def test_build_failure_names_the_failing_step() -> None:
    """A failed build reports the step that ran last and the engine's message; steps are logged."""
    stream = [
        {"stream": "Step 1/3 : FROM scratch"},
        {"stream": "\n"},
        {"stream": "Step 2/3 : RUN false"},
        {"stream": " ---> Running in 123\n"},
        {"errorDetail": {"message": "returned a non-zero code: 1"}, "error": "returned a non-zero code: 1"},
    ]
    progress = BuildProgress(structlog.get_logger(), "t/x:1")
    with capture_logs() as logs, pytest.raises(StreamFailed) as failed:
        progress.follow(stream)
    assert failed.value.step == "Step 2/3 : RUN false"
    assert failed.value.message == "returned a non-zero code: 1"
    assert [e["step"] for e in logs if e["event"] == "image.build.step"] == [
        "Step 1/3 : FROM scratch",
        "Step 2/3 : RUN false",
    ]


def test_build_reports_the_image_id() -> None:
    """The built image ID comes from the aux item."""
    stream = [{"stream": "Step 1/1 : FROM scratch\n"}, {"aux": {"ID": "sha256:" + "e" * 64}}]
    assert BuildProgress(structlog.get_logger(), "t/x:1").follow(stream) == "sha256:" + "e" * 64


def test_pull_and_build_report_bytes_and_steps_to_the_live_view() -> None:
    """With a `report` callback, a pull reports bytes summed over layers and a build each step."""
    reports: list[tuple[str, str]] = []
    stream = [
        {"status": "Downloading", "id": "a", "progressDetail": {"current": 500_000, "total": 2_000_000}},
        {"status": "Downloading", "id": "b", "progressDetail": {"current": 1_000_000, "total": 1_000_000}},
        {"status": "Pull complete", "id": "a"},
    ]
    LayerProgress(structlog.get_logger(), "image.pull.progress", "t/x:1", report=lambda *r: reports.append(r)).follow(
        stream
    )
    assert reports == [
        ("pulling", "500.0 kB / 2.0 MB, 1 layer"),
        ("pulling", "1.5 MB / 3.0 MB, 2 layers"),
        ("pulling", "3.0 MB / 3.0 MB, 2 layers"),
    ]
    reports.clear()
    BuildProgress(structlog.get_logger(), "t/x:1", report=lambda *r: reports.append(r)).follow(
        [{"stream": "Step 1/2 : FROM base\n"}, {"stream": " ---> abc\n"}, {"stream": "Step 2/2 : RUN make\n"}]
    )
    assert reports == [("building", "1/2 : FROM base"), ("building", "2/2 : RUN make")]
