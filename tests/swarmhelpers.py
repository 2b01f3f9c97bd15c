"""Shared by the swarm tests (tests/integration/test_swarm_*.py): manifest builders, CLI helpers, cleanup."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from docker.errors import NotFound

from tests.conftest import configured_docker_host

SLEEPER = "trap 'exit 0' TERM; while true; do sleep 1; done"
LABEL = "io.reconciler.project"


def remove_swarm_objects(api: Any, project: str) -> None:
    """The project's services (waiting until their task containers are gone: they hold networks), secrets and
    configs."""
    label = {"label": [f"{LABEL}={project}"]}
    services = api.services(filters=label)
    for service in services:
        with contextlib.suppress(NotFound):
            api.remove_service(service["ID"])
    deadline = time.monotonic() + 60
    for service in services:
        while api.containers(all=True, filters={"label": f"com.docker.swarm.service.id={service['ID']}"}):
            # loud, not silent: a task container left behind holds the project's networks
            assert time.monotonic() < deadline, f"task containers of service {service['Spec']['Name']} outlived 60 s"
            time.sleep(0.5)
    for secret in api.secrets(filters=label):
        api.remove_secret(secret["ID"])
    for config in api.configs(filters=label):
        api.remove_config(config["ID"])


def write(tmp_manifests: Any, docs: list[dict[str, Any]], name: str = "m.yaml") -> Path:
    tmp_manifests(name, yaml.safe_dump_all(docs, sort_keys=False))
    return tmp_manifests.dir


def doc(kind: str, name: str, spec: dict[str, Any], labels: dict[str, str] | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, **({"labels": labels} if labels else {})}
    return {"apiVersion": "reconciler/v1", "kind": kind, "metadata": metadata, "spec": spec}


def service(image: str, **extra: Any) -> dict[str, Any]:
    """A service that stops at once on SIGTERM and updates quickly (monitor 1s)."""
    return {
        "image": image,
        "command": ["sh", "-c", SLEEPER],
        "stopGracePeriod": "2s",
        "update": {"monitor": "1s", **extra.pop("update", {})},
        **extra,
    }


def plan_json(reconcile: Callable[..., Any], directory: Path) -> tuple[int, dict[str, Any]]:
    proc = reconcile("plan", directory, "--output", "json")
    assert proc.returncode in (0, 2), proc.stdout + proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def apply_ok(reconcile: Callable[..., Any], directory: Path, *args: str) -> str:
    proc = reconcile("apply", directory, *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def changes_of(plan: dict[str, Any]) -> dict[tuple[str, str], tuple[str, list[str]]]:
    return {(c["kind"], c["name"]): (c["action"], [f["path"] for f in c["fields"]]) for c in plan["changes"]}


def docker_cli(*args: str) -> None:
    """The docker CLI against the test engine, as a person would change things by hand."""
    env = {**os.environ, "DOCKER_HOST": configured_docker_host() or ""}
    subprocess.run(["docker", *args], env=env, check=True, capture_output=True, timeout=60)


def running_tasks(api: Any, name: str) -> list[dict[str, Any]]:
    return [
        t for t in api.tasks(filters={"service": name, "desired-state": "running"}) if t["Status"]["State"] == "running"
    ]


def task_container(api: Any, name: str) -> str:
    return api.containers(filters={"label": f"com.docker.swarm.service.name={name}"})[0]["Id"]


def exec_output(api: Any, container: str, *cmd: str) -> str:
    run = api.exec_create(container, list(cmd))
    return api.exec_start(run["Id"]).decode()
