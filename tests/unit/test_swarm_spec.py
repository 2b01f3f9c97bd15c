"""Pure parts of the swarm kinds: content-addressed Secret/Config specs, Service checks and event keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.contract import DriverContext, EngineEvent
from reconciler.drivers.swarm.driver import SecretDriver, ServiceDriver
from reconciler.drivers.swarm.spec import normalize_data, normalize_service
from reconciler.drivers.swarm.values import parse_duration, show_duration
from reconciler.errors import SpecError
from reconciler.model import Observed, Resource, Source


def resource(kind: str, name: str, spec: dict, manifest: Path) -> Resource:
    return Resource(kind, name, spec, {}, Source(manifest.name, 1, manifest))


def test_secret_engine_name_carries_the_content_hash_and_never_the_bytes(tmp_path: Path) -> None:
    """Same bytes -> same engine name wherever the file lives; other bytes -> another name; no value in the spec."""
    (tmp_path / "a.txt").write_bytes(b"hunter2")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_bytes(b"hunter2")
    manifest = tmp_path / "m.yaml"
    one = normalize_data(resource("Secret", "db", {"file": "./a.txt"}, manifest))
    two = normalize_data(resource("Secret", "db", {"file": "sub/b.txt"}, manifest))
    assert one.spec["engineName"] == two.spec["engineName"] and one.spec_hash == two.spec_hash
    assert one.spec["engineName"].startswith("db-") and len(one.spec["engineName"]) == len("db-") + 8
    assert "hunter2" not in repr(one.spec) and one.sensitive == frozenset({"content"})
    (tmp_path / "a.txt").write_bytes(b"hunter3")
    three = normalize_data(resource("Secret", "db", {"file": "./a.txt"}, manifest))
    assert three.spec["engineName"] != one.spec["engineName"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("db", None, "does not exist"),
        ("db", b"", "empty"),
        ("x" * 56, b"v", "at most 55 characters"),
    ],
)
def test_secret_problems_are_spec_errors(tmp_path: Path, name: str, content: bytes | None, message: str) -> None:
    """A missing or empty file, or a name too long for the hash suffix: a SpecError naming the field."""
    if content is not None:
        (tmp_path / "s").write_bytes(content)
    with pytest.raises(SpecError) as caught:
        normalize_data(resource("Secret", name, {"file": "./s"}, tmp_path / "m.yaml"))
    assert message in str(caught.value)


def test_service_defaults_are_the_engines() -> None:
    """A bare manifest fills the CLI's defaults: 1 replica, stop-first, pause, monitor 5s, 10s grace, 0444 files."""
    spec = normalize_service(
        resource("Service", "web", {"image": "busybox", "secrets": [{"name": "pw"}]}, Path("/tmp/m.yaml"))
    ).spec
    assert spec["image"] == "busybox:latest" and spec["replicas"] == 1
    assert spec["update"] == spec["rollback"]
    assert spec["update"]["order"] == "stop-first" and spec["update"]["monitor"] == parse_duration("5s", "x")
    assert spec["stopGracePeriod"] == 10 * 10**9
    assert spec["secrets"] == [{"name": "pw", "target": "pw", "uid": "0", "gid": "0", "mode": 0o444}]


@pytest.mark.parametrize(("mode", "expected"), [("0o400", 0o400), ("0440", 0o440), (256, 256)])
def test_file_modes_read_as_octal(mode: object, expected: int) -> None:
    """`0o400` (read by YAML 1.1 as a string), `"0440"` and an integer all mean the same mode."""
    spec = normalize_service(
        resource("Service", "web", {"image": "b", "configs": [{"name": "c", "mode": mode}]}, Path("/tmp/m.yaml"))
    ).spec
    assert spec["configs"][0]["mode"] == expected and spec["configs"][0]["target"] == "/c"


def test_env_file_values_are_sensitive(tmp_path: Path) -> None:
    """Every name from an env file is marked sensitive, like a container's."""
    (tmp_path / "e.env").write_text("TOKEN=abc\n")
    desired = normalize_service(
        resource("Service", "web", {"image": "b", "envFiles": ["./e.env"], "env": {"A": "1"}}, tmp_path / "m.yaml")
    )
    assert desired.sensitive == frozenset({"env.TOKEN"}) and desired.spec["env"] == {"A": "1", "TOKEN": "abc"}


