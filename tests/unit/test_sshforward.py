"""`ssh://` engines through a forwarded socket: what the first contact says, when it is forwarded, and how a
forward the Host refuses shows (a fake engine on a unix socket; the real sshd is tests/integration's)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from reconciler.drivers.engine import ssh, sshforward


@pytest.mark.parametrize(
    ("stdout", "version", "endpoint"),
    [
        ("unix:///var/run/docker.sock\n1.45\n", "1.45", "unix:///var/run/docker.sock"),
        ("1.41\n", "1.41", None),  # a docker CLI without `context` (before 19.03): its error went to /dev/null
        ("welcome to edge-a\nunix:///run/user/1000/docker.sock\n1.44\n", "1.44", "unix:///run/user/1000/docker.sock"),
        ("tcp://10.0.0.5:2376\n1.43\n", "1.43", "tcp://10.0.0.5:2376"),
        ("something else\n", None, None),
    ],
)
def test_the_first_contact_says_the_version_and_where_the_host_s_cli_connects(stdout, version, endpoint):
    assert ssh.first_contact(stdout) == ssh.FirstContact(version, endpoint)


def test_the_first_contact_asks_for_the_endpoint_before_the_version_whose_status_counts():
    """The version's exit status is the command's (a failing `docker version` is the clear one-line error)."""
    inspect, _, version = ssh._FIRST_CONTACT.partition("; ")
    assert inspect.startswith("docker context inspect") and inspect.endswith("2>/dev/null")
    assert version.startswith("docker version")


@pytest.mark.parametrize(
    ("endpoint", "forwarded"),
    [
        ("unix:///var/run/docker.sock", "/var/run/docker.sock"),
        ("unix:///run/reconciler-fleet/b/docker.sock", "/run/reconciler-fleet/b/docker.sock"),
        (" unix:///run/user/1000/docker.sock ", "/run/user/1000/docker.sock"),
        (None, None),  # no `context` command on the Host
        ("tcp://10.0.0.5:2376", None),
        ("ssh://deploy@elsewhere", None),
        ("npipe:////./pipe/docker_engine", None),
        ("unix://relative/docker.sock", None),
        ("unix:///odd:name.sock", None),  # `:` separates -L's two paths
        ("unix:///with space.sock", None),
        ("unix:///%h.sock", None),  # a token ssh would expand
    ],
)
def test_only_a_unix_socket_path_ssh_can_carry_is_forwarded(endpoint, forwarded):
    assert sshforward.remote_socket(endpoint) == forwarded


@contextmanager
def serving(path: Path, reply: bytes | None) -> Iterator[None]:
    """A unix socket answering every connection with `reply` (None: closing it unanswered, as ssh does with a
    channel the Host refused)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(8)

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                if reply is not None:
                    conn.recv(4096)
                    conn.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        listener.shutdown(socket.SHUT_RDWR)  # wakes the accept (a close alone does not)
        listener.close()
        thread.join(timeout=5)


def test_a_forward_is_relied_on_only_when_the_engine_answers_through_it(tmp_path):
    path = tmp_path / "engine.sock"
    with serving(path, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK"):
        assert sshforward.answers(path, 5)
    path.unlink()
    with serving(path, None):  # the master accepted, the Host refused the channel
        assert not sshforward.answers(path, 5)
    path.unlink()
    with serving(path, b"HTTP/1.1 404 Not Found\r\n\r\n"):
        assert not sshforward.answers(path, 5)
    assert not sshforward.answers(tmp_path / "none.sock", 5)  # no socket at all
