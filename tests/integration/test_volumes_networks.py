"""Volumes and networks on the real engine: create, in sync, change, replace, prune, and the guards."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import textwrap
import time

import pytest
from docker.errors import NotFound

from tests.helpers import plan_json_any

pytestmark = pytest.mark.engine


def volume(name: str, policy: str = "Retain", opts: str = "") -> str:
    return f"""
    apiVersion: reconciler/v1
    kind: Volume
    metadata: {{name: {name}, labels: {{app: demo}}}}
    spec:
      reclaimPolicy: {policy}
      {opts}
    """


def network(name: str, subnet: str, extra: str = "") -> str:
    return f"""
    apiVersion: reconciler/v1
    kind: Network
    metadata: {{name: {name}}}
    spec:
      ipam:
        config:
          - {{subnet: {subnet}}}
      {extra}
    """


def test_volume_create_in_sync_blocked_replace_and_prune(api, project_name, reconcile, tmp_manifests):
    """Retain blocks a data-destroying replace; Delete allows it; a Delete volume is pruned with its manifest."""
    name = f"{project_name}-data"
    tmp_manifests("v.yaml", volume(name))
    assert reconcile("apply", str(tmp_manifests.dir)).returncode == 0
    info = api.inspect_volume(name)
    assert info["Labels"]["io.reconciler.project"] == project_name and info["Labels"]["app"] == "demo"
    assert reconcile("plan", str(tmp_manifests.dir)).returncode == 0

    tmp_manifests("v.yaml", volume(name, opts="driverOpts: {type: tmpfs, device: tmpfs, o: size=8m}"))
    code, plan = plan_json_any(reconcile, tmp_manifests.dir)
    assert code == 1
    [change] = plan["changes"]
    assert change["action"] == "replace" and "reclaimPolicy: Delete" in change["blocked"]
    proc = reconcile("apply", str(tmp_manifests.dir))
    assert proc.returncode == 1 and "blocked" in proc.stdout
    assert api.inspect_volume(name)["Options"] in (None, {})  # untouched

    tmp_manifests("v.yaml", volume(name, "Delete", "driverOpts: {type: tmpfs, device: tmpfs, o: size=8m}"))
    assert reconcile("apply", str(tmp_manifests.dir)).returncode == 0
    assert api.inspect_volume(name)["Options"]["type"] == "tmpfs"
    assert reconcile("plan", str(tmp_manifests.dir)).returncode == 0

    (tmp_manifests.dir / "v.yaml").unlink()
    tmp_manifests("keep.yaml", volume(f"{project_name}-other"))
    assert reconcile("apply", str(tmp_manifests.dir)).returncode == 0
    with pytest.raises(NotFound):
        api.inspect_volume(name)


def test_retained_volume_is_reported_not_removed(api, project_name, reconcile, tmp_manifests):
    """A Retain volume whose manifest is gone stays on the host and plan says so."""
    name = f"{project_name}-keep"
    tmp_manifests("v.yaml", volume(name))
    tmp_manifests("w.yaml", volume(f"{project_name}-w"))
    assert reconcile("apply", str(tmp_manifests.dir)).returncode == 0
    (tmp_manifests.dir / "v.yaml").unlink()
    proc = reconcile("plan", str(tmp_manifests.dir))
    assert proc.returncode == 0 and "retained" in proc.stdout
    assert reconcile("apply", str(tmp_manifests.dir)).returncode == 0
    assert api.inspect_volume(name)["Name"] == name


def test_network_replace_reconnects_project_containers(
    api, project_name, reconcile, tmp_manifests, base_image, free_subnet
):
    """A subnet change replaces the network as explicit steps and reconnects the project's containers."""
    name = f"{project_name}-net"
    first, second = free_subnet(), free_subnet()
    tmp_manifests("n.yaml", network(name, first))
    assert reconcile("apply", str(tmp_manifests.dir)).returncode == 0
    assert api.inspect_network(name)["IPAM"]["Config"][0]["Subnet"] == first
    assert reconcile("plan", str(tmp_manifests.dir)).returncode == 0

    ctr = api.create_container(
        base_image,
        ["sleep", "300"],
        name=f"{project_name}-c",
        labels={"io.reconciler.project": project_name},
        host_config=api.create_host_config(network_mode=name),
        networking_config=api.create_networking_config({name: api.create_endpoint_config(aliases=["svc"])}),
    )
    api.start(ctr)

    tmp_manifests("n.yaml", network(name, second))
    code, plan = plan_json_any(reconcile, tmp_manifests.dir)
    assert code == 2
    [change] = plan["changes"]
    assert change["action"] == "replace" and [f["path"] for f in change["fields"]] == ["ipam"]
    assert change["steps"][0] == f"disconnect container {project_name}-c"
    assert change["steps"][-1] == f"reconnect container {project_name}-c"
    assert reconcile("apply", str(tmp_manifests.dir)).returncode == 0
    net = api.inspect_network(name)
    assert net["IPAM"]["Config"][0]["Subnet"] == second
    endpoint = api.inspect_container(ctr)["NetworkSettings"]["Networks"][name]
    assert "svc" in endpoint["Aliases"] and endpoint["IPAddress"].startswith(second.rsplit(".", 1)[0] + ".")
    assert reconcile("plan", str(tmp_manifests.dir)).returncode == 0


