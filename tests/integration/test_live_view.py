"""The live view of `apply`, seen as a person sees it: run in a real terminal (tmux) and read off the pane."""

from __future__ import annotations

import contextlib
import io
import random
import re
import secrets
import shlex
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import REPO, configured_docker_host

pytestmark = pytest.mark.engine

TMUX = shutil.which("tmux")
BLOB_BYTES = 60_000_000  # big enough for the pull to be seen at work on loopback


class Terminal:
    """A tmux session on a private server: type a command, read the screen."""

    def __init__(self, socket: str) -> None:
        self.socket = socket

    def tmux(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=True, timeout=10
        ).stdout

    def type(self, line: str) -> None:
        self.tmux("send-keys", "-t", "t", line, "Enter")

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "t", "-S", "-200")


@pytest.fixture
def terminal() -> Iterator[Terminal]:
    if TMUX is None:
        pytest.skip("tmux is not installed (scripts/testenv.sh installs it)")
    term = Terminal(f"rc-{secrets.token_hex(4)}")
    term.tmux("new-session", "-d", "-s", "t", "-x", "160", "-y", "60", "bash --norc --noprofile")
    try:
        yield term
    finally:
        subprocess.run(["tmux", "-L", term.socket, "kill-server"], capture_output=True, check=False)


@pytest.fixture
def remote_blob(api, base_image: str, project_name: str) -> Iterator[str]:
    """An image only the registry has (pushed, then removed from the engine), with one big layer."""
    reference = f"127.0.0.1:5000/{project_name}/blob:1"
    # the same bytes every run (fixed seed, fixed mtime): the registry keeps one copy of the layer, not one per run
    files = {
        "Dockerfile": f"FROM {base_image}\nCOPY blob /blob\n".encode(),
        "blob": random.Random(16).randbytes(BLOB_BYTES),
    }
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    for _ in api.build(fileobj=context, custom_context=True, tag=reference, rm=True, decode=True):
        pass
    for _ in api.push(reference, stream=True, decode=True):
        pass
    api.remove_image(reference, force=True)
    yield reference
    with contextlib.suppress(Exception):
        api.remove_image(reference, force=True)


def manifests(directory: Path, project: str, base_image: str, blob: str) -> None:
    (directory / "app").mkdir()
    (directory / "app" / "Dockerfile").write_text(f'FROM {base_image}\nRUN sleep 2\nCMD ["sleep", "3600"]\n')
    (directory / "all.yaml").write_text(
        f"""
apiVersion: reconciler/v1
kind: Image
metadata: {{name: {project}-app}}
spec: {{reference: "127.0.0.1:5000/{project}/app:1", pullPolicy: Never, build: {{context: ./app}}}}
---
apiVersion: reconciler/v1
kind: Image
metadata: {{name: {project}-blob}}
spec: {{reference: "{blob}"}}
---
apiVersion: reconciler/v1
kind: Container
metadata: {{name: {project}-db}}
spec:
  image: {blob}
  command: ["sleep", "3600"]
  networkMode: none
  healthcheck: {{test: ["CMD", "true"], interval: 1s, timeout: 1s, retries: 3, startPeriod: 0s}}
---
apiVersion: reconciler/v1
kind: Container
metadata: {{name: {project}-api}}
spec:
  image: "127.0.0.1:5000/{project}/app:1"
  networkMode: none
  dependsOn: [{{name: {project}-db, condition: healthy}}]
"""
    )


