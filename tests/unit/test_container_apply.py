"""Container apply helpers without an engine: update bodies, dependency waits and the create call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests
import structlog
from docker.errors import APIError

from reconciler.drivers.container import apply as container_apply
from reconciler.drivers.container.apply import create_config, wait_for
from reconciler.drivers.container.fields import in_place_body
from reconciler.drivers.container.inplace import reconnect
from reconciler.drivers.container.spec import normalize_container
from reconciler.errors import PermanentError, TemporaryError
from reconciler.model import Resource, Source

IMAGE = "127.0.0.1:5000/reconciler/busybox:1.35"


def spec_of(spec: dict) -> dict:
    res = Resource("Container", "web", {"image": IMAGE, **spec}, {}, Source("w.yaml", 1, Path("/tmp/w.yaml")))
    return dict(normalize_container(res).spec)


def test_memory_is_sent_with_its_swap() -> None:
    """Raising memory sends MemorySwap too (twice memory when undeclared), or the engine refuses it."""
    body = in_place_body(spec_of({"resources": {"memory": "128m"}}), {"resources": ["memory"]})
    assert body == {"Memory": 128 * 2**20, "MemorySwap": 256 * 2**20}


def test_removing_pids_limit_sends_unlimited() -> None:
    """PidsLimit can be lifted in place with -1 (zero values are ignored by the update API)."""
    assert in_place_body(spec_of({}), {"resources": ["pidsLimit"]}) == {"PidsLimit": -1}


def test_restart_policy_body() -> None:
    """The restart policy goes in the same update call; `no` is sent as the empty name."""
    body = in_place_body(
        spec_of({"restartPolicy": {"name": "on-failure", "maximumRetryCount": 3}}), {"restartPolicy": []}
    )
    assert body == {"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3}}
    assert in_place_body(spec_of({}), {"restartPolicy": []}) == {"RestartPolicy": {"Name": "no"}}


def states(*docs: dict) -> Any:
    """An inspect function returning the given State documents one after the other (the last one repeats)."""
    seq = list(docs)

    def inspect(name: str) -> dict:
        return {"State": seq.pop(0) if len(seq) > 1 else seq[0]}

    return inspect


def test_wait_for_healthy_polls_until_healthy(monkeypatch: pytest.MonkeyPatch) -> None:
    """`healthy` waits through `starting` and returns once the health status is healthy."""
    monkeypatch.setattr(container_apply, "POLL_SECONDS", 0)
    inspect = states(
        {"Running": True, "Health": {"Status": "starting"}},
        {"Running": True, "Health": {"Status": "healthy"}},
    )
    wait_for(inspect, "db", "healthy", 5 * 10**9)


def test_wait_for_fails_clearly_when_unhealthy(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unhealthy dependency fails at once, naming it and its last probe output."""
    monkeypatch.setattr(container_apply, "POLL_SECONDS", 0)
    inspect = states({"Running": True, "Health": {"Status": "unhealthy", "Log": [{"Output": "boom\n"}]}})
    with pytest.raises(PermanentError, match=r"dependency db is unhealthy.*boom"):
        wait_for(inspect, "db", "healthy", 5 * 10**9)


def test_wait_for_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """A dependency that never gets there fails after the bounded timeout, saying what it last saw."""
    monkeypatch.setattr(container_apply, "POLL_SECONDS", 0.01)
    inspect = states({"Running": True, "Health": {"Status": "starting"}})
    with pytest.raises(PermanentError, match=r"timed out after 0\.05s.*starting"):
        wait_for(inspect, "db", "healthy", 5 * 10**7)


def test_wait_for_started_fails_on_exited_dependency(monkeypatch: pytest.MonkeyPatch) -> None:
    """`started` fails when the dependency has exited instead of running."""
    monkeypatch.setattr(container_apply, "POLL_SECONDS", 0)
    with pytest.raises(PermanentError, match="not running"):
        wait_for(states({"Running": False, "Status": "exited", "ExitCode": 1}), "db", "started", 10**9)


