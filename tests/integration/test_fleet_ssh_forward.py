"""`ssh://` Hosts through the Host's engine socket forwarded over their one ssh connection (issue 25, item 3), on
sshds of the tests' own in engine b's namespace (tests/hostsshd.py): the docker CLI runs on the Host for the first
contact only, a Host that refuses the forward or whose docker CLI does not use a unix socket is reached through
`docker system dial-stdio` as before, and a forward whose master ended is made again."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reconciler.drivers.engine import sshmux
from reconciler.drivers.engine.client import connect
from tests.helpers import remove_project_objects
from tests.hostsshd import host_sshd
from tests.sshmasters import own_masters

pytestmark = [pytest.mark.engine, pytest.mark.netns]


@pytest.fixture
def tree(fleet_env, project_name: str, tmp_path: Path) -> Iterator[Path]:
    """A manifest directory; the project's objects are removed from engine b afterwards."""
    directory = tmp_path / "tree"
    directory.mkdir()
    yield directory
    client = fleet_env.client("b", "unix")
    try:
        remove_project_objects(client, project_name)
    finally:
        client.close()


def manifests(url: str, project: str, image: str, n: int) -> str:
    host = f"apiVersion: reconciler/v1\nkind: Host\nmetadata: {{name: b}}\nspec: {{engine: '{url}', default: true}}\n"
    return host + "".join(
        f"---\napiVersion: reconciler/v1\nkind: Container\nmetadata: {{name: {project}-c{i}}}\n"
        f"spec: {{image: {image}, command: [sleep, '3600'], stopTimeout: 1}}\n"
        for i in range(n)
    )


def converge(reconcile: Callable[..., subprocess.CompletedProcess[str]], tree: Path, path: str) -> None:
    """apply, then a plan with many requests in flight that finds nothing to do."""
    applied = reconcile("apply", tree, env={"PATH": path})
    assert applied.returncode == 0, applied.stdout + applied.stderr
    plan = reconcile("plan", tree, "--parallel", "8", env={"PATH": path})
    assert plan.returncode == 0, plan.stdout + plan.stderr


def running_on_b(fleet_env, project: str) -> int:
    client = fleet_env.client("b", "unix")
    try:
        return len(client.containers(filters={"label": [f"io.reconciler.project={project}"]}))
    finally:
        client.close()


def test_an_ssh_host_starts_the_docker_cli_there_for_the_first_contact_only(
    fleet_env, tree, reconcile, project_name, tmp_path
):
    """Each connection to an ssh Host was a `docker system dial-stdio`: a docker CLI started on the Host (~0.4 s),
    up to ssh.POOL per command besides the first contact's. Now the first command starts the first contact's two
    (where the CLI connects, the API version), every request goes through the forwarded socket, and the commands
    after it find master and forward still there: no session, no docker CLI on the Host. A command with no master
    left (another master directory here) makes its first contact again."""
    with host_sshd(fleet_env, "b", tmp_path) as host, own_masters() as masters, own_masters() as fresh:
        (tree / "hosts.yaml").write_text(manifests(host.url, project_name, fleet_env.base_image, 6))
        for command, env, expected in (
            (("apply",), masters, ["context", "version"]),
            (("plan", "--parallel", "8"), masters, []),
            (("status",), masters, []),
            (("status",), fresh, ["context", "version"]),
        ):
            before = len(host.docker_started())
            done = reconcile(*command, tree, env={"PATH": host.path, **env})
            assert done.returncode == 0, done.stdout + done.stderr
            started = [line.split()[0] for line in host.docker_started()[before:]]
            assert started == expected, (command, host.docker_started()[before:])
        assert running_on_b(fleet_env, project_name) == 6
        # one session per first contact: forwarded connections are channels, not sessions
        assert host.log().count("Starting session:") == 2, host.log()


@pytest.mark.parametrize("refusal", ["AllowStreamLocalForwarding no", "DisableForwarding yes"])
def test_a_host_that_refuses_the_forward_is_reached_through_dial_stdio(
    fleet_env, tree, reconcile, project_name, tmp_path, refusal
):
    """The master accepts a forward the Host refuses and then fails each connection through it: the first /_ping
    shows it, and the Host's engine is reached through dial-stdio as before."""
    with host_sshd(fleet_env, "b", tmp_path, extra=(refusal,)) as host:
        (tree / "hosts.yaml").write_text(manifests(host.url, project_name, fleet_env.base_image, 3))
        converge(reconcile, tree, host.path)
        assert running_on_b(fleet_env, project_name) == 3
        started = host.docker_started()
        assert any(line.startswith("context inspect") for line in started), started  # the first contact asked,
        assert "refused streamlocal port forward" in host.log(), host.log()  # the forward was tried and refused,
        assert any(line == "system dial-stdio" for line in started), started  # and dial-stdio served


def test_a_host_whose_docker_cli_uses_tcp_is_reached_through_dial_stdio(
    fleet_env, tree, reconcile, project_name, tmp_path
):
    """A Host whose docker CLI reaches its engine over TCP (here engine b's own TLS port): nothing to forward."""
    b = fleet_env["b"]
    env = {"DOCKER_HOST": b.tcp, "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": fleet_env.cert_path}
    with host_sshd(fleet_env, "b", tmp_path, env=env) as host:
        (tree / "hosts.yaml").write_text(manifests(host.url, project_name, fleet_env.base_image, 3))
        converge(reconcile, tree, host.path)
        assert running_on_b(fleet_env, project_name) == 3
        started = host.docker_started()
        assert any(line.startswith("context inspect") for line in started), started
        assert any(line == "system dial-stdio" for line in started), started
        assert "streamlocal" not in host.log(), host.log()


def master_pid(control: Path) -> int:
    """The pid of the master of control socket `control` (asking it is a session of its: not a way to wait)."""
    done = subprocess.run(
        [shutil.which("ssh") or "ssh", "-o", f"ControlPath={control}", "-O", "check", "reconcile-control"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    found = re.search(r"pid=(\d+)", done.stderr)
    assert done.returncode == 0 and found, done.stderr
    return int(found.group(1))


def running(pid: int) -> bool:
    """The process exists and is no zombie (the master's parent ended: PID 1 reaps it only now and then)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def test_a_forward_whose_master_ended_is_made_again(fleet_env, monkeypatch):
    """A master with a forward and no channel open ends `PERSIST_SECONDS` after the last one closed (shortened
    here); the forwarded socket is then refused. The next connection makes master and forward again and goes on."""
    monkeypatch.setattr(sshmux, "PERSIST_SECONDS", 2)
    monkeypatch.setattr(sshmux, "_directory", None)  # masters of this test's own
    with own_masters() as masters:
        monkeypatch.setenv("XDG_RUNTIME_DIR", masters["XDG_RUNTIME_DIR"])
        client = connect(fleet_env["b"].ssh)
        try:
            socket_path = Path(client._custom_adapter.socket_path)
            assert socket_path.parent == sshmux.directory() / "forwards", socket_path  # forwarded, not dial-stdio
            assert client.ping()
            (control,) = [p for p in sshmux.directory().iterdir() if p.is_socket()]
            first = master_pid(control)
            client.close()  # its kept connections were the master's open channels
            deadline = time.monotonic() + 60
            while running(first):
                assert time.monotonic() < deadline, "the master did not end after its last channel closed"
                time.sleep(0.2)
            assert socket_path.is_socket()  # left behind by the master, refusing
            assert client.ping()  # made again
            assert client.containers(all=True) is not None
            assert master_pid(control) != first
        finally:
            client.close()