def test_apply_on_a_terminal_shows_one_live_line_per_object(
    terminal, project_name, tmp_manifests, base_image, remote_blob, tmp_path, api
):
    """In tmux: lines go waiting -> pulling (bytes) / building (step) -> starting/settling -> done, redrawn in
    place (each object has one line on the final screen), then the summary; logs stay on stderr."""
    manifests(tmp_manifests.dir, project_name, base_image, remote_blob)
    log = tmp_path / "apply.log"
    env = f"DOCKER_HOST={shlex.quote(configured_docker_host() or '')} RECONCILER_LOCK_DIR={tmp_path / 'locks'}"
    command = (
        f"cd {REPO} && {env} .venv/bin/python -m reconciler.cli -p {project_name} apply {tmp_manifests.dir} "
        f"2>{log}; printf 'EXIT%s=%s\\n' '' $?"  # the typed line itself does not read EXIT=
    )
    terminal.type("clear")
    terminal.type(command)
    seen: list[str] = []
    deadline = time.monotonic() + 180
    while "EXIT=" not in (screen := terminal.screen()):
        seen.extend(screen.splitlines())
        assert time.monotonic() < deadline, screen
        time.sleep(0.05)
    final = screen
    try:
        assert "EXIT=0" in final, final + log.read_text()
        subjects = [f"Image/{project_name}-app", f"Image/{project_name}-blob"]
        subjects += [f"Container/{project_name}-db", f"Container/{project_name}-api"]

        def live(subject: str, lines: list[str]) -> list[str]:
            return [line for line in lines if re.match(rf"^\S+\s+{re.escape(subject)}\s", line)]

        for subject in subjects:  # updated in place: one line per object at the end, in its end state
            [line] = live(subject, final.splitlines())
            assert re.search(r"\b(done|healthy)\s+created\s+\d+\.\ds$", line.rstrip()), line
        assert "Apply: 4 applied, 0 failed, 0 blocked, 0 skipped, 0 unchanged." in final

        states = {subject: " ".join(live(subject, seen)) for subject in subjects}
        assert re.search(r"building\s+\d+/\d+ : RUN sleep 2", states[subjects[0]]), states[subjects[0]]
        assert re.search(r"pulling\s+[\d.]+ [kM]B / [\d.]+ MB", states[subjects[1]]), states[subjects[1]]
        assert "waiting" in states[subjects[3]] and "settling" in states[subjects[3]], states[subjects[3]]
        assert "starting" in states[subjects[2]] + states[subjects[3]]
        [db_line] = live(subjects[2], final.splitlines())
        assert re.search(r"\bhealthy\s+created", db_line), db_line  # api saw it healthy
        assert "change.applied" in log.read_text()  # the logs went to stderr
        assert "change.applied" not in final

        terminal.type("clear")
        terminal.type(command.replace(" apply ", " apply --progress plain "))
        deadline = time.monotonic() + 60
        while "EXIT=" not in (screen := terminal.screen()):
            assert time.monotonic() < deadline, screen
            time.sleep(0.1)
        assert "No changes: everything is in sync." in screen
        assert "Apply: 0 applied, 0 failed, 0 blocked, 0 skipped, 4 unchanged." in screen
        assert not any(live(subject, screen.splitlines()) for subject in subjects)
    finally:
        print(final.strip("\n"))  # shown with -s, or when the test fails
        for name in (f"{project_name}-api", f"{project_name}-db"):
            with contextlib.suppress(Exception):
                api.remove_container(name, force=True)


def test_watch_on_a_terminal_draws_each_pass_that_repairs_something(
    terminal, project_name, tmp_manifests, base_image, tmp_path, api
):
    """In tmux: the first pass creates the container (its line and summary); a `docker stop` gives a titled pass
    with the container's line, updated, and its summary."""
    name = f"{project_name}-web"
    tmp_manifests(
        "web.yaml",
        f"""
        apiVersion: reconciler/v1
        kind: Container
        metadata: {{name: {name}}}
        spec:
          image: {base_image}
          command: ["sleep", "3600"]
          networkMode: none
        """,
    )
    log = tmp_path / "watch.log"
    env = f"DOCKER_HOST={shlex.quote(configured_docker_host() or '')} RECONCILER_LOCK_DIR={tmp_path / 'locks'}"
    terminal.type("clear")
    terminal.type(
        f"cd {REPO} && {env} .venv/bin/python -m reconciler.cli -p {project_name} watch {tmp_manifests.dir} "
        f"--resync 300 2>{log}"
    )

    def wait_screen(pattern: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, screen := terminal.screen(), re.MULTILINE):
            assert time.monotonic() < deadline, f"{pattern!r} not on screen:\n{screen}\n{log.read_text()}"
            time.sleep(0.1)
        return screen

    try:
        wait_screen(r"^Apply: 1 applied, 0 failed")
        assert re.search(rf"^\+\s+Container/{name}\s+done\s+created", terminal.screen(), re.MULTILINE)
        deadline = time.monotonic() + 30
        while "engine.events_connected" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        api.stop(name, timeout=1)
        screen = wait_screen(r"^Pass \d+ \(event:[^)]*\):\n~\s+Container/\S+\s+done\s+updated[^\n]*\nApply: 1 applied")
        assert "change.applied" not in screen and "change.applied" in log.read_text()
        terminal.tmux("send-keys", "-t", "t", "C-c")
    finally:
        print(terminal.screen().strip("\n"))
        with contextlib.suppress(Exception):
            api.remove_container(name, force=True)