class HostConfigApi:
    """Only the pure config builders of docker-py's APIClient."""

    def __init__(self) -> None:
        import docker

        self._real = docker.APIClient(base_url="unix:///nonexistent.sock", version="1.41")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def test_create_config_carries_the_canonical_spec() -> None:
    """The create call is built from the canonical spec: ports, mounts, healthcheck, resources, first network."""
    spec = {
        "command": "httpd -f",
        "ports": [{"containerPort": 80, "hostPort": 8080, "hostIP": "127.0.0.1"}],
        "mounts": [{"type": "tmpfs", "target": "/t", "size": "1m"}],
        "networks": [{"name": "a", "aliases": ["x"]}, {"name": "b"}],
        "healthcheck": {"test": ["CMD", "true"]},
        "resources": {"memory": "64m", "cpus": 0.5},
    }
    res = Resource("Container", "web", {"image": IMAGE, **spec}, {}, Source("w.yaml", 1, Path("/tmp/w.yaml")))
    config = create_config(HostConfigApi(), normalize_container(res), {"l": "v"})
    host = config["host_config"]
    assert config["command"] == ["httpd", "-f"]
    assert host["PortBindings"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]}
    assert host["Mounts"][0]["TmpfsOptions"] == {"SizeBytes": 2**20}
    assert host["Memory"] == 64 * 2**20 and host["NanoCpus"] == 5 * 10**8 and host["NetworkMode"] == "a"
    assert config["healthcheck"]["interval"] == 30 * 10**9
    assert list(config["networking_config"]["EndpointsConfig"]) == ["a"]
    assert "user" not in config and "working_dir" not in config  # undeclared: the image's


class ImageOnlyApi:
    """Answers inspect_image with a fixed ID and records any other call (none may happen)."""

    def __init__(self, image_id: str) -> None:
        self.image_id = image_id
        self.calls: list[str] = []

    def inspect_image(self, ref: str) -> dict:
        return {"Id": self.image_id}

    def __getattr__(self, name: str) -> Any:
        self.calls.append(name)
        raise AssertionError(f"unexpected engine call {name}")


@pytest.mark.parametrize(("current", "replaced"), [("sha256:same", False), ("sha256:new", True)])
def test_follow_replace_is_skipped_when_the_image_id_did_not_move(current: str, replaced: bool) -> None:
    """A replace asked for only by an upstream rebuild does nothing when the rebuild produced the same image."""
    from reconciler.contract import DriverContext
    from reconciler.drivers.container.driver import ContainerDriver
    from reconciler.drivers.container.fields import IMAGE_FOLLOW
    from reconciler.drivers.container.observe import ContainerFacts, ImageDefaults
    from reconciler.model import Action, Change, FieldChange, Observed

    res = Resource("Container", "web", {"image": IMAGE}, {}, Source("w.yaml", 1, Path("/tmp/w.yaml")))
    desired = normalize_container(res)
    facts = ContainerFacts("c" * 64, "web", "sha256:same", "sha256:same", ImageDefaults())
    observed = Observed("Container", "web", "c" * 64, {}, {}, raw=facts)
    field = FieldChange("image", IMAGE, IMAGE, Action.REPLACE, note=IMAGE_FOLLOW)
    change = Change("Container", "web", Action.REPLACE, (field,), desired, observed)
    api = ImageOnlyApi(current)
    driver = ContainerDriver(DriverContext("p", Path("."), engine_factory=lambda: api))
    assert driver._replace_needed(change, facts) is replaced
    if not replaced:
        driver.apply(change)  # an empty in-place update: no engine call at all
        assert api.calls == []


class NetworkApi:
    """Records network calls; `fail_connect` makes connects with that address fail like the engine does."""

    def __init__(self, fail_connect: str | None = None, disconnect_error: str | None = None) -> None:
        self.calls: list[tuple] = []
        self.fail_connect = fail_connect
        self.disconnect_error = disconnect_error

    def disconnect_container_from_network(self, cid: str, net: str, force: bool = False) -> None:
        self.calls.append(("disconnect", net))
        if self.disconnect_error:
            raise APIError("403", response=None, explanation=self.disconnect_error)

    def connect_container_to_network(self, cid: str, net: str, aliases: Any = None, ipv4_address: Any = None) -> None:
        self.calls.append(("connect", net, aliases, ipv4_address))
        if ipv4_address is not None and ipv4_address == self.fail_connect:
            raise APIError("500", response=None, explanation="Address already in use")


OLD = {"name": "backend", "aliases": ["web"], "ipv4Address": "10.1.0.6"}
NEW = {"name": "backend", "aliases": ["web"], "ipv4Address": "10.1.0.5"}


def test_failed_connect_restores_the_previous_connection() -> None:
    """Connect fails after the disconnect: the container is connected again as before, then the error is raised."""
    api = NetworkApi(fail_connect="10.1.0.5")
    with pytest.raises(APIError, match="Address already in use"):
        reconnect(api, structlog.get_logger(), "web", "c" * 64, "backend", OLD, NEW)
    assert api.calls == [
        ("disconnect", "backend"),
        ("connect", "backend", ["web"], "10.1.0.5"),
        ("connect", "backend", ["web"], "10.1.0.6"),
    ]


