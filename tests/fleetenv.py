"""The fleet of namespace engines of scripts/fleetenv.sh, for tests.

`fleet(swarm=False)` runs `scripts/fleetenv.sh up [--swarm]` once per test process (again only to add the
swarm) and returns a `Fleet`: every engine's unix, tcp (TLS) and ssh URLs, the TLS files, the ssh settings and the
swarm manager. `release()` gives the fleet back at session end: it takes the fleet down only when a test session
started it (not a person running `up` by hand), no other live test session still holds it, and
RECONCILER_FLEET_KEEP is not 1. `session()` is both as a context manager, the body of a session fixture:

    @pytest.fixture(scope="session")
    def fleet_env() -> Iterator[fleetenv.Fleet]:
        with fleetenv.session(swarm=True) as fleet:
            yield fleet

ssh: the engines are reached with the system ssh client and the generated config
`/var/lib/reconciler-fleet/ssh/config` (ssh reads ~/.ssh from the passwd entry, so HOME cannot point it
elsewhere). `fleet()` puts the directory of an `ssh` wrapper adding `-F <that config>` first in this process's
PATH, so docker-py's `use_ssh_client=True` and every subprocess the tests start (the reconcile CLI) use it;
`release()` takes it out again.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import docker
    import docker.tls

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "fleetenv.sh"
ENV_FILE = REPO / ".testenv" / "fleet.env"
RUN_DIR = Path(os.environ.get("RECONCILER_FLEET_RUN_DIR", "/run/reconciler-fleet"))
LEASE_LOCK = Path(f"{RUN_DIR}-leases.lock")
LEASE_DIR = RUN_DIR / "leases"
OWNER_FILE = RUN_DIR / "started-by"
SCRIPT_TIMEOUT = 300
ENGINE_TIMEOUT = 60


class FleetError(RuntimeError):
    """The fleet could not be started or read; the message carries the script's output."""


@dataclass(frozen=True)
class Engine:
    """One namespace engine: `name` is a, b, ...; the URLs are ready for docker-py's `base_url`."""

    name: str
    address: str
    unix: str
    tcp: str
    ssh: str
    netns: str

    @property
    def hostname(self) -> str:
        """The engine's hostname (`docker info` Name, the swarm node's hostname): its namespace's name."""
        return self.netns


@dataclass(frozen=True)
class Fleet:
    """What `.testenv/fleet.env` says about the running fleet."""

    engines: dict[str, Engine]
    host_address: str
    tls_ca: str
    tls_cert: str
    tls_key: str
    cert_path: str
    rogue_ca: str
    rogue_cert: str
    rogue_key: str
    ssh_config: str
    ssh_key: str
    ssh_known_hosts: str
    ssh_path: str
    registry: str
    base_image: str
    swarm_manager: str | None

    def __getitem__(self, name: str) -> Engine:
        return self.engines[name]

    def tls_config(
        self, *, ca: str | None = None, client: tuple[str, str] | bool | None = True
    ) -> docker.tls.TLSConfig:
        """Verified TLS: the fleet CA (or `ca`), the fleet client certificate (or `client`; False for none)."""
        import docker.tls

        if client is True:
            client = (self.tls_cert, self.tls_key)
        return docker.tls.TLSConfig(client_cert=client or None, ca_cert=ca or self.tls_ca, verify=True)

    def client(self, name: str, transport: str = "unix", **kwargs: object) -> docker.APIClient:
        """A docker-py APIClient of engine `name` over "unix", "tcp" (verified TLS) or "ssh" (system ssh).

        `kwargs` go to APIClient (e.g. `tls=self.tls_config(ca=...)`). The API version is the engine's own,
        asked over its unix socket, so the constructor opens no connection over the transport under test.
        """
        engine = self.engines[name]
        options: dict[str, object] = {"version": self.api_version(name), "timeout": ENGINE_TIMEOUT}
        if transport == "unix":
            options["base_url"] = engine.unix
        elif transport == "tcp":
            options.update(base_url=engine.tcp, tls=self.tls_config())
        elif transport == "ssh":
            options.update(base_url=engine.ssh, use_ssh_client=True)
            reap_docker_ssh_processes()
        else:
            raise ValueError(f"unknown transport {transport!r} (unix, tcp, ssh)")
        options.update(kwargs)
        client = tls_client(**options)
        if transport == "ssh":  # as reconcile's own clients: kept connections, closed with the client
            from reconciler.drivers.engine.ssh import keep_connections

            keep_connections(client)
        return client

    def api_version(self, name: str) -> str:
        """The API version engine `name` speaks (asked over its unix socket)."""
        import docker

        with docker.APIClient(base_url=self.engines[name].unix, version="1.24", timeout=ENGINE_TIMEOUT) as client:
            return client.version(api_version=False)["ApiVersion"]

    def ssh_env(self, env: dict[str, str] | None = None) -> dict[str, str]:
        """`env` (default os.environ) with the fleet's ssh wrapper first in PATH."""
        env = dict(os.environ if env is None else env)
        env["PATH"] = _with_ssh_path(env.get("PATH", ""), self.ssh_path)
        return env


def reap_docker_ssh_processes() -> None:
    """docker-py's `ssh` subprocess transport, made to close what it opened: the fix reconcile itself applies."""
    from reconciler.drivers.engine.ssh import patch_transport

    patch_transport()


def tls_client(**options: object) -> docker.APIClient:
    """docker.APIClient(**options) that ignores the environment's CA bundle and proxies.

    requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE (set on this machine, to the system bundle) replace the
    CA docker-py was given (psf/requests#3829): a verified connection to an engine with a private CA then fails
    with "unable to get local issuer certificate", and a test of a wrong CA would pass for the wrong reason.
    `trust_env = False` stops that (and keeps http(s)_proxy away from engine addresses). Pass a fixed
    `version`: "auto" would connect inside the constructor, before trust_env can be turned off.
    """
    import docker

    if options.get("version") in (None, "auto"):
        raise ValueError("tls_client needs a fixed API version")
    client = docker.APIClient(**options)  # type: ignore[arg-type]
    client.trust_env = False
    return client


