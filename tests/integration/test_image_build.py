"""Declarative builds on the real engine: rebuilt exactly when the inputs change, pushed to the loopback
registry, and every bad input a one-line error naming its manifest while the rest of the plan still runs."""

from __future__ import annotations

import contextlib
import json
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from docker.errors import APIError, NotFound

from tests.helpers import cli, image_manifest, plan_json_any

pytestmark = pytest.mark.engine


@pytest.fixture(autouse=True)
def remove_built_images(api, project_name) -> Iterator[None]:
    """Top-level project images go first: the classic builder leaves labelled intermediate images as their
    parents, which the generic project cleanup cannot remove while a child exists."""
    yield
    for image in api.images(filters={"label": [f"io.reconciler.project={project_name}"]}):
        with contextlib.suppress(NotFound, APIError):
            api.remove_image(image["Id"], force=True)


def build_manifest(name: str, reference: str, build: str, extra: str = "") -> str:
    return f"""
    apiVersion: reconciler/v1
    kind: Image
    metadata: {{name: {name}}}
    spec:
      reference: {reference}
      build: {build}
      {extra}
    """


def write_context(directory: Path, dockerfile: str = "FROM scratch\nARG V\nCOPY app.txt /app.txt\n") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "Dockerfile").write_text(dockerfile)
    (directory / "app.txt").write_text("v1\n")
    (directory / "notes.md").write_text("not sent to the engine\n")
    (directory / ".dockerignore").write_text("*.md\n")
    return directory


def test_rebuilt_exactly_when_inputs_change(api, project_name, reconcile, tmp_manifests, base_image, tmp_path):
    """Build, in sync; an ignored edit: nothing; a context edit: one rebuild; an args change: one rebuild."""
    ref = f"127.0.0.1:5000/{project_name}/app:1"
    ctx = write_context(tmp_manifests.dir / "app")
    tmp_manifests("img.yaml", build_manifest("app", ref, "{context: ./app, args: {V: '1'}}"))
    run = cli(reconcile, tmp_path)
    assert run("apply", tmp_manifests.dir).returncode == 0
    first = api.inspect_image(ref)
    labels = first["Config"]["Labels"]
    assert labels["io.reconciler.project"] == project_name and labels["io.reconciler.name"] == "app"
    assert labels["io.reconciler.input-hash"].startswith("sha256:")
    assert run("plan", tmp_manifests.dir).returncode == 0

    (ctx / "notes.md").write_text("edited, but ignored\n")
    assert run("plan", tmp_manifests.dir).returncode == 0

    (ctx / "app.txt").write_text("v2\n")
    code, plan = plan_json_any(run, tmp_manifests.dir)
    assert code == 2
    [change] = plan["changes"]
    assert change["action"] == "replace" and [f["path"] for f in change["fields"]] == ["build.context"]
    assert run("apply", tmp_manifests.dir).returncode == 0
    second = api.inspect_image(ref)
    assert second["Id"] != first["Id"]
    assert run("plan", tmp_manifests.dir).returncode == 0  # exactly one rebuild
    with pytest.raises(Exception, match="No such image"):
        api.inspect_image(first["Id"])  # the replaced build was ours, untagged and unused: removed

    tmp_manifests("img.yaml", build_manifest("app", ref, "{context: ./app, args: {V: '2'}}"))
    code, plan = plan_json_any(run, tmp_manifests.dir)
    assert code == 2 and [f["path"] for f in plan["changes"][0]["fields"]] == ["build.args"]
    assert run("apply", tmp_manifests.dir).returncode == 0
    assert api.inspect_image(ref)["Id"] != second["Id"]
    assert run("plan", tmp_manifests.dir).returncode == 0

    (tmp_manifests.dir / "img.yaml").unlink()
    # another declared image, present and in sync, keeps the project non-empty: the prune is all the apply does
    tmp_manifests("keep.yaml", image_manifest("keep", base_image))
    pruned = run("apply", tmp_manifests.dir)
    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    with pytest.raises(Exception, match="No such image"):
        api.inspect_image(ref)  # the project built it and nothing uses it: pruned with its manifest