def test_network_used_by_foreign_container_is_blocked(
    api, project_name, reconcile, tmp_manifests, base_image, free_subnet
):
    """A network that another project's container uses is neither replaced nor pruned; plan names the container
    as the reason, never in its steps."""
    name = f"{project_name}-shared"
    first, second = free_subnet(), free_subnet()
    tmp_manifests("n.yaml", network(name, first))
    assert reconcile("apply", str(tmp_manifests.dir)).returncode == 0
    foreign = api.create_container(
        base_image,
        ["sleep", "300"],
        name=f"{project_name}-foreign",
        host_config=api.create_host_config(network_mode=name),
    )
    try:
        api.start(foreign)
        tmp_manifests("n.yaml", network(name, second))
        code, plan = plan_json_any(reconcile, tmp_manifests.dir)
        assert code == 1 and f"{project_name}-foreign" in plan["changes"][0]["blocked"]
        assert not any("foreign" in step for step in plan["changes"][0]["steps"])  # never a step of ours
        (tmp_manifests.dir / "n.yaml").unlink()
        proc = reconcile("apply", "--allow-empty", str(tmp_manifests.dir))
        assert proc.returncode == 1 and f"{project_name}-foreign" in proc.stdout
        assert api.inspect_network(name)["IPAM"]["Config"][0]["Subnet"] == first
    finally:
        api.remove_container(foreign, force=True)


def test_unowned_objects_survive_every_command(api, project_name, reconcile, tmp_manifests, free_subnet):
    """Unlabelled objects and another project's objects are never changed or removed, prune included."""
    bare_vol = f"{project_name}-bare"
    other_net = f"{project_name}-othernet"
    api.create_volume(bare_vol)
    api.create_network(
        other_net,
        labels={
            "io.reconciler.project": f"{project_name}-x",
            "io.reconciler.kind": "Network",
            "io.reconciler.name": other_net,
        },
    )
    try:
        tmp_manifests("m.yaml", volume(bare_vol, "Delete") + "---\n" + network(other_net, free_subnet()))
        code, plan = plan_json_any(reconcile, tmp_manifests.dir)
        assert code == 1
        assert all("never takes over" in c["blocked"] for c in plan["changes"]) and len(plan["changes"]) == 2
        assert reconcile("apply", str(tmp_manifests.dir)).returncode == 1
        (tmp_manifests.dir / "m.yaml").unlink()
        assert reconcile("apply", "--allow-empty", str(tmp_manifests.dir)).returncode == 0
        assert api.inspect_volume(bare_vol)["Labels"] in (None, {})
        assert api.inspect_network(other_net)["Labels"]["io.reconciler.project"] == f"{project_name}-x"
    finally:
        api.remove_volume(bare_vol)
        api.remove_network(other_net)


def test_invalid_directory_changes_nothing(api, project_name, reconcile, tmp_manifests):
    """One invalid file anywhere stops apply before any change; the error names file:line."""
    tmp_manifests("good.yaml", volume(f"{project_name}-good"))
    tmp_manifests("sub/bad.yaml", "apiVersion: reconciler/v1\nkind: Volume\nmetadata: {name: x}\nspec: {colour: 1}\n")
    proc = reconcile("apply", str(tmp_manifests.dir))
    assert proc.returncode == 1
    assert "sub/bad.yaml:4: Volume/x: spec.colour: unknown field" in proc.stderr
    assert api.volumes(filters={"label": f"io.reconciler.project={project_name}"})["Volumes"] in (None, [])


