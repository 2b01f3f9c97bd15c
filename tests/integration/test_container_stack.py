"""Containers on the real engine: a three-tier stack converges, each field class takes its least disruptive
action, and drift made by hand is shown by plan and repaired by apply."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.helpers import Stack, apply_ok, changes_of, fetch, in_sync, plan_json

pytestmark = pytest.mark.engine


def test_three_tier_stack_converges_and_serves(reconcile: Any, stack: Stack, api: Any) -> None:
    """From empty: apply creates everything in order, the page is served on 127.0.0.1, the next plan exits 0."""
    directory = stack.write()
    rc, plan = plan_json(reconcile, directory)
    assert rc == 2 and {c["action"] for c in plan["changes"]} == {"create"}
    apply_ok(reconcile, directory)
    assert fetch(stack.port) == f"hello from {stack.p}\n"
    db = api.inspect_container(stack.name("db"))
    assert db["State"]["Health"]["Status"] == "healthy"
    api_started = api.inspect_container(stack.name("api"))["State"]["StartedAt"]
    first_healthy = min(h["End"] for h in db["State"]["Health"]["Log"] if h["ExitCode"] == 0)
    assert api_started >= first_healthy[:19]  # api waited for db to be healthy
    in_sync(reconcile, directory)


def test_each_field_class_takes_its_action(reconcile: Any, stack: Stack, api: Any) -> None:
    """memory -> update in place; alias -> reconnect; state -> stop; env -> replace; each keeps or changes the ID."""
    directory = stack.write()
    apply_ok(reconcile, directory)
    ids = {k: api.inspect_container(stack.name(k))["Id"] for k in ("db", "api", "web")}

    def step(edit: Callable[[], None], name: str, action: str, fields: list[str]) -> None:
        edit()
        stack.write()
        rc, plan = plan_json(reconcile, directory)
        assert rc == 2 and changes_of(plan) == {stack.name(name): (action, fields)}, plan
        apply_ok(reconcile, directory)
        in_sync(reconcile, directory)

    step(lambda: stack.specs["api"].update(resources={"memory": "48m"}), "api", "update", ["resources.memory"])
    info = api.inspect_container(stack.name("api"))
    assert info["Id"] == ids["api"] and info["HostConfig"]["Memory"] == 48 * 2**20

    net = stack.name("net")
    step(
        lambda: stack.specs["api"].update(networks=[{"name": net, "aliases": ["api", "api2"]}]),
        "api",
        "update",
        [f"networks.{net}"],
    )
    info = api.inspect_container(stack.name("api"))
    assert info["Id"] == ids["api"] and "api2" in info["NetworkSettings"]["Networks"][net]["Aliases"]

    step(lambda: stack.specs["web"].update(state="stopped"), "web", "update", ["state"])
    info = api.inspect_container(stack.name("web"))
    assert info["Id"] == ids["web"] and not info["State"]["Running"]

    step(lambda: stack.specs["web"].update(state="running"), "web", "update", ["state"])
    assert fetch(stack.port)

    step(lambda: stack.specs["api"]["env"].update(DB_HOST="db2"), "api", "replace", ["env.DB_HOST"])
    info = api.inspect_container(stack.name("api"))
    assert info["Id"] != ids["api"] and "DB_HOST=db2" in info["Config"]["Env"]
    names = {c["Names"][0] for c in api.containers(all=True, filters={"label": f"io.reconciler.project={stack.p}"})}
    assert names == {f"/{stack.name(k)}" for k in ("db", "api", "web")}  # no aside left behind
    assert api.inspect_container(stack.name("db"))["Id"] == ids["db"]  # no cascading replace


def test_drift_by_hand_is_planned_and_repaired(reconcile: Any, stack: Stack, api: Any) -> None:
    """docker update / network disconnect / docker stop show as updates and apply puts them back in place."""
    directory = stack.write()
    apply_ok(reconcile, directory)
    ids = {k: api.inspect_container(stack.name(k))["Id"] for k in ("db", "api", "web")}
    api.update_container(stack.name("api"), mem_limit="64m", memswap_limit="128m")
    api.disconnect_container_from_network(stack.name("db"), stack.name("net"))
    api.stop(stack.name("web"), timeout=1)
    rc, plan = plan_json(reconcile, directory)
    assert rc == 2
    assert changes_of(plan) == {
        stack.name("api"): ("update", ["resources.memory"]),
        stack.name("db"): ("update", [f"networks.{stack.name('net')}"]),
        stack.name("web"): ("update", ["state"]),
    }
    apply_ok(reconcile, directory)
    in_sync(reconcile, directory)
    assert {k: api.inspect_container(stack.name(k))["Id"] for k in ids} == ids
    assert api.inspect_container(stack.name("api"))["HostConfig"]["Memory"] == 32 * 2**20
    assert fetch(stack.port)


def test_sensitive_env_file_values_never_printed(reconcile: Any, stack: Stack, tmp_manifests: Any) -> None:
    """A changed env-file value replaces the container and shows as (sensitive) in plan text and JSON."""
    tmp_manifests("secret.env", "TOKEN=first-secret-value\n")
    stack.specs["api"]["envFiles"] = ["./secret.env"]
    directory = stack.write()
    apply_ok(reconcile, directory)
    tmp_manifests("secret.env", "TOKEN=second-secret-value\n")
    text = reconcile("plan", directory)
    assert text.returncode == 2 and "(sensitive)" in text.stdout
    rc, plan = plan_json(reconcile, directory)
    assert rc == 2 and changes_of(plan)[stack.name("api")] == ("replace", ["env.TOKEN"])
    proc = reconcile("apply", directory)
    for output in (text.stdout, text.stderr, json.dumps(plan), proc.stdout, proc.stderr):
        assert "secret-value" not in output
    assert proc.returncode == 0


def test_unhealthy_dependency_fails_clearly(reconcile: Any, stack: Stack, api: Any) -> None:
    """db turns unhealthy: api's create fails naming it (nothing of api is left), web is skipped, exit 1."""
    stack.specs["db"]["healthcheck"] = {"test": ["CMD", "false"], "interval": "1s", "retries": 1}
    directory = stack.write()
    proc = reconcile("apply", directory)
    assert proc.returncode == 1
    assert f"dependency {stack.name('db')} is unhealthy" in proc.stdout
    assert "skipped" in proc.stdout
    names = {c["Names"][0] for c in api.containers(all=True, filters={"label": f"io.reconciler.project={stack.p}"})}
    assert names == {f"/{stack.name('db')}"}
