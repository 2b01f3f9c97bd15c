"""The engine client keeps every connection of many concurrent requests to one URL (`--parallel` above 10).

docker-py pools connections per request URL; with its default of 10 per pool, the 11th concurrent request to one
URL (every apply worker inspecting the same image) had its connection discarded on return, and when that pool was
evicted at the same moment the request failed ("'NoneType' object has no attribute 'qsize'", seen with
`apply --parallel 32`). A fake engine on a unix socket holds N requests until all N have arrived.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from reconciler.drivers.engine.client import connect
from tests.fakeengine import FakeEngine
from tests.fakeengine import serving as fake_serving

CONCURRENT = 24


class _Engine(FakeEngine):
    barrier: threading.Barrier

    def answer(self, line: bytes) -> tuple[bytes, bytes]:
        if b"/images/" in line:  # the concurrent ones: answered once all of them are in flight
            self.barrier.wait(timeout=20)
        return b"200 OK", b'{"ApiVersion": "1.41", "Id": "sha256:0"}'


def serving(path: str, handler: type[_Engine]) -> AbstractContextManager[None]:
    """A fake engine on unix socket `path` while the block runs, with a backlog for every connect at once."""
    return fake_serving(path, handler, backlog=4 * CONCURRENT)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[str]:
    path = str(tmp_path / "docker.sock")
    with serving(path, type("Handler", (_Engine,), {"barrier": threading.Barrier(CONCURRENT)})):
        yield f"unix://{path}"


def test_concurrent_requests_to_one_url_keep_their_connections(engine, caplog, monkeypatch):
    monkeypatch.delenv("DOCKER_TLS_VERIFY", raising=False)
    monkeypatch.delenv("DOCKER_CERT_PATH", raising=False)
    client = connect(engine)
    errors: list[BaseException] = []

    def inspect() -> None:
        try:
            client.inspect_image("busybox:1.35")
        except BaseException as exc:
            errors.append(exc)

    try:
        with caplog.at_level(logging.WARNING, logger="urllib3"):
            threads = [threading.Thread(target=inspect) for _ in range(CONCURRENT)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=30)
    finally:
        client.close()
    assert errors == []
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()]


def test_requests_to_many_urls_share_one_pool_and_reuse_its_connections(tmp_path, monkeypatch):
    """docker-py's unix adapter made a pool (and a connection) per request URL: one per container inspected."""
    monkeypatch.delenv("DOCKER_TLS_VERIFY", raising=False)
    monkeypatch.delenv("DOCKER_CERT_PATH", raising=False)
    path = str(tmp_path / "docker.sock")
    connections = []

    class Counting(_Engine):
        barrier = threading.Barrier(1)

        def setup(self) -> None:
            connections.append(self)
            super().setup()

    with serving(path, Counting):
        client = connect(f"unix://{path}")
        try:
            for i in range(30):
                client.inspect_container(f"c{i}")
            pools = len(client._custom_adapter.pools)
        finally:
            client.close()
    assert pools == 1
    assert len(connections) <= 2  # the version probe's own client, and this one's single kept connection


FAKE_SSH = """#!{python}
# stands in for the system ssh: logs its arguments; `docker system dial-stdio` relays stdin/stdout to the fake
# engine's socket, anything else (the preflight `docker version`) prints an API version
import socket, sys, threading
with open({log!r}, "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\\n")
if "dial-stdio" not in sys.argv[-1]:
    print("1.41")
    sys.exit(0)
sock = socket.socket(socket.AF_UNIX)
sock.connect({sock!r})

def pump():
    while data := sock.recv(65536):
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()

threading.Thread(target=pump, daemon=True).start()
while data := sys.stdin.buffer.read1(65536):
    sock.sendall(data)
"""


@pytest.fixture
def fake_ssh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An `ssh` first in PATH whose dial-stdio reaches a fake engine; yields the file it logs each start to."""
    monkeypatch.delenv("DOCKER_TLS_VERIFY", raising=False)
    monkeypatch.delenv("DOCKER_CERT_PATH", raising=False)
    path, log = str(tmp_path / "docker.sock"), tmp_path / "ssh-started"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ssh").write_text(FAKE_SSH.format(python=sys.executable, log=str(log), sock=path))
    (bin_dir / "ssh").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    with serving(path, type("Handler", (_Engine,), {"barrier": threading.Barrier(1)})):
        yield log


def dials(log: Path) -> int:
    return sum("dial-stdio" in line for line in log.read_text().splitlines())


def test_requests_to_an_ssh_engine_reuse_its_ssh_processes(fake_ssh):
    """docker-py's adapter for the system ssh client made a pool, so an ssh process, for every request."""
    client = connect("ssh://deploy@fake-host")
    try:
        for i in range(20):
            client.inspect_container(f"c{i}")
    finally:
        client.close()
    assert dials(fake_ssh) == 1  # this one's single kept connection (the version came from the first contact)


def test_an_ssh_engine_s_version_comes_from_the_first_contact_check(fake_ssh):
    """Each connection to an ssh engine starts a docker CLI on the Host (`docker system dial-stdio`): the version
    probe had one of its own, although the first-contact check had asked the Host's docker for the version."""
    client = connect("ssh://deploy@fake-host")
    try:
        assert dials(fake_ssh) == 0
        assert client.api_version == "1.41"
        client.inspect_container("c0")
        assert dials(fake_ssh) == 1
    finally:
        client.close()


def test_an_idle_or_ended_ssh_connection_is_not_used_again(fake_ssh, monkeypatch):
    """A pipe to ssh has no timeout: a kept connection idle too long, or whose ssh process ended, is replaced."""
    from reconciler.drivers.engine import ssh

    client = connect("ssh://deploy@fake-host")
    try:
        client.inspect_container("c0")
        before = dials(fake_ssh)
        (conn,) = [c for c in client._custom_adapter.pools.get(ssh._ONE_POOL).pool.queue if c is not None]
        conn.sock.proc.kill()
        conn.sock.proc.wait(timeout=10)
        client.inspect_container("c1")  # its ssh ended: a new one
        assert dials(fake_ssh) == before + 1
        client.inspect_container("c2")  # kept
        assert dials(fake_ssh) == before + 1
        monkeypatch.setattr(ssh, "IDLE_SECONDS", 0.0)
        client.inspect_container("c3")  # idle too long: a new one
        assert dials(fake_ssh) == before + 2
    finally:
        client.close()


def test_an_ssh_connection_closed_under_a_request_is_a_lost_connection(fake_ssh):
    """Issue 24, defect 5: a pipe closed under a response (the engine behind an ssh Host went) raised ValueError
    ("I/O operation on closed file"), which no layer took for a connection error: every object failed with
    `internal error` and a traceback. Now it is a lost connection, which a read retries on a new one."""
    client = connect("ssh://deploy@fake-host")
    try:
        client.inspect_container("c0")
        from reconciler.drivers.engine import ssh

        (conn,) = [c for c in client._custom_adapter.pools.get(ssh._ONE_POOL).pool.queue if c is not None]
        conn.sock.proc.stdout.close()
        assert client.inspect_container("c1")["Id"] == "sha256:0"  # retried on a new connection
        (conn,) = [c for c in client._custom_adapter.pools.get(ssh._ONE_POOL).pool.queue if c is not None]
        conn.sock.proc.stdin.close()
        assert client.inspect_container("c2")["Id"] == "sha256:0"
    finally:
        client.close()