def test_empty_or_missing_directory_prunes_nothing(api, project_name, reconcile, tmp_manifests):
    """An emptied directory (a failed checkout) prunes nothing unless --allow-empty; a missing one is an error."""
    name = f"{project_name}-e"
    tmp_manifests("v.yaml", volume(name, "Delete"))
    assert reconcile("apply", str(tmp_manifests.dir)).returncode == 0
    (tmp_manifests.dir / "v.yaml").unlink()
    proc = reconcile("apply", str(tmp_manifests.dir))
    assert proc.returncode == 0 and "--allow-empty" in proc.stdout
    assert api.inspect_volume(name)
    missing = reconcile("apply", str(tmp_manifests.dir / "nope"))
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    assert api.inspect_volume(name)
    assert reconcile("apply", "--allow-empty", str(tmp_manifests.dir)).returncode == 0
    with pytest.raises(NotFound):
        api.inspect_volume(name)


def test_unreachable_engine_is_one_line(tmp_manifests):
    """An engine that does not answer gives one clear line and exit 1, no traceback."""
    tmp_manifests("v.yaml", volume("x1"))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "reconciler.cli",
            "--docker-host",
            "unix:///nonexistent/docker.sock",
            "plan",
            str(tmp_manifests.dir),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "cannot reach the Docker engine at unix:///nonexistent/docker.sock" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_overlay_network_in_swarm_mode(api, project_name, reconcile, tmp_manifests, free_subnet):
    """An attachable overlay network is created on a swarm manager and is then in sync."""
    name = f"{project_name}-ov"
    tmp_manifests("o.yaml", network(name, free_subnet(), "driver: overlay\n      attachable: true"))
    proc = reconcile("apply", str(tmp_manifests.dir))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    info = api.inspect_network(name)
    assert info["Driver"] == "overlay" and info["Attachable"] is True
    assert reconcile("plan", str(tmp_manifests.dir)).returncode == 0


@pytest.fixture
def veth_parent():
    """A veth pair in the host namespace to serve as a macvlan parent; removed afterwards."""
    from pyroute2 import IPRoute

    name = "rv" + secrets.token_hex(4)
    with IPRoute() as ipr:
        ipr.link("add", ifname=name, kind="veth", peer=name + "p")
        idx = ipr.link_lookup(ifname=name)[0]
        ipr.link("set", index=idx, state="up")
    yield name
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=name)
        if found:
            ipr.link("del", index=found[0])


def test_macvlan_on_a_veth_parent(api, project_name, reconcile, tmp_manifests, veth_parent):
    """A macvlan network on a veth parent is created with its parent option and is then in sync."""
    name = f"{project_name}-mv"
    tmp_manifests("m.yaml", network(name, "192.0.2.0/24", f"driver: macvlan\n      options: {{parent: {veth_parent}}}"))
    proc = reconcile("apply", str(tmp_manifests.dir))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    info = api.inspect_network(name)
    assert info["Driver"] == "macvlan" and info["Options"]["parent"] == veth_parent
    assert reconcile("plan", str(tmp_manifests.dir)).returncode == 0
    (tmp_manifests.dir / "m.yaml").unlink()
    assert reconcile("apply", "--allow-empty", str(tmp_manifests.dir)).returncode == 0
    with pytest.raises(NotFound):
        api.inspect_network(name)


def test_dual_stack_network_is_in_sync_after_apply(api, project_name, reconcile, tmp_manifests, free_subnet):
    """IPv6 listed first, spelled long, with an ipRange on the IPv4 pool: the second plan has no changes."""
    name = f"{project_name}-ds"
    v4 = free_subnet()
    v6 = f"fd00:{secrets.token_hex(2)}:0::/64"
    tmp_manifests(
        "n.yaml",
        f"""
        apiVersion: reconciler/v1
        kind: Network
        metadata: {{name: {name}}}
        spec:
          enableIPv6: true
          ipam:
            config:
              - {{subnet: "{v6}"}}
              - {{subnet: {v4}, ipRange: {v4.rsplit(".", 1)[0]}.128/25}}
        """,
    )
    proc = reconcile("apply", str(tmp_manifests.dir))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    plan = reconcile("plan", str(tmp_manifests.dir))
    assert plan.returncode == 0, plan.stdout