def test_push_after_build_lands_in_the_registry(api, project_name, reconcile, tmp_manifests, tmp_path):
    """push: true pushes the built reference; the registry's digest is the engine's RepoDigest; then in sync."""
    ref = f"127.0.0.1:5000/{project_name}/pushed:1"
    write_context(tmp_manifests.dir / "app")
    tmp_manifests("img.yaml", build_manifest("pushed", ref, "{context: ./app}", "push: true"))
    run = cli(reconcile, tmp_path)
    proc = run("apply", tmp_manifests.dir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "image.push.progress" in proc.stderr and "image.build.step" in proc.stderr
    request = urllib.request.Request(
        f"http://127.0.0.1:5000/v2/{project_name}/pushed/manifests/1",
        method="HEAD",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        remote = resp.headers["Docker-Content-Digest"]
    assert f"127.0.0.1:5000/{project_name}/pushed@{remote}" in api.inspect_image(ref)["RepoDigests"]
    assert run("plan", tmp_manifests.dir).returncode == 0


class Refusing(BaseHTTPRequestHandler):
    """A registry that wants credentials nobody has."""

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="test"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_GET


@pytest.fixture
def refusing_registry() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_bad_inputs_are_one_line_each_and_the_rest_still_runs(
    api, project_name, reconcile, tmp_manifests, tmp_path, refusing_registry
):
    """Unknown host, unreachable registry, missing tag, refused auth, Never+absent: blocked lines naming their
    files; a Dockerfile syntax error and a failing step fail at apply; the good build is still applied."""
    registry = "127.0.0.1:5000"
    cases = {
        "unknown-host": (image_manifest("unknown-host", "no-such-host.invalid/x/y:1"), "unknown registry host"),
        "unreachable": (image_manifest("unreachable", "127.0.0.1:1/x/y:1"), "unreachable: connection refused"),
        "missing-tag": (image_manifest("missing-tag", f"{registry}/{project_name}/none:nope"), "not found"),
        "auth": (image_manifest("auth", f"{refusing_registry}/x/y:1"), "refused access to x/y"),
        "never": (image_manifest("never", f"{registry}/{project_name}/never:1", "Never"), "pullPolicy is Never"),
    }
    for name, (text, _) in cases.items():
        tmp_manifests(f"{name}.yaml", text)
    write_context(tmp_manifests.dir / "good")
    write_context(tmp_manifests.dir / "syntax", "FROMM scratch\n")
    write_context(tmp_manifests.dir / "step", "FROM scratch\nCOPY missing.txt /missing.txt\n")
    tmp_manifests("good.yaml", build_manifest("good", f"{registry}/{project_name}/good:1", "{context: ./good}"))
    tmp_manifests("syntax.yaml", build_manifest("syntax", f"{registry}/{project_name}/syntax:1", "{context: ./syntax}"))
    tmp_manifests("step.yaml", build_manifest("step", f"{registry}/{project_name}/step:1", "{context: ./step}"))
    run = cli(reconcile, tmp_path)

    proc = run("plan", tmp_manifests.dir)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    for name, (_, message) in cases.items():
        [line] = [x for x in lines if f"Image/{name}:" in x]
        assert "blocked" in line and message in line and f"({name}.yaml:1)" in line, line

    proc = run("apply", tmp_manifests.dir)
    assert proc.returncode == 1
    results = proc.stdout.splitlines()
    [syntax] = [x for x in results if "Image/syntax:" in x and "failed" in x]
    assert "syntax.yaml:1" in syntax and "unknown instruction: FROMM" in syntax
    [step] = [x for x in results if "Image/step:" in x and "failed" in x]
    assert (
        "step.yaml:1" in step
        and "at Step 2/" in step
        and "COPY missing.txt" in step
        and "missing.txt" in step.split("COPY missing.txt")[-1]
    )
    assert "Traceback" not in proc.stderr
    assert api.inspect_image(f"{registry}/{project_name}/good:1")["Config"]["Labels"]["io.reconciler.name"] == "good"


def test_missing_context_is_a_validation_error(reconcile, tmp_manifests):
    """A build context that does not exist: `file:line: Image/x: spec.build.context: ...`, nothing else runs."""
    tmp_manifests("img.yaml", build_manifest("x", "127.0.0.1:5000/t/x:1", "{context: ./nope}"))
    proc = reconcile("validate", tmp_manifests.dir)
    assert proc.returncode == 1
    assert (
        "img.yaml:" in proc.stderr
        and "Image/x" in proc.stderr
        and "build context './nope' does not exist" in proc.stderr
    )


def test_context_outside_the_manifest_directory_needs_the_opt_in(api, project_name, reconcile, tmp_manifests, tmp_path):
    """A context reached through `..` is refused (host files could end up in a pushed image) unless the build says
    allowExternalContext: true; then it is built, and the plan notes it."""
    write_context(tmp_path / "outside")
    ref = f"127.0.0.1:5000/{project_name}/outside:1"
    tmp_manifests("img.yaml", build_manifest("outside", ref, "{context: ../outside}"))
    run = cli(reconcile, tmp_path)
    proc = run("plan", tmp_manifests.dir)
    assert proc.returncode == 1
    assert "spec.build.context: build context '../outside' is outside the manifest directory" in proc.stderr
    assert "allowExternalContext: true" in proc.stderr
    tmp_manifests("img.yaml", build_manifest("outside", ref, "{context: ../outside, allowExternalContext: true}"))
    proc = run("plan", tmp_manifests.dir)
    assert proc.returncode == 2
    assert "outside the manifest directory" in proc.stdout
    assert run("apply", tmp_manifests.dir).returncode == 0
    api.inspect_image(ref)


def test_build_steps_are_json_events(project_name, reconcile, tmp_manifests, tmp_path):
    """`--log-format json` gives one image.build.step event per Dockerfile step."""
    write_context(tmp_manifests.dir / "app")
    tmp_manifests("img.yaml", build_manifest("app", f"127.0.0.1:5000/{project_name}/json:1", "{context: ./app}"))
    proc = reconcile("--log-format", "json", "apply", tmp_manifests.dir, env={"RECONCILER_STATE_DIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    steps = [json.loads(x)["step"] for x in proc.stderr.splitlines() if '"image.build.step"' in x]
    assert steps[:3] == ["Step 1/3 : FROM scratch", "Step 2/3 : ARG V", "Step 3/3 : COPY app.txt /app.txt"] or (
        steps[0].startswith("Step 1/") and any("COPY app.txt" in s for s in steps)
    )