def test_durations_show_as_written() -> None:
    """Plans show nanoseconds the way people write them."""
    assert [show_duration(parse_duration(v, "x")) for v in ("5s", "1m30s", "500ms", "0")] == [
        "5s",
        "1m30s",
        "500ms",
        "0s",
    ]


def test_service_and_task_container_events_name_known_services() -> None:
    """A service event by its name, a task container's by its service label; unknown services are ignored."""
    driver = ServiceDriver(DriverContext("p", Path("/tmp")))
    known = {("Service", "web")}
    service = EngineEvent("update", {"Type": "service", "Actor": {"Attributes": {"name": "web"}}}, "service")
    task = EngineEvent(
        "die",
        {"Type": "container", "Actor": {"Attributes": {"com.docker.swarm.service.name": "web"}}},
        "container",
    )
    other = EngineEvent("remove", {"Type": "service", "Actor": {"Attributes": {"name": "db"}}}, "service")
    assert list(driver.event_keys(service, "p", known)) == [("Service", "web")]
    assert list(driver.event_keys(task, "p", known)) == [("Service", "web")]
    assert list(driver.event_keys(other, "p", known)) == []


def test_old_versions_are_leftovers_of_their_declared_name() -> None:
    """An older version (keyed by its engine name) is replace state of the declared Secret: pruned even with
    --no-prune; the current version (keyed by the declared name) is not a leftover."""
    driver = SecretDriver(DriverContext("p", Path("/tmp")))
    old = Observed("Secret", "db-0badc0de", "id", {"io.reconciler.name": "db"}, {"engineName": "db-0badc0de"})
    current = Observed("Secret", "db", "id2", {"io.reconciler.name": "db"}, {"engineName": "db-12345678"})
    assert driver.leftover_of(old) == "db"
    assert driver.leftover_of(current) is None


def test_a_secret_name_is_no_plain_hash_of_its_value(tmp_path: Path) -> None:
    """A Secret's version suffix is a salted slow derivation (guessing a short password from the engine name
    is expensive); a Config's is the plain sha256 of its bytes."""
    import hashlib

    (tmp_path / "v").write_bytes(b"hunter2")
    plain = hashlib.sha256(b"hunter2").hexdigest()
    secret = normalize_data(resource("Secret", "db", {"file": "./v"}, tmp_path / "m.yaml"))
    config = normalize_data(resource("Config", "db", {"file": "./v"}, tmp_path / "m.yaml"))
    assert secret.spec["hash"] != plain and config.spec["hash"] == plain
    other = normalize_data(resource("Secret", "db2", {"file": "./v"}, tmp_path / "m.yaml"))
    assert other.spec["hash"] != secret.spec["hash"]  # salted by name