def test_disconnect_of_an_unconnected_container_counts_as_done() -> None:
    """'is not connected to network' (a replaced network took the endpoint): connect with the declared settings."""
    api = NetworkApi(disconnect_error="container c is not connected to network backend")
    reconnect(api, structlog.get_logger(), "web", "c" * 64, "backend", OLD, NEW)
    assert api.calls[-1] == ("connect", "backend", ["web"], "10.1.0.5")
    other = NetworkApi(disconnect_error="network backend not found")
    with pytest.raises(APIError):
        reconnect(other, structlog.get_logger(), "web", "c" * 64, "backend", OLD, NEW)


class UnhealthyDependencyApi:
    """The dependency `db` is unhealthy; every other engine call is recorded (and answered with nothing)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def inspect_container(self, name: str) -> dict:
        self.calls.append(f"inspect {name}")
        state = {"Running": True, "Health": {"Status": "unhealthy", "Log": [{"Output": "down"}]}}
        return {"Name": f"/{name}", "State": state}

    def __getattr__(self, name: str) -> Any:
        self.calls.append(name)
        return lambda *a, **k: {}


def test_replace_waits_for_dependencies_before_stopping_the_old_container() -> None:
    """A replace whose dependency is unhealthy fails before the old container is stopped or renamed."""
    from reconciler.contract import DriverContext
    from reconciler.drivers.container.diff import steps_for
    from reconciler.drivers.container.driver import ContainerDriver
    from reconciler.drivers.container.observe import ContainerFacts, ImageDefaults
    from reconciler.model import Action, Change, FieldChange, Observed

    spec = {"image": IMAGE, "dependsOn": [{"name": "db", "condition": "healthy"}]}
    desired = normalize_container(Resource("Container", "web", spec, {}, Source("w.yaml", 1, Path("/tmp/w.yaml"))))
    facts = ContainerFacts("c" * 64, "web", "sha256:a", "sha256:a", ImageDefaults())
    observed = Observed("Container", "web", "c" * 64, {}, {"state": "running", "stopTimeout": 1}, raw=facts)
    fields = (FieldChange("command", ["a"], ["b"], Action.REPLACE),)
    steps = steps_for(Action.REPLACE, desired, list(fields), facts)
    change = Change("Container", "web", Action.REPLACE, fields, desired, observed, steps=tuple(steps))
    api = UnhealthyDependencyApi()
    driver = ContainerDriver(DriverContext("p", Path("."), engine_factory=lambda: api))
    with pytest.raises(PermanentError, match="dependency db is unhealthy"):
        driver.apply(change)
    assert api.calls == ["inspect db"]
    assert steps[:2] == ["wait for container db to be healthy", "stop web"]


class _RenameAPI:
    """An engine whose renames fail (500) `fails` times; `done_anyway`: the failed attempt took effect."""

    def __init__(self, fails: int, done_anyway: bool) -> None:
        self.fails = fails
        self.done_anyway = done_anyway
        self.name = "web"
        self.renames = 0

    def rename(self, cid: str, name: str) -> None:
        self.renames += 1
        if self.fails:
            self.fails -= 1
            if self.done_anyway:
                self.name = name
            response = requests.Response()
            response.status_code = 500
            raise APIError("500", response=response, explanation="engine busy")
        self.name = name

    def inspect_container(self, cid: str) -> dict:
        return {"Id": cid, "Name": f"/{self.name}"}


@pytest.mark.parametrize(("fails", "done_anyway", "renames"), [(1, True, 1), (2, False, 3), (0, False, 1)])
def test_replacer_rename_looks_before_trying_again(
    monkeypatch: pytest.MonkeyPatch, fails: int, done_anyway: bool, renames: int
) -> None:
    """A rename is never repeated blindly: after an engine error the container's name is checked first."""
    monkeypatch.setattr(container_apply.Replacer, "RESTORE_DELAY", 0)
    api = _RenameAPI(fails, done_anyway)
    container_apply.Replacer(api, structlog.get_logger(), "p", "web", "abc", True, 1, parked=False)._rename(
        "abc", "web__reconciler_old"
    )
    assert api.name == "web__reconciler_old" and api.renames == renames


def _looks(*states: dict[str, Any]) -> tuple[list[int], Any]:
    """An inspect answering `states` in turn (the last one for ever), counting its calls."""
    calls = [0]

    def inspect(cid: str) -> dict[str, Any]:
        calls[0] += 1
        state = states[min(calls[0], len(states)) - 1]
        return {"RestartCount": state.get("restarts", 0), "State": {"Running": True, "StartedAt": "t0", **state}}

    return calls, inspect


def test_settle_looks_a_few_times_and_passes_a_container_that_stays_up() -> None:
    calls, inspect = _looks({})
    container_apply.settle(inspect, "c", seconds=0.3, poll=0.1)
    assert 3 <= calls[0] <= 5  # at 0, 0.1, 0.2, 0.3 s


