"""Container network membership on the real engine: static addresses added, moved and removed, a failed reconnect
that leaves the container on its network, a network replaced together with a static address change, and secrets
of a removed env file never printed."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.helpers import SLEEPER, apply_ok, changes_of, doc, in_sync, plan_json, write

pytestmark = pytest.mark.engine


def sleeper(image: str, networks: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"image": image, "command": ["sh", "-c", SLEEPER], "networks": networks, "stopTimeout": 1, **extra}


def endpoint(api: Any, container: str, network: str) -> dict[str, Any]:
    return api.inspect_container(container)["NetworkSettings"]["Networks"][network]


def test_failed_reconnect_keeps_the_container_connected(
    reconcile: Any, tmp_manifests: Any, project_name: str, base_image: str, api: Any, free_subnet: Any
) -> None:
    """A static address taken by another container: the update fails, the container is connected as before, and
    the next plan still shows the change (never 'in sync' with the container off its network)."""
    p, subnet = project_name, free_subnet()
    prefix = subnet.rsplit(".", 1)[0]
    net = f"{p}-net"

    def docs(b_address: str) -> list[dict[str, Any]]:
        return [
            doc("Network", net, {"ipam": {"config": [{"subnet": subnet}]}}),
            doc("Container", f"{p}-a", sleeper(base_image, [{"name": net, "ipv4Address": f"{prefix}.5"}])),
            doc("Container", f"{p}-b", sleeper(base_image, [{"name": net, "ipv4Address": b_address}])),
        ]

    directory = write(tmp_manifests, docs(f"{prefix}.6"))
    apply_ok(reconcile, directory)
    write(tmp_manifests, docs(f"{prefix}.5"))  # a's address
    proc = reconcile("apply", directory)
    assert proc.returncode == 1, proc.stdout
    ep = endpoint(api, f"{p}-b", net)
    assert ep["EndpointID"] and ep["IPAddress"] == f"{prefix}.6", ep
    rc, plan = plan_json(reconcile, directory)
    assert rc == 2 and changes_of(plan) == {f"{p}-b": ("update", [f"networks.{net}"])}


def test_stale_endpoint_of_a_running_container_is_drift(
    reconcile: Any, tmp_manifests: Any, project_name: str, base_image: str, api: Any, free_subnet: Any
) -> None:
    """A connect that failed by hand leaves endpoint config without an endpoint: plan shows it, apply repairs it."""
    p, subnet = project_name, free_subnet()
    prefix = subnet.rsplit(".", 1)[0]
    net = f"{p}-net"
    directory = write(
        tmp_manifests,
        [
            doc("Network", net, {"ipam": {"config": [{"subnet": subnet}]}}),
            doc("Container", f"{p}-a", sleeper(base_image, [{"name": net, "ipv4Address": f"{prefix}.5"}])),
            doc("Container", f"{p}-b", sleeper(base_image, [{"name": net, "ipv4Address": f"{prefix}.6"}])),
        ],
    )
    apply_ok(reconcile, directory)
    api.disconnect_container_from_network(f"{p}-b", net, force=True)
    with pytest.raises(Exception, match="already in use"):
        api.connect_container_to_network(f"{p}-b", net, ipv4_address=f"{prefix}.5")
    assert not endpoint(api, f"{p}-b", net)["EndpointID"]  # the engine's stale leftover
    rc, plan = plan_json(reconcile, directory)
    assert rc == 2 and changes_of(plan) == {f"{p}-b": ("update", [f"networks.{net}"])}
    apply_ok(reconcile, directory)
    assert endpoint(api, f"{p}-b", net)["IPAddress"] == f"{prefix}.6"
    in_sync(reconcile, directory)


def test_removing_a_static_address_is_applied(
    reconcile: Any, tmp_manifests: Any, project_name: str, base_image: str, api: Any, free_subnet: Any
) -> None:
    """ipv4Address removed: plan shows a reconnect, apply drops the reservation, the next plan exits 0."""
    p, subnet = project_name, free_subnet()
    prefix = subnet.rsplit(".", 1)[0]
    net = f"{p}-net"
    network = doc("Network", net, {"ipam": {"config": [{"subnet": subnet}]}})
    entry: dict[str, Any] = {"name": net, "aliases": ["svc"], "ipv4Address": f"{prefix}.9"}
    directory = write(tmp_manifests, [network, doc("Container", f"{p}-c", sleeper(base_image, [entry]))])
    apply_ok(reconcile, directory)
    in_sync(reconcile, directory)
    del entry["ipv4Address"]
    write(tmp_manifests, [network, doc("Container", f"{p}-c", sleeper(base_image, [entry]))])
    rc, plan = plan_json(reconcile, directory)
    assert rc == 2 and changes_of(plan) == {f"{p}-c": ("update", [f"networks.{net}"])}
    apply_ok(reconcile, directory)
    ep = endpoint(api, f"{p}-c", net)
    assert not (ep.get("IPAMConfig") or {}).get("IPv4Address") and "svc" in ep["Aliases"]
    in_sync(reconcile, directory)


def test_network_replace_and_static_address_change_converge_in_one_apply(
    reconcile: Any, tmp_manifests: Any, project_name: str, base_image: str, api: Any, free_subnet: Any
) -> None:
    """Subnet change + the container's static address moved into the new subnet in one edit: one apply converges."""
    p = project_name
    net = f"{p}-net"
    first, second = free_subnet(), free_subnet()

    def docs(subnet: str) -> list[dict[str, Any]]:
        address = subnet.rsplit(".", 1)[0] + ".10"
        return [
            doc("Network", net, {"ipam": {"config": [{"subnet": subnet}]}}),
            doc("Container", f"{p}-c", sleeper(base_image, [{"name": net, "ipv4Address": address}])),
        ]

    directory = write(tmp_manifests, docs(first))
    apply_ok(reconcile, directory)
    cid = api.inspect_container(f"{p}-c")["Id"]
    write(tmp_manifests, docs(second))
    apply_ok(reconcile, directory)
    ep = endpoint(api, f"{p}-c", net)
    assert ep["IPAddress"] == second.rsplit(".", 1)[0] + ".10" and ep["EndpointID"]
    assert api.inspect_container(f"{p}-c")["Id"] == cid
    in_sync(reconcile, directory)


def test_removed_env_file_secret_is_never_printed(
    reconcile: Any, tmp_manifests: Any, project_name: str, base_image: str
) -> None:
    """An env file dropped from the manifest: plan text, plan JSON and apply output never show its value."""
    tmp_manifests("secret.env", "SECRET_TOKEN=hunter2supersecret\n")
    spec = {"image": base_image, "command": ["sh", "-c", SLEEPER], "stopTimeout": 1}
    directory = write(tmp_manifests, [doc("Container", f"{project_name}-c", {**spec, "envFiles": ["./secret.env"]})])
    apply_ok(reconcile, directory)
    write(tmp_manifests, [doc("Container", f"{project_name}-c", spec)])
    text = reconcile("plan", directory)
    assert text.returncode == 2, text.stdout + text.stderr  # the plan printed the change (or the checks prove nothing)
    rc, plan = plan_json(reconcile, directory)
    assert rc == 2 and changes_of(plan) == {f"{project_name}-c": ("replace", ["env.SECRET_TOKEN"])}
    proc = reconcile("apply", directory, "--output", "json")
    assert proc.returncode == 0, proc.stdout
    assert "(sensitive)" in text.stdout
    for output in (text.stdout, text.stderr, json.dumps(plan), proc.stdout, proc.stderr):
        assert "hunter2" not in output