def test_overlapping_subnet_is_refused_before_anything_is_removed(
    api, project_name, reconcile, tmp_manifests, free_subnet, base_image
):
    """Replacing a network into a subnet another network holds is blocked in the plan; nothing is disconnected."""
    name, other = f"{project_name}-a", f"{project_name}-b"
    first, held = free_subnet(), free_subnet()
    api.create_network(other, ipam={"Driver": "default", "Config": [{"Subnet": held}]})
    try:
        tmp_manifests("n.yaml", network(name, first))
        assert reconcile("apply", str(tmp_manifests.dir)).returncode == 0
        ctr = api.create_container(
            base_image,
            ["sleep", "300"],
            name=f"{project_name}-c",
            labels={"io.reconciler.project": project_name},
            host_config=api.create_host_config(network_mode=name),
        )
        api.start(ctr)
        tmp_manifests("n.yaml", network(name, held))
        code, plan = plan_json_any(reconcile, tmp_manifests.dir)
        assert code == 1 and f"overlaps {held} of network {other}" in plan["changes"][0]["blocked"]
        assert reconcile("apply", str(tmp_manifests.dir)).returncode == 1
        assert api.inspect_network(name)["IPAM"]["Config"][0]["Subnet"] == first
        assert name in api.inspect_container(ctr)["NetworkSettings"]["Networks"]
    finally:
        api.remove_network(other)


def test_reclaim_policy_change_is_honoured_after_the_manifest_is_gone(api, project_name, reconcile, tmp_manifests):
    """Delete -> Retain is an in-place change (recorded); a later prune then keeps the volume and its data."""
    name = f"{project_name}-precious"
    tmp_manifests("v.yaml", volume(name, "Delete"))
    tmp_manifests("other.yaml", volume(f"{project_name}-o"))
    assert reconcile("apply", str(tmp_manifests.dir)).returncode == 0
    tmp_manifests("v.yaml", volume(name, "Retain"))
    code, plan = plan_json_any(reconcile, tmp_manifests.dir)
    assert code == 2
    [change] = plan["changes"]
    assert change["action"] == "update"
    assert [(f["path"], f["old"], f["new"]) for f in change["fields"]] == [("reclaimPolicy", "Delete", "Retain")]
    assert reconcile("apply", str(tmp_manifests.dir)).returncode == 0
    assert reconcile("plan", str(tmp_manifests.dir)).returncode == 0
    (tmp_manifests.dir / "v.yaml").unlink()
    proc = reconcile("apply", str(tmp_manifests.dir))
    assert proc.returncode == 0 and "retained" in proc.stdout
    assert api.inspect_volume(name)["Name"] == name


def test_replacing_a_volume_recreates_the_project_containers_on_it(
    api, project_name, reconcile, tmp_manifests, base_image
):
    """A Delete volume used by the project's own container is replaced in one apply: the container is removed
    with it and created again on the new volume; the next plan is in sync."""
    vol, ctr = f"{project_name}-vol", f"{project_name}-c"

    def write(opts: str) -> None:
        tmp_manifests(
            "m.yaml",
            textwrap.dedent(volume(vol, "Delete", opts))
            + f"""---
apiVersion: reconciler/v1
kind: Container
metadata: {{name: {ctr}}}
spec:
  image: {base_image}
  command: [sleep, "300"]
  networkMode: none
  stopTimeout: 0
  mounts: [{{type: volume, source: {vol}, target: /data}}]
""",
        )

    write("")
    assert reconcile("apply", str(tmp_manifests.dir)).returncode == 0
    old_id = api.inspect_container(ctr)["Id"]
    write("driverOpts: {type: tmpfs, device: tmpfs, o: size=4m}")
    code, plan = plan_json_any(reconcile, tmp_manifests.dir)
    assert code == 2
    by_kind = {c["kind"]: c for c in plan["changes"]}
    assert by_kind["Volume"]["action"] == "replace"
    assert by_kind["Volume"]["steps"][0] == f"stop and remove container {ctr} (created again on the new volume)"
    assert by_kind["Container"]["action"] == "create"
    proc = reconcile("apply", str(tmp_manifests.dir))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert api.inspect_volume(vol)["Options"]["type"] == "tmpfs"
    info = api.inspect_container(ctr)
    assert info["Id"] != old_id and info["State"]["Running"]
    assert reconcile("plan", str(tmp_manifests.dir)).returncode == 0


