"""Placement of a tree on a fleet: Host documents, `spec.hosts`, defaults, selectors and reference checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.core.project import ProjectRunner

HOSTS = """
apiVersion: reconciler/v1
kind: Host
metadata: {name: edge-1, labels: {role: edge}}
spec: {engine: "ssh://root@edge-1.example", default: true}
---
apiVersion: reconciler/v1
kind: Host
metadata: {name: edge-2, labels: {role: edge}}
spec: {engine: "ssh://root@edge-2.example"}
---
apiVersion: reconciler/v1
kind: Host
metadata: {name: db, labels: {role: db}}
spec: {engine: "unix:///run/db/docker.sock"}
"""


def volume(name: str, hosts: str = "") -> str:
    spec = f"hosts: {hosts}" if hosts else ""
    return f"apiVersion: reconciler/v1\nkind: Volume\nmetadata: {{name: {name}}}\nspec: {{{spec}}}\n"


def container(name: str, hosts: str, volume: str = "", network: str = "") -> str:
    mounts = f"\n  mounts: [{{type: volume, source: {volume}, target: /data}}]" if volume else ""
    networks = f"\n  networks: [{{name: {network}}}]" if network else ""
    return (
        f"apiVersion: reconciler/v1\nkind: Container\nmetadata: {{name: {name}}}\n"
        f"spec:\n  image: 127.0.0.1:5000/x:1\n  hosts: {hosts}{mounts}{networks}\n"
    )


def load(tmp_path: Path, *docs: str, host: str | None = None):
    (tmp_path / "hosts.yaml").write_text(HOSTS)
    (tmp_path / "objects.yaml").write_text("---\n".join(docs))
    return ProjectRunner("p", tmp_path, host=host).load()


def problems(loaded) -> list[str]:
    return [f"{p.file}:{p.line}: {p.subject}: {p.field}: {p.message}" for p in loaded.problems]


def test_names_selectors_all_and_default(tmp_path: Path) -> None:
    loaded = load(
        tmp_path,
        volume("by-default"),
        volume("by-name", "[db]"),
        volume("by-label", "{matchLabels: {role: edge}}"),
        volume("everywhere", "all"),
    )
    assert problems(loaded) == []
    assert loaded.placement[("Volume", "by-default")] == {"edge-1"}
    assert loaded.placement[("Volume", "by-name")] == {"db"}
    assert loaded.placement[("Volume", "by-label")] == {"edge-1", "edge-2"}
    assert loaded.placement[("Volume", "everywhere")] == {"edge-1", "edge-2", "db"}


def test_a_runner_of_one_host_sees_its_share_and_drivers_never_see_hosts(tmp_path: Path) -> None:
    loaded = load(tmp_path, volume("va", "[db]"), volume("vb", "{matchLabels: {role: edge}}"), host="edge-2")
    assert sorted(loaded.catalog.desired) == [("Volume", "vb")]
    assert "hosts" not in loaded.catalog.desired[("Volume", "vb")].resource.spec


def test_unknown_names_and_empty_selectors_are_errors_with_lines(tmp_path: Path) -> None:
    loaded = load(tmp_path, volume("va", "[nope]"), volume("vb", "{matchLabels: {role: gpu}}"))
    assert problems(loaded) == [
        "objects.yaml:4: Volume/va: spec.hosts[0]: no Host named 'nope'",
        "objects.yaml:9: Volume/vb: spec.hosts.matchLabels: selector role=gpu matches no Host",
    ]


def test_no_default_host_means_every_object_must_say_where_it_goes(tmp_path: Path) -> None:
    (tmp_path / "hosts.yaml").write_text(HOSTS.replace(", default: true", ""))
    (tmp_path / "objects.yaml").write_text(volume("lost"))
    loaded = ProjectRunner("p", tmp_path).load()
    assert problems(loaded) == [
        "objects.yaml:4: Volume/lost: spec.hosts: names no hosts, and no Host is marked `default: true`: "
        "say where it goes"
    ]


def test_an_object_must_go_only_where_what_it_uses_goes(tmp_path: Path) -> None:
    loaded = load(
        tmp_path,
        volume("data", "[db]"),
        container("web", "{matchLabels: {role: edge}}", volume="data"),
    )
    assert problems(loaded) == [
        "objects.yaml:12: Container/web: spec.mounts[0].source: placed on edge-1, edge-2, where Volume/data is "
        "not placed"
    ]


def test_hosts_without_any_host_document_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "objects.yaml").write_text(volume("va", "[db]"))
    loaded = ProjectRunner("p", tmp_path).load()
    assert problems(loaded) == ["objects.yaml:4: Volume/va: spec.hosts: names hosts, but no Host is declared"]
    assert loaded.hosts == []


def test_tcp_needs_tls_and_tls_files_must_exist(tmp_path: Path) -> None:
    (tmp_path / "hosts.yaml").write_text(
        "apiVersion: reconciler/v1\nkind: Host\nmetadata: {name: h}\nspec: {engine: 'tcp://10.0.0.1:2376'}\n---\n"
        "apiVersion: reconciler/v1\nkind: Host\nmetadata: {name: t}\n"
        "spec: {engine: 'tcp://10.0.0.2:2376', tls: {ca: ca.pem, cert: c.pem, key: k.pem}, default: true}\n"
    )
    (tmp_path / "ca.pem").write_text("x")
    loaded = ProjectRunner("p", tmp_path).load()
    assert problems(loaded) == [
        "hosts.yaml:4: Host/h: spec.engine: a tcp:// engine needs spec.tls (engines are never reached unverified)",
        f"hosts.yaml:9: Host/t: spec.tls.cert: {tmp_path / 'c.pem'} is not a readable file",
        f"hosts.yaml:9: Host/t: spec.tls.key: {tmp_path / 'k.pem'} is not a readable file",
    ]


@pytest.mark.parametrize(
    ("engine", "said"),
    [
        ("ssh://root@10.213.0.12:99999", "the port must be a number from 1 to 65535"),
        ("ssh://root@edge:0", "the port must be a number from 1 to 65535"),
        ("ssh://root@edge:22x", "the port must be a number from 1 to 65535"),
        ("ssh://-oProxyCommand=touch@edge", "the ssh user must be letters"),
        ("ssh://root@edge;reboot", "the host must be a DNS name or an IP address"),
        ("ssh://root@$(id)", "the host must be a DNS name or an IP address"),
        ("ssh://root@-edge", "the host must be a DNS name or an IP address"),
        ("ssh://root@[::1", "an IPv6 address is written [address]:port"),
        ("unix:///run/../etc/docker.sock", "a unix:// engine is an absolute socket path"),
        ("unix:///run/x;rm.sock", "a unix:// engine is an absolute socket path"),
    ],
)
def test_host_urls_are_validated(tmp_path: Path, engine: str, said: str) -> None:
    """Issue 24, defect 6: `engine: ssh://root@10.213.0.12:99999` passed `validate` and `plan` printed a
    traceback; every Host URL is now checked at validation, one line naming the field."""
    (tmp_path / "hosts.yaml").write_text(
        f"apiVersion: reconciler/v1\nkind: Host\nmetadata: {{name: h}}\nspec: {{engine: '{engine}', default: true}}\n"
    )
    (problem,) = problems(ProjectRunner("p", tmp_path).load())
    assert problem.startswith(f"hosts.yaml:4: Host/h: spec.engine: {engine!r}: {said}"), problem


@pytest.mark.parametrize(
    "engine",
    ["ssh://root@edge-1.example", "ssh://deploy.bot@10.0.0.1:2222", "ssh://u@[fd00::1]:22", "unix:///run/x.sock"],
)
def test_good_host_urls_pass(tmp_path: Path, engine: str) -> None:
    (tmp_path / "hosts.yaml").write_text(
        f"apiVersion: reconciler/v1\nkind: Host\nmetadata: {{name: h}}\nspec: {{engine: '{engine}', default: true}}\n"
    )
    assert problems(ProjectRunner("p", tmp_path).load()) == []


def test_firewall_lists_only_go_to_local_hosts(tmp_path: Path) -> None:
    fw = (
        "apiVersion: reconciler/v1\nkind: FirewallAllowList\nmetadata: {name: office}\n"
        "spec: {interfaces: [eth0], sources: [198.51.100.0/24], hosts: all}\n"
    )
    loaded = load(tmp_path, fw)
    (problem,) = problems(loaded)
    assert "cannot be placed on edge-1, edge-2 (reached over ssh)" in problem
    assert "FirewallAllowList/office: spec.hosts" in problem


@pytest.mark.parametrize(
    ("names", "selectors", "chosen", "error"),
    [
        ([], [], ["db", "edge-1", "edge-2"], None),
        (["edge-2"], [], ["edge-2"], None),
        ([], ["role=edge"], ["edge-1", "edge-2"], None),
        (["db"], ["role=edge"], [], "no Host matches --host/--selector"),
        (["nope"], [], [], "--host nope: no Host of that name"),
        ([], ["role"], [], "--selector role: use KEY=VALUE"),
    ],
)
def test_host_and_selector_limit_the_fleet(tmp_path, names, selectors, chosen, error) -> None:
    from reconciler.core.placement import select_hosts

    loaded = load(tmp_path, volume("va"))
    hosts, errors = select_hosts(loaded.hosts, names, selectors)
    assert [h.name for h in hosts] == chosen
    assert (errors[0] if errors else None) == error


def test_the_fleet_summary_counts_a_host_once() -> None:
    """A Host that failed before a rollout stopped (its engine's identity could not be read) is failed, not also
    "not started" (the summary said "-1 converged, 2 failed, 2 not started" of 3 Hosts)."""
    from types import SimpleNamespace

    from reconciler.core.placement import HostSpec
    from reconciler.errors import EngineUnavailable
    from reconciler.fleet.run import Targets, for_each
    from reconciler.output.render import fleet_results_text

    def host(name: str) -> HostSpec:
        return HostSpec(name, {}, f"unix:///run/{name}.sock", None, False, None)  # type: ignore[arg-type]

    def identity(name: str):
        def ask() -> str:
            if name != "c-later":
                raise EngineUnavailable(f"cannot reach the Docker engine of {name}")
            return name

        return ask

    hosts = [host(n) for n in ("a-down", "b-identity", "c-later")]
    engines = {h.name: SimpleNamespace(identity=identity(h.name)) for h in hosts}
    runners = {h.name: SimpleNamespace(ctx=SimpleNamespace(engine_url=h.engine), engine=engines[h.name]) for h in hosts}
    where = Targets(loaded=None, runners=[runners[h.name] for h in hosts], hosts=hosts)  # type: ignore[arg-type]
    runs = for_each(where, work=None, lock=True, batch=1, name_order=True)  # type: ignore[arg-type]
    assert [(r.host.name, r.failed, r.skipped is not None) for r in runs] == [
        ("a-down", True, False),
        ("b-identity", True, False),
        ("c-later", False, True),
    ]
    text = fleet_results_text(runs)
    assert text.endswith("Fleet: 3 hosts, 0 converged, 2 failed (a-down, b-identity), 1 not started.")
    assert "Host b-identity (unix:///run/b-identity.sock): failed: cannot reach the Docker engine of b-identity" in text


def test_the_one_engine_is_worked_on_directly_and_its_errors_are_the_commands() -> None:
    """Without Hosts, `for_each` runs the work once on the one engine with the whole tree, and an error is not
    kept in a HostRun (as a Host's is) but stops the command, as it did before fleets existed."""
    from types import SimpleNamespace

    from reconciler.errors import EngineUnavailable
    from reconciler.fleet.run import Targets, for_each

    tree = object()
    runner = SimpleNamespace(ctx=SimpleNamespace(engine_url="unix:///run/one.sock"))
    where = Targets(loaded=tree, runners=[runner])  # type: ignore[arg-type, list-item]
    seen = []
    runs = for_each(where, lambda run, r, loaded: seen.append((run.host, run.engine, r, loaded)))
    assert seen == [(None, "unix:///run/one.sock", runner, tree)] and len(runs) == 1 and not where.fleet

    def down(*_: object) -> None:
        raise EngineUnavailable("cannot reach the Docker engine")

    with pytest.raises(EngineUnavailable):
        for_each(where, down)


def overlay(name: str, hosts: str, attachable: bool = True) -> str:
    return (
        f"apiVersion: reconciler/v1\nkind: Network\nmetadata: {{name: {name}}}\n"
        f"spec: {{driver: overlay, attachable: {str(attachable).lower()}, hosts: {hosts}}}\n"
    )


def test_a_managers_attachable_overlay_is_usable_from_other_hosts(tmp_path: Path) -> None:
    """Issue 24, defect 7: a container on another Host may attach to an attachable overlay placed on one Host
    (the fleet checks on the engines that it is a node of that swarm); a plain overlay or bridge may not."""
    from reconciler.core.placement import ClusterUse, cluster_uses

    loaded = load(tmp_path, overlay("mesh", "[db]"), container("app", "[edge-1, db]", network="mesh"))
    assert problems(loaded) == []
    runner = ProjectRunner("p", tmp_path)
    assert cluster_uses(loaded.placement, loaded.catalog, runner.drivers) == [
        ClusterUse("edge-1", "Container/app", ("Network", "mesh"), frozenset({"db"}))
    ]
    loaded = load(tmp_path, overlay("mesh", "[db]", attachable=False), container("app", "[edge-1]", network="mesh"))
    assert [p.split(": ", 2)[2] for p in problems(loaded)] == [
        "spec.networks[0].name: placed on edge-1, where Network/mesh is not placed"
    ]


def test_a_host_using_a_managers_overlay_must_be_a_node_of_its_swarm_and_goes_after_it() -> None:
    """The worker's node ID must be in the manager's node list (a worker sees no cluster ID); the manager's Host
    is worked on first; every line logged on a Host's thread says `host=`."""
    from types import SimpleNamespace

    import structlog

    from reconciler.core.placement import ClusterUse, HostSpec
    from reconciler.fleet.run import Targets, for_each

    def host(name: str) -> HostSpec:
        return HostSpec(name, {}, f"unix:///run/{name}.sock", None, False, None)  # type: ignore[arg-type]

    hosts = [host(n) for n in ("a-worker", "b-outside", "m-manager")]
    engines = {
        "a-worker": SimpleNamespace(identity=lambda: "a", cluster_node=lambda: "node-a", cluster_nodes=frozenset),
        "b-outside": SimpleNamespace(identity=lambda: "b", cluster_node=lambda: "node-x", cluster_nodes=frozenset),
        "m-manager": SimpleNamespace(
            identity=lambda: "m", cluster_node=lambda: "node-m", cluster_nodes=lambda: frozenset({"node-a", "node-m"})
        ),
    }
    runners = {h.name: SimpleNamespace(ctx=SimpleNamespace(engine_url=h.engine), engine=engines[h.name]) for h in hosts}
    uses = [
        ClusterUse(h, f"Container/{h}", ("Network", "mesh"), frozenset({"m-manager"}))
        for h in ("a-worker", "b-outside")
    ]
    where = Targets(
        loaded=SimpleNamespace(resources=[]), runners=[runners[h.name] for h in hosts], hosts=hosts, cluster_uses=uses
    )  # type: ignore[arg-type]
    order: list[str] = []

    bound: list[object] = []

    def work(run, runner, loaded) -> None:
        order.append(run.host.name)
        bound.append(structlog.contextvars.get_contextvars().get("host"))  # merged into every line logged here

    for runner in runners.values():
        runner.load = lambda resources: None
    runs = for_each(where, work, name_order=True)  # type: ignore[arg-type]
    assert [(r.host.name, r.error) for r in runs] == [
        ("a-worker", None),
        (
            "b-outside",
            "Container/b-outside uses Network/mesh of Host m-manager, but Host b-outside is not a node of the swarm "
            "m-manager manages (join it: `docker swarm join` with a token from m-manager)",
        ),
        ("m-manager", None),
    ]
    assert order == ["m-manager", "a-worker"]
    assert bound == ["m-manager", "a-worker"]
