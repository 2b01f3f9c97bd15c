"""An sshd of a test's own in a fleet engine's network namespace (scripts/fleetenv.sh), to see what an `ssh://`
Host runs: engine NAME's sshd settings on another port, plus what the test adds (`AllowStreamLocalForwarding no`,
another DOCKER_HOST), a `docker` first on the Host's PATH that logs each start, and sshd's verbose log (a line per
session, one per refused forward).

    with host_sshd(fleet, "b", tmp_path, extra=["AllowStreamLocalForwarding no"]) as host:
        reconcile("plan", tree, env={"PATH": host.path})   # engine: host.url
        host.docker_started()                            # ["context inspect ...", "version ...", ...]
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests import fleetenv

START_TIMEOUT = 15


@dataclass(frozen=True)
class HostSshd:
    url: str  # ssh://root@ADDRESS:PORT
    path: str  # a PATH whose ssh knows the sshd's host key (the engine's) at this port
    docker_log: Path
    sshd_log: Path

    def docker_started(self) -> list[str]:
        """The arguments of every docker CLI started on the Host, in order."""
        return self.docker_log.read_text().splitlines() if self.docker_log.exists() else []

    def log(self) -> str:
        return self.sshd_log.read_text() if self.sshd_log.exists() else ""


@contextmanager
def host_sshd(
    fleet: fleetenv.Fleet, name: str, tmp_path: Path, extra: tuple[str, ...] = (), env: dict[str, str] | None = None
) -> Iterator[HostSshd]:
    """Start the sshd (a free port found by trying), yield it, stop it (by its pid) afterwards."""
    engine = fleet[name]
    work = tmp_path / f"sshd-{name}"
    (work / "bin").mkdir(parents=True)
    docker_log = work / "docker.log"
    docker = work / "bin" / "docker"
    docker.write_text(f'#!/bin/sh\necho "$*" >> {docker_log}\nexec /usr/bin/docker "$@"\n')
    docker.chmod(0o755)
    ssh = tmp_path / f"ssh-{name}" / "ssh"
    ssh.parent.mkdir()
    ssh.write_text(f'#!/bin/sh\nexec {fleet.ssh_path}/ssh -o HostKeyAlias={engine.address} "$@"\n')
    ssh.chmod(0o755)
    variables = {"DOCKER_HOST": engine.unix, **(env or {})}
    variables["PATH"] = f"{docker.parent}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    # engine NAME's own settings, minus its address, pid file and environment (sshd takes a keyword's first value)
    own = [
        line
        for line in (fleetenv.RUN_DIR / name / "sshd_config").read_text().splitlines()
        if not line.startswith(("ListenAddress", "PidFile", "SetEnv", "LogLevel"))
    ]
    pid_file, sshd_log = work / "sshd.pid", work / "sshd.log"
    nsenter = ["nsenter", f"--net=/var/run/netns/{engine.netns}"]
    for _ in range(10):
        port = random.randrange(20000, 40000)
        config = [
            f"SetEnv {' '.join(f'{k}={v}' for k, v in variables.items())}",
            *extra,
            f"ListenAddress {engine.address}:{port}",
            f"PidFile {pid_file}",
            "LogLevel VERBOSE",
            *own,
        ]
        (work / "sshd_config").write_text("\n".join(config) + "\n")
        started = subprocess.run(
            [*nsenter, "/usr/sbin/sshd", "-f", str(work / "sshd_config"), "-E", str(sshd_log)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
            check=False,
        )
        if started.returncode == 0:
            break
        if "Address already in use" not in sshd_log.read_text():
            raise RuntimeError(f"sshd did not start: {started.stderr}{sshd_log.read_text()}")
    else:
        raise RuntimeError("no free port for the test's sshd")
    deadline = time.monotonic() + START_TIMEOUT
    while not pid_file.exists():
        assert time.monotonic() < deadline, "sshd wrote no pid file"
        time.sleep(0.05)
    pid = int(pid_file.read_text().strip())
    try:
        yield HostSshd(
            url=f"ssh://root@{engine.address}:{port}",
            path=f"{ssh.parent}:{fleet.ssh_env()['PATH']}",
            docker_log=docker_log,
            sshd_log=sshd_log,
        )
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + START_TIMEOUT
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