def test_a_delete_policy_survives_the_volume_being_mounted(api, project_name, reconcile, tmp_manifests, base_image):
    """The local driver reports CreatedAt from a stat of the data directory, so a tmpfs volume's CreatedAt moves
    when a container mounts it. Its recorded Delete policy must not move with it: the manifest gone, the volume is
    pruned, not kept as Retain."""
    vol, ctr = f"{project_name}-mv", f"{project_name}-mc"
    tmpfs = "driverOpts: {type: tmpfs, device: tmpfs, o: size=4m}"
    tmp_manifests("v.yaml", textwrap.dedent(volume(vol, "Delete", tmpfs)))
    assert reconcile("apply", str(tmp_manifests.dir)).returncode == 0
    created_at = api.inspect_volume(vol)["CreatedAt"]
    time.sleep(1.1)  # CreatedAt has whole seconds: let one pass, so the mount shows in it
    tmp_manifests(
        "c.yaml",
        f"""
apiVersion: reconciler/v1
kind: Container
metadata: {{name: {ctr}}}
spec:
  image: {base_image}
  command: [sleep, "300"]
  networkMode: none
  stopTimeout: 0
  mounts: [{{type: volume, source: {vol}, target: /data}}]
""",
    )
    assert reconcile("apply", str(tmp_manifests.dir)).returncode == 0
    assert api.inspect_volume(vol)["CreatedAt"] != created_at  # the engine fact this test is about
    assert reconcile("plan", str(tmp_manifests.dir)).returncode == 0
    (tmp_manifests.dir / "v.yaml").unlink()
    (tmp_manifests.dir / "c.yaml").unlink()
    proc = reconcile("apply", "--allow-empty", str(tmp_manifests.dir))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with pytest.raises(NotFound):
        api.inspect_volume(vol)


def test_removing_a_network_label_or_ip_range_is_a_replace(api, project_name, reconcile, tmp_manifests, free_subnet):
    """A label or an ipRange taken out of the manifest shows as a replace naming those fields, and apply drops them."""
    name = f"{project_name}-lr"
    subnet = free_subnet()
    pool = f"{{subnet: {subnet}, ipRange: {subnet.rsplit('.', 1)[0]}.128/25}}"
    template = """
        apiVersion: reconciler/v1
        kind: Network
        metadata: {{name: {name}, labels: {labels}}}
        spec:
          ipam:
            config: [{pool}]
        """
    tmp_manifests("n.yaml", template.format(name=name, labels="{team: a, env: b}", pool=pool))
    assert reconcile("apply", str(tmp_manifests.dir)).returncode == 0
    tmp_manifests("n.yaml", template.format(name=name, labels="{team: a}", pool=f"{{subnet: {subnet}}}"))
    code, plan = plan_json_any(reconcile, tmp_manifests.dir)
    assert code == 2
    [change] = plan["changes"]
    assert change["action"] == "replace" and sorted(f["path"] for f in change["fields"]) == ["ipam", "labels"]
    assert reconcile("apply", str(tmp_manifests.dir)).returncode == 0
    info = api.inspect_network(name)
    assert "env" not in info["Labels"] and "IPRange" not in info["IPAM"]["Config"][0]
    assert reconcile("plan", str(tmp_manifests.dir)).returncode == 0


def test_a_delete_volume_is_kept_when_its_policy_record_is_missing(
    api, project_name, reconcile, tmp_manifests, tmp_path
):
    """Another state dir has no record of the Delete policy: prune keeps the volume; the manifest records it anew."""
    name = f"{project_name}-dv"
    tmp_manifests("v.yaml", volume(name, "Delete"))
    tmp_manifests("other.yaml", volume(f"{project_name}-o"))
    assert reconcile("apply", str(tmp_manifests.dir)).returncode == 0
    elsewhere = {"RECONCILER_STATE_DIR": str(tmp_path / "other-state")}
    code, plan = plan_json_env(reconcile, tmp_manifests.dir, elsewhere)
    assert code == 2
    [change] = plan["changes"]
    assert [(f["path"], f["old"], f["new"]) for f in change["fields"]] == [("reclaimPolicy", "Retain", "Delete")]
    (tmp_manifests.dir / "v.yaml").unlink()
    proc = reconcile("apply", str(tmp_manifests.dir), env=elsewhere)
    assert proc.returncode == 0 and "retained" in proc.stdout, proc.stdout + proc.stderr
    assert api.inspect_volume(name)["Name"] == name
    proc = reconcile("apply", str(tmp_manifests.dir))  # the state dir that recorded Delete at creation
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with pytest.raises(NotFound):
        api.inspect_volume(name)


def plan_json_env(reconcile, directory, env) -> tuple[int, dict]:
    proc = reconcile("plan", str(directory), "--output", "json", env=env)
    assert proc.returncode in (0, 1, 2), proc.stderr
    return proc.returncode, json.loads(proc.stdout)
