"""A fleet at scale, the behaviour behind bench/fleet_scale.py's figures (issue 25, item 3), on the namespace
engines of scripts/fleetenv.sh: an ssh Host is one connection however many requests a command makes, and a Host
that hangs delays the others by its first-contact timeout only."""

from __future__ import annotations

import contextlib
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reconciler.drivers.engine.client import PING_TIMEOUT, TIMEOUT
from tests.helpers import remove_project_objects
from tests.sshmasters import own_masters

pytestmark = [pytest.mark.engine, pytest.mark.netns]

HOST_ADDRESS = "10.213.0.1"  # this machine's address on the fleet's bridge (scripts/fleetenv.sh)


class CountingForwarder:
    """A TCP forwarder to `target` on this machine's fleet address: counts the connections made through it and
    says how many are still open."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server((HOST_ADDRESS, 0))
        self.port = self.listener.getsockname()[1]
        self.accepted = 0
        self.open = 0
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target, timeout=10)
            upstream.settimeout(None)
            with self._lock:
                self.accepted += 1
                self.open += 1
                self._sockets += [client, upstream]
            done = threading.Event()
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b, done), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, done: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
        if done.is_set():  # the second direction ended too: the connection is over
            with self._lock:
                self.open -= 1
        done.set()

    def close(self) -> None:
        self.listener.close()
        with self._lock:
            for s in self._sockets:
                with contextlib.suppress(OSError):
                    s.close()


@pytest.fixture
def tree(fleet_env, project_name: str, tmp_path: Path) -> Iterator[Path]:
    """A manifest directory (TLS files of the fleet copied into pki/); the project's objects are removed from the
    namespace engines afterwards."""
    directory = tmp_path / "tree"
    (directory / "pki").mkdir(parents=True)
    for src, dst in ((fleet_env.tls_ca, "ca.pem"), (fleet_env.tls_cert, "cert.pem"), (fleet_env.tls_key, "key.pem")):
        shutil.copy(src, directory / "pki" / dst)
    yield directory
    for name in ("a", "b"):
        client = fleet_env.client(name, "unix")
        try:
            remove_project_objects(client, project_name)
        finally:
            client.close()


def containers(project: str, image: str, n: int) -> str:
    return "".join(
        f"---\napiVersion: reconciler/v1\nkind: Container\nmetadata: {{name: {project}-c{i}}}\n"
        f"spec: {{image: {image}, command: [sleep, '3600'], stopTimeout: 1}}\n"
        for i in range(n)
    )


def test_an_ssh_host_is_one_ssh_connection_however_many_requests(
    fleet_env, tree, reconcile: Callable[..., object], project_name, tmp_path
):
    """Each request to an ssh Host went through an `ssh ... docker system dial-stdio` process (up to ssh.POOL at
    once, plus the first-contact check): each of them was a TCP connection, a key exchange and a login of its own.
    They now share one master connection (over which the Host's engine socket is forwarded), which the next command
    finds and uses (no login at all) until it has been idle for sshmux.PERSIST_SECONDS."""
    b = fleet_env["b"]
    forwarder = CountingForwarder((b.address, 22))
    stack = contextlib.ExitStack()
    try:
        # the Host is reached through the forwarder, under engine b's host key
        wrapper = tmp_path / "bin" / "ssh"
        wrapper.parent.mkdir()
        wrapper.write_text(f'#!/bin/sh\nexec {fleet_env.ssh_path}/ssh -o HostKeyAlias={b.address} "$@"\n')
        wrapper.chmod(0o755)
        masters = stack.enter_context(own_masters())  # no master of an earlier test's command
        env = {"PATH": f"{wrapper.parent}:{fleet_env.ssh_env()['PATH']}", **masters}
        (tree / "hosts.yaml").write_text(
            "apiVersion: reconciler/v1\nkind: Host\nmetadata: {name: b}\n"
            f"spec: {{engine: 'ssh://root@{HOST_ADDRESS}:{forwarder.port}', default: true}}\n"
            + containers(project_name, fleet_env.base_image, 6)
        )
        for command, logins in ((("apply",), 1), (("plan", "--parallel", "16"), 0)):
            before = forwarder.accepted
            done = reconcile(*command, tree, env=env)
            assert done.returncode == 0, done.stdout + done.stderr
            # a dozen requests and more in flight than one connection serves: one login all the same (before:
            # the first-contact check, the version probe and one per kept connection, 3 to 6), and none for the
            # next command, which uses the master the first one left
            assert forwarder.accepted - before == logins, (command, forwarder.accepted - before)
        assert forwarder.open == 1  # the master, kept for the next command
    finally:
        stack.close()  # the masters told to end
        forwarder.close()


def test_a_hung_host_delays_the_others_by_its_first_contact_timeout_only(
    fleet_env, tree, reconcile: Callable[..., object], project_name
):
    """A Host whose engine process is stopped (SIGSTOP) accepts connections (the kernel queues them) and never
    answers. A listening socket that is never accepted from is exactly that, without stopping an engine other
    tests share. The other Hosts are applied; the command waits for the hung one no longer than the first
    contact's timeout (PING_TIMEOUT), not the timeout of a request (TIMEOUT)."""
    hung = socket.create_server((HOST_ADDRESS, 0), backlog=64)
    try:
        a, b = fleet_env["a"], fleet_env["b"]
        (tree / "hosts.yaml").write_text(
            f"""apiVersion: reconciler/v1
kind: Host
metadata: {{name: a-tls}}
spec: {{engine: '{a.tcp}', tls: {{ca: pki/ca.pem, cert: pki/cert.pem, key: pki/key.pem}}, default: true}}
---
apiVersion: reconciler/v1
kind: Host
metadata: {{name: b-ssh}}
spec: {{engine: '{b.ssh}'}}
---
apiVersion: reconciler/v1
kind: Host
metadata: {{name: hung}}
spec:
  engine: 'tcp://{HOST_ADDRESS}:{hung.getsockname()[1]}'
  tls: {{ca: pki/ca.pem, cert: pki/cert.pem, key: pki/key.pem}}
---
apiVersion: reconciler/v1
kind: Volume
metadata: {{name: {project_name}-v}}
spec: {{hosts: all}}
"""
        )
        started = time.monotonic()
        done = reconcile("apply", tree, env=fleet_env.ssh_env())
        took = time.monotonic() - started
        assert done.returncode == 1, done.stdout + done.stderr
        assert "Host hung" in done.stdout and "the engine did not answer in time" in done.stdout, done.stdout
        assert "Fleet: 3 hosts, 2 converged, 1 failed (hung)" in done.stdout, done.stdout
        for name in ("a", "b"):
            client = fleet_env.client(name, "unix")
            try:
                assert client.volumes(filters={"name": f"{project_name}-v"})["Volumes"], name
            finally:
                client.close()
        # not a timing ratio: a bound far above the first contact's PING_TIMEOUT that a wait for the hung Host's
        # request timeout would not stay under
        assert took < TIMEOUT, (took, PING_TIMEOUT)
    finally:
        hung.close()