def read_env_file(path: Path = ENV_FILE) -> Fleet:
    """Parse the `export NAME=value` lines of fleet.env into a Fleet."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FleetError(f"{path} is missing ({exc}); run scripts/fleetenv.sh up") from exc
    values = {
        m.group(1): m.group(2).strip("'\"") for m in re.finditer(r"^\s*export\s+([A-Z0-9_]+)=(.*)$", text, re.MULTILINE)
    }

    def get(key: str) -> str:
        try:
            return values[f"RECONCILER_FLEET_{key}"]
        except KeyError:
            raise FleetError(f"{path} has no RECONCILER_FLEET_{key}; run scripts/fleetenv.sh up") from None

    engines = {
        name: Engine(
            name=name,
            address=get(f"{name.upper()}_ADDR"),
            unix=get(f"{name.upper()}_UNIX"),
            tcp=get(f"{name.upper()}_TCP"),
            ssh=get(f"{name.upper()}_SSH"),
            netns=get(f"{name.upper()}_NETNS"),
        )
        for name in get("NAMES").split()
    }
    return Fleet(
        engines=engines,
        host_address=get("HOST_ADDR"),
        tls_ca=get("TLS_CA"),
        tls_cert=get("TLS_CERT"),
        tls_key=get("TLS_KEY"),
        cert_path=get("CERT_PATH"),
        rogue_ca=get("ROGUE_CA"),
        rogue_cert=get("ROGUE_CERT"),
        rogue_key=get("ROGUE_KEY"),
        ssh_config=get("SSH_CONFIG"),
        ssh_key=get("SSH_KEY"),
        ssh_known_hosts=get("SSH_KNOWN_HOSTS"),
        ssh_path=get("SSH_PATH"),
        registry=get("REGISTRY"),
        base_image=get("BASE_IMAGE"),
        swarm_manager=get("SWARM_MANAGER") or None,
    )


def run_script(*args: str, timeout: float = SCRIPT_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run scripts/fleetenv.sh ARGS as a test session (RECONCILER_FLEET_STARTED_BY=pytest), output captured."""
    env = {**os.environ, "RECONCILER_FLEET_STARTED_BY": "pytest"}
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def _with_ssh_path(path: str, ssh_path: str) -> str:
    parts = [p for p in path.split(os.pathsep) if p and p != ssh_path]
    return os.pathsep.join([ssh_path, *parts])


@contextmanager
def _lease_lock() -> Iterator[None]:
    """Serialises lease bookkeeping with up/down between concurrent test sessions (bounded wait)."""
    LEASE_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(LEASE_LOCK, "a") as handle:
        deadline = time.monotonic() + SCRIPT_TIMEOUT
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise FleetError(f"another test session holds {LEASE_LOCK}") from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _live_leases() -> list[Path]:
    leases = []
    for lease in LEASE_DIR.glob("*") if LEASE_DIR.is_dir() else []:
        if lease.name.isdigit() and Path(f"/proc/{lease.name}").exists():
            leases.append(lease)
    return leases


class _Session:
    fleet: Fleet | None = None
    lease: Path | None = None
    path_before: str | None = None


def fleet(swarm: bool = False) -> Fleet:
    """Start the fleet (once per process; again only to add the swarm) and return it. Raises FleetError."""
    current = _Session.fleet
    if current is not None and (current.swarm_manager or not swarm):
        return current
    with _lease_lock():
        proc = run_script("up", *(["--swarm"] if swarm else []))
        if proc.returncode != 0:
            # A half-started fleet that no session holds would stay behind: take it down if a session started it.
            if _Session.lease is None:
                with contextlib.suppress(FleetError, subprocess.TimeoutExpired):
                    _down_if_unheld()
            raise FleetError(f"scripts/fleetenv.sh up failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
        LEASE_DIR.mkdir(parents=True, exist_ok=True)
        lease = LEASE_DIR / str(os.getpid())
        lease.touch()
        _Session.lease = lease
    result = read_env_file()
    if _Session.path_before is None:
        _Session.path_before = os.environ.get("PATH", "")
    os.environ["PATH"] = _with_ssh_path(os.environ.get("PATH", ""), result.ssh_path)
    _Session.fleet = result
    return result


def release() -> None:
    """Give the fleet back: take it down if a test session started it and no other live session holds it."""
    if _Session.path_before is not None:
        os.environ["PATH"] = _Session.path_before
        _Session.path_before = None
    lease, _Session.lease, _Session.fleet = _Session.lease, None, None
    if lease is None:
        return
    with _lease_lock():
        lease.unlink(missing_ok=True)
        _down_if_unheld()


def _down_if_unheld() -> None:
    """`down`, when a test session started the fleet and no live session holds it (call with the lease lock)."""
    if os.environ.get("RECONCILER_FLEET_KEEP") == "1" or _live_leases():
        return
    try:
        owner = OWNER_FILE.read_text(encoding="utf-8").strip()
    except OSError:
        return  # not running, or taken down by hand meanwhile
    if owner != "pytest":
        return
    proc = run_script("down")
    if proc.returncode != 0:
        raise FleetError(f"scripts/fleetenv.sh down failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")


@contextmanager
def session(swarm: bool = False) -> Iterator[Fleet]:
    """`fleet(swarm)` for the body, `release()` afterwards."""
    result = fleet(swarm)
    try:
        yield result
    finally:
        release()