def test_settle_catches_an_exit() -> None:
    _, inspect = _looks({}, {"Running": False, "ExitCode": 3})
    with pytest.raises(PermanentError, match=r"stopped right after starting \(exit code 3\)"):
        container_apply.settle(inspect, "c", seconds=0.3, poll=0.05)


@pytest.mark.parametrize(
    "later",
    [{"StartedAt": "t1", "restarts": 1}, {"StartedAt": "t1"}],
    ids=["restart count", "start time"],
)
def test_settle_catches_a_crash_that_a_restart_policy_hid_between_two_looks(later: dict[str, Any]) -> None:
    """Running at every look, but started again in between: it crashed."""
    _, inspect = _looks({}, later)
    with pytest.raises(PermanentError, match="it was restarted"):
        container_apply.settle(inspect, "c", seconds=0.3, poll=0.05)


def test_settle_catches_a_crash_before_the_first_look() -> None:
    _, inspect = _looks({"restarts": 1})
    with pytest.raises(PermanentError, match="it was restarted"):
        container_apply.settle(inspect, "c", seconds=0.3, poll=0.05)


def test_settle_calls_a_kill_from_outside_temporary_and_an_exit_or_oom_permanent() -> None:
    """`docker kill` during the window says nothing about the spec: watch retries it after a backoff; an exit of
    its own, or the OOM killer at the container's memory limit, is the spec's fault and held."""
    _, killed = _looks({}, {"Running": False, "ExitCode": 137})
    with pytest.raises(TemporaryError, match="stopped by a signal"):
        container_apply.settle(killed, "c", seconds=0.3, poll=0.05)
    _, oom = _looks({}, {"Running": False, "ExitCode": 137, "OOMKilled": True})
    with pytest.raises(PermanentError):
        container_apply.settle(oom, "c", seconds=0.3, poll=0.05)
    _, exited = _looks({}, {"Running": False, "ExitCode": 1})
    with pytest.raises(PermanentError):
        container_apply.settle(exited, "c", seconds=0.3, poll=0.05)


def test_settle_calls_a_removal_from_outside_temporary() -> None:
    """`docker rm -f` of the new container during the window (an exit keeps the container; only someone removes
    it): retried after a backoff, not held until an edit."""
    from reconciler.drivers.engine import lazy

    looks = [0]

    def inspect(cid: str) -> dict[str, Any]:
        looks[0] += 1
        if looks[0] > 1:
            raise lazy.NotFound("No such container: c")
        return {"RestartCount": 0, "State": {"Running": True, "StartedAt": "t0"}}

    with pytest.raises(TemporaryError, match="removed from outside"):
        container_apply.settle(inspect, "c", seconds=0.3, poll=0.05)


class _VanishedAPI:
    """An engine on which the container was removed after the plan looked: every call about it is a 404."""

    def __init__(self, gone: bool) -> None:
        self.gone = gone

    def _missing(self, *args: Any, **kwargs: Any) -> Any:
        from docker.errors import NotFound

        raise NotFound("404", response=None, explanation="No such container: " + "c" * 64)

    def _url(self, path: str, *args: str) -> str:
        return path

    def _post_json(self, url: str, data: Any) -> Any:
        return self._missing()

    def inspect_container(self, cid: str) -> dict:
        if self.gone:
            return self._missing()
        return {"Id": cid, "State": {"Running": True}}


@pytest.mark.parametrize(("gone", "error"), [(True, TemporaryError), (False, PermanentError)])
def test_update_of_a_container_removed_meanwhile_is_temporary(gone: bool, error: type) -> None:
    """`docker rm -f` between plan and update: the next pass re-plans (a create), so the failure is temporary and
    watch retries it instead of holding the object until an edit; a 404 about something else stays permanent."""
    from reconciler.contract import DriverContext
    from reconciler.drivers.container.driver import ContainerDriver
    from reconciler.drivers.container.observe import ContainerFacts, ImageDefaults
    from reconciler.model import Action, Change, FieldChange, Observed

    desired = normalize_container(
        Resource(
            "Container",
            "web",
            {"image": IMAGE, "resources": {"pidsLimit": 100}},
            {},
            Source("w.yaml", 1, Path("/tmp/w.yaml")),
        )
    )
    facts = ContainerFacts("c" * 64, "web", "sha256:a", "sha256:a", ImageDefaults())
    observed = Observed("Container", "web", "c" * 64, {}, {"state": "running"}, raw=facts)
    field = FieldChange("resources.pidsLimit", None, 100, Action.UPDATE)
    change = Change("Container", "web", Action.UPDATE, (field,), desired, observed)
    driver = ContainerDriver(DriverContext("p", Path("."), engine_factory=lambda: _VanishedAPI(gone)))
    with pytest.raises(error) as raised:
        driver.apply(change)
    assert type(raised.value) is error
