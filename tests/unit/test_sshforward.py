"""`ssh://` engines through a forwarded socket: what the first contact says, when it is forwarded, and how a
forward the Host refuses shows (a fake engine on a unix socket; the real sshd is tests/integration's)."""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from reconciler.drivers.engine import ssh, sshforward, sshmux


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


@pytest.fixture
def users_directory(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """sshmux's directory, the user's own, in a short directory of the test's (XDG_RUNTIME_DIR)."""
    runtime = Path(tempfile.mkdtemp(prefix="rxf", dir="/tmp"))
    monkeypatch.setattr(sshmux, "_directory", None)
    monkeypatch.setattr(sshmux, "_private", False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    try:
        yield sshmux.directory()
    finally:
        shutil.rmtree(runtime, ignore_errors=True)


URL, HOST = "ssh://root@edge-a", ["--", "edge-a"]
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK"


def test_an_earlier_commands_forward_is_used_while_the_engine_answers_through_it(users_directory, monkeypatch):
    """The next command finds the endpoint recorded beside the forward: no first contact, no new forward (no ssh
    run at all: establish answers at once)."""
    monkeypatch.setattr(sshforward.Forward, "_ssh", lambda *a, **k: pytest.fail("no ssh may run"))
    assert sshforward.kept(URL, HOST, 5) is None  # nothing recorded yet
    made = sshforward.Forward(URL, HOST, "/var/run/docker.sock", 5)
    with serving(made.local, OK):
        assert sshforward.open_forward(URL, HOST, "unix:///var/run/docker.sock", 5) is not None  # records it
        again = sshforward.kept(URL, HOST, 5)
        assert again is not None and again.local == made.local and again.remote == "/var/run/docker.sock"
        assert sshforward.kept("ssh://root@edge-b", HOST, 5) is None  # another Host: its own record


def test_a_kept_forward_whose_master_ended_means_a_first_contact_again(users_directory):
    made = sshforward.Forward(URL, HOST, "/var/run/docker.sock", 5)
    with serving(made.local, OK):
        assert sshforward.open_forward(URL, HOST, "unix:///var/run/docker.sock", 5) is not None
    assert made.local.exists()  # left by the master that ended: refused
    assert sshforward.kept(URL, HOST, 5) is None


def test_a_kept_forward_the_engine_does_not_answer_through_is_a_hung_engine(users_directory):
    """The master takes the connection and the stopped engine never answers: waiting for a first contact would
    wait for it again."""
    made = sshforward.Forward(URL, HOST, "/var/run/docker.sock", 5)
    with serving(made.local, OK):
        assert sshforward.open_forward(URL, HOST, "unix:///var/run/docker.sock", 5) is not None
    made.local.unlink()
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # accepts (the backlog), never answers
    silent.bind(str(made.local))
    silent.listen(8)
    try:
        with pytest.raises(sshforward.EngineHung):
            sshforward.kept(URL, HOST, 0.5)
    finally:
        silent.close()


def test_nothing_is_recorded_or_kept_in_a_private_directory(monkeypatch, tmp_path):
    monkeypatch.setattr(sshmux, "_directory", tmp_path)
    monkeypatch.setattr(sshmux, "_private", True)
    made = sshforward.Forward(URL, HOST, "/var/run/docker.sock", 5)
    with serving(made.local, OK):
        assert sshforward.open_forward(URL, HOST, "unix:///var/run/docker.sock", 5) is not None
        assert sshforward.kept(URL, HOST, 5) is None
    assert not list((tmp_path / "forwards").glob("*.endpoint"))