class NotAManager:
    """An engine that is not a swarm manager: every swarm listing answers 503, as dockerd does."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def _refuse(self, name: str) -> None:
        import requests
        from docker.errors import APIError

        self.calls.append(name)
        response = requests.Response()
        response.status_code = 503
        raise APIError("503", response, explanation="This node is not a swarm manager. Use docker swarm init")

    def services(self, **_: object) -> None:
        self._refuse("services")

    def secrets(self, **_: object) -> None:
        self._refuse("secrets")


@pytest.mark.parametrize("declared", [False, True])
def test_an_engine_without_swarm_plans_containers_and_blocks_services(tmp_path: Path, declared: bool) -> None:
    """No swarm kinds declared: observe finds nothing and raises nothing (every other tree plans as before);
    declared: the change is blocked saying the engine is not a swarm manager."""
    engine = NotAManager()
    ctx = DriverContext("p", tmp_path, engine_factory=lambda: engine)
    (tmp_path / "s").write_text("v")
    services, secrets = ServiceDriver(ctx), SecretDriver(ctx)
    web = services.normalize(resource("Service", "web", {"image": "b"}, tmp_path / "m.yaml"))
    pw = secrets.normalize(resource("Secret", "pw", {"file": "./s"}, tmp_path / "m.yaml"))
    assert services.observe([web] if declared else []) == {}
    assert secrets.observe([pw] if declared else []) == {}
    assert engine.calls == ["services", "secrets"]
    if declared:
        assert "not a swarm manager" in (services.diff(web, None).blocked or "")
        assert "not a swarm manager" in (secrets.diff(pw, None).blocked or "")


def test_the_swarm_example_is_valid() -> None:
    """examples/swarm passes validation (it is applied by hand against the test engine, see docs/swarm.md)."""
    from reconciler.core.project import ProjectRunner

    example = Path(__file__).resolve().parents[2] / "examples" / "swarm"
    loaded = ProjectRunner("swarm-demo", example).load_valid()
    kinds = sorted(r.kind for r in loaded.resources)
    assert kinds == ["Config", "Network", "Secret", "Service", "Service"]


CONTRACT_SERVICE = """
apiVersion: reconciler/v1
kind: Service
metadata: {name: web}
spec:
  image: 127.0.0.1:5000/web:1.2
  mode: replicated                    # replicated (default) | global
  replicas: 3                         # replicated only; default 1
  ports: [{containerPort: 80, hostPort: 8080, protocol: tcp, publishMode: ingress}]   # ingress (default) | host
  secrets: [{name: db-password, target: db_password, uid: "0", gid: "0", mode: 0o400}]
  configs: [{name: web-conf, target: /etc/web.conf}]
  placement: {constraints: ["node.role==worker"], preferences: [{spread: node.labels.zone}], maxReplicasPerNode: 2}
  update: {parallelism: 1, delay: 5s, order: start-first, failureAction: rollback, monitor: 10s}
  rollback: {parallelism: 1, order: stop-first}
  restartPolicy: {condition: any, delay: 5s, maxAttempts: 0}
  stopGracePeriod: 10s
---
apiVersion: reconciler/v1
kind: Secret                          # Config: the same shape
metadata: {name: db-password}
spec:
  file: ./secrets/db-password.txt     # relative to the manifest; content never printed
"""


def test_the_contracts_swarm_example_is_valid(tmp_path: Path) -> None:
    """The Service and Secret example of shared/CONTRACT.md loads without a problem (`mode: 0o400` is read by
    YAML as a string and taken as octal)."""
    from reconciler.core.project import ProjectRunner

    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "db-password.txt").write_text("pw")
    (tmp_path / "m.yaml").write_text(CONTRACT_SERVICE)
    loaded = ProjectRunner("p", tmp_path).load_valid()
    web = loaded.catalog.get("Service", "web")
    assert web is not None and web.spec["secrets"][0]["mode"] == 0o400
    assert web.spec["update"]["failureAction"] == "rollback" and web.spec["rollback"]["failureAction"] == "pause"


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"mode": "global", "placement": {"maxReplicasPerNode": 1}}, "spec.placement.maxReplicasPerNode"),
        ({"rollback": {"failureAction": "rollback"}}, "spec.rollback.failureAction"),
        ({"endpointMode": "dnsrr", "ports": [{"containerPort": 80}]}, "spec.endpointMode"),
        (
            {"ports": [{"containerPort": 80, "hostPort": 81}, {"containerPort": 90, "hostPort": 81}]},
            "spec.ports.1.hostPort",
        ),
        (
            {"secrets": [{"name": "a", "target": "/x"}], "configs": [{"name": "b", "target": "/x"}]},
            "spec.configs.0.target",
        ),
    ],
)
def test_service_checks(tmp_path: Path, spec: dict, field: str) -> None:
    """What the schema cannot say is reported by check() at the field."""
    from reconciler.core.catalog import Catalog

    driver = ServiceDriver(DriverContext("p", tmp_path))
    desired = driver.normalize(resource("Service", "web", {"image": "b", **spec}, tmp_path / "m.yaml"))
    assert [f for f, _ in driver.check(desired, Catalog())] == [field]
