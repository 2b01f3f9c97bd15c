"""Two networks of the project with one name, as two creates that ran at once leave them (the engine's duplicate
check is not atomic: an apply killed while its create was in flight, and the next apply's create). The engine
then refuses the name: a container start cannot attach, a remove is ambiguous. The plan names the extra ones,
apply moves the project's containers off them and removes them; a twin made while apply's own create is in
flight is removed by that apply."""

from __future__ import annotations

import threading

import pytest

from tests.faultproxy import FaultProxy
from tests.helpers import LABEL_PROJECT, configured_docker_host, plan_json_any

pytestmark = pytest.mark.engine

SLEEPER = 'trap "exit 0" TERM; while :; do sleep 1; done'


def manifests(p: str, base: str, containers: bool = True) -> str:
    docs = [f"apiVersion: reconciler/v1\nkind: Network\nmetadata: {{name: {p}-net}}\nspec: {{}}\n"]
    if containers:
        for c, alias in (("a", "alpha"), ("b", "beta")):
            docs.append(
                f"""apiVersion: reconciler/v1
kind: Container
metadata: {{name: {p}-{c}}}
spec:
  image: {base}
  command: ["sh", "-c", '{SLEEPER}']
  networks: [{{name: {p}-net, aliases: [{alias}]}}]
  stopTimeout: 1
"""
            )
    return "---\n".join(docs)


def named(api, name: str) -> list[str]:
    return sorted(n["Id"] for n in api.networks(names=[name]) if n["Name"] == name)


def twin_of(api, name: str) -> str:
    """A second network of `name` with the first one's labels, as a create racing another leaves it."""
    labels = api.inspect_network(name)["Labels"]
    return api.create_network(name, labels=labels, check_duplicate=False)["Id"]


def on_network(api, container: str, name: str) -> tuple[str, list[str]]:
    endpoint = api.inspect_container(container)["NetworkSettings"]["Networks"][name]
    assert endpoint["EndpointID"], f"{container} is not attached to {name}"
    return endpoint["NetworkID"], sorted(endpoint.get("Aliases") or [])


def test_duplicates_are_planned_moved_off_and_removed(api, project_name, reconcile, tmp_manifests, base_image):
    p, net = project_name, f"{project_name}-net"
    tmp_manifests("all.yaml", manifests(p, base_image))
    assert reconcile("apply", tmp_manifests.dir).returncode == 0
    first = named(api, net)[0]
    twin = twin_of(api, net)
    # container b on the twin, as the name's other network: the engine itself can no longer resolve the name
    api.disconnect_container_from_network(f"{p}-b", first, force=True)
    api.connect_container_to_network(f"{p}-b", twin, aliases=["beta"])
    with pytest.raises(Exception, match="ambiguous"):
        api.remove_network(net)

    code, plan = plan_json_any(reconcile, tmp_manifests.dir)
    assert code == 2, plan  # changes to make
    [change] = [c for c in plan["changes"] if c["kind"] == "Network"]
    assert change["action"] == "update", change
    [field] = change["fields"]
    assert field["path"] == "duplicates" and sorted(field["old"]) == sorted([first[:12], twin[:12]])
    kept = first if field["new"] == [first[:12]] else twin
    extra = twin if kept == first else first
    moved = f"{p}-b" if extra == twin else f"{p}-a"
    assert change["steps"] == [
        f"move container {moved} from duplicate network {extra[:12]} to {kept[:12]}",
        f"remove duplicate network {extra[:12]}",
    ]
    assert [c for c in plan["changes"] if c["kind"] == "Container"] == []

    done = reconcile("apply", tmp_manifests.dir)
    assert done.returncode == 0, done.stderr[-3000:]
    assert named(api, net) == [kept]
    for c, alias in ((f"{p}-a", "alpha"), (f"{p}-b", "beta")):
        network_id, aliases = on_network(api, c, net)
        assert network_id == kept and alias in aliases
        assert api.inspect_container(c)["State"]["Running"]
    code, plan = plan_json_any(reconcile, tmp_manifests.dir)
    assert code == 0 and plan["inSync"], plan

    # a prune of a name with a twin removes both
    twin_of(api, net)
    tmp_manifests("all.yaml", manifests(p, base_image, containers=False).replace("kind: Network", "kind: Volume"))
    done = reconcile("apply", tmp_manifests.dir)
    assert done.returncode == 0, done.stderr[-3000:]
    assert named(api, net) == []


def race(api, net: str, p: str, request: tuple[str, str]) -> tuple[FaultProxy, threading.Thread, list[str]]:
    """A proxy that holds apply's `request` (method, path ending) 1.5 s, during which a network named `net` with
    the project's label is made beside it (what the create of an apply killed a moment before leaves)."""
    held = threading.Event()

    def eligible(method: str, path: str) -> bool:
        ours = (method, path.split("?")[0].rsplit("/", 1)[-1]) == request
        if ours and (method != "GET" or "name" in path):  # a GET: the list of one name's networks
            held.set()
            return True
        return False

    made: list[str] = []

    def racer() -> None:
        if held.wait(timeout=60):
            made.append(api.create_network(net, labels={LABEL_PROJECT: p}, check_duplicate=False)["Id"])

    proxy = FaultProxy(configured_docker_host() or "", stall=1.0, stall_seconds=1.5, eligible=eligible)
    return proxy, threading.Thread(target=racer), made


def converge_in_race(api, p: str, reconcile, tmp_manifests, base_image, request: tuple[str, str]) -> tuple[str, str]:
    """apply through `race`: it converges, the one network left is the containers'; (apply's log, the twin)."""
    net = f"{p}-net"
    tmp_manifests("all.yaml", manifests(p, base_image))
    proxy, thread, made = race(api, net, p, request)
    with proxy:
        thread.start()
        try:
            done = reconcile("apply", tmp_manifests.dir, env={"DOCKER_HOST": proxy.url})
        finally:
            thread.join(timeout=60)
    assert made, "the racing create did not run"
    assert done.returncode == 0, done.stderr[-3000:]
    [left] = named(api, net)
    for c in (f"{p}-a", f"{p}-b"):
        assert on_network(api, c, net)[0] == left
        assert api.inspect_container(c)["State"]["Running"]
    return done.stderr, made[0]


def test_a_twin_made_beside_the_create_is_removed(api, project_name, reconcile, tmp_manifests, base_image):
    """The twin appears after apply's create was answered, before apply looked for others of its name (the
    engine let both creates through): apply removes it before any container uses the name."""
    log, twin = converge_in_race(api, project_name, reconcile, tmp_manifests, base_image, ("GET", "networks"))
    assert "network.duplicate_removed" in log and twin not in named(api, f"{project_name}-net")


def test_a_network_of_the_project_made_since_the_plan_is_planned_again(
    api, project_name, reconcile, tmp_manifests, base_image
):
    """The network appears between the plan and apply's create (which the engine then refuses): the same apply
    plans again and uses it."""
    log, twin = converge_in_race(api, project_name, reconcile, tmp_manifests, base_image, ("POST", "create"))
    assert "planned again" in log and named(api, f"{project_name}-net") == [twin]
