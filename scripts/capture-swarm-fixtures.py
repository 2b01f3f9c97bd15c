#!/usr/bin/env python3
"""Regenerate tests/unit/swarm_fixtures/*.json from the real test engine (a swarm manager).

Applies tests/unit/swarm_fixtures/full (every Service field) as project `fxcap`, records what the engine reports
(`inspect_service`, its tasks, the network and secret/config names the readback needs), records a service made by
hand with `docker service create` (the CLI's own defaults), then removes everything it created.

    . .testenv/env && .venv/bin/python scripts/capture-swarm-fixtures.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "unit" / "swarm_fixtures"
PROJECT = "fxcap"
CLI_SERVICE = "fxcap-by-hand"
IMAGE = "127.0.0.1:5000/reconciler/busybox:1.35"


def reconcile(*args: str) -> None:
    cmd = [sys.executable, "-m", "reconciler.cli", "--project", PROJECT, *args]
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL)


def names(items: list[dict], key: str = "Name") -> dict[str, str]:
    return {i["Spec"]["Name"]: i["Spec"]["Labels"].get("io.reconciler.name", "") for i in items}


def main() -> None:
    api = docker.APIClient(base_url=os.environ["DOCKER_HOST"], version="auto")
    label = {"label": [f"io.reconciler.project={PROJECT}"]}
    try:
        reconcile("apply", str(FIXTURES / "full"))
        info = api.inspect_service("fx-web")
        doc = {
            "service": info,
            "tasks": api.tasks(filters={"service": info["ID"]}),
            "networks": {n["Id"]: n["Name"] for n in api.networks(filters={"driver": "overlay"})},
            "secrets": names(api.secrets(filters=label)),
            "configs": names(api.configs(filters=label)),
        }
        (FIXTURES / "service-full.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
        subprocess.run(
            ["docker", "service", "create", "-q", "--detach", "--name", CLI_SERVICE, IMAGE, "sleep", "3600"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        time.sleep(1)
        by_hand = {"service": api.inspect_service(CLI_SERVICE), "networks": {}, "secrets": {}, "configs": {}}
        (FIXTURES / "service-cli.json").write_text(json.dumps(by_hand, indent=1, sort_keys=True) + "\n")
    finally:
        subprocess.run(["docker", "service", "rm", CLI_SERVICE], check=False, capture_output=True)
        with tempfile.TemporaryDirectory() as empty:
            reconcile("apply", "--allow-empty", empty)
        for volume in api.volumes(filters={"name": "fx-data"}).get("Volumes") or []:
            if volume["Name"] == "fx-data":
                for _ in range(20):
                    try:
                        api.remove_volume("fx-data")
                        break
                    except docker.errors.APIError:
                        time.sleep(0.5)
        api.close()


if __name__ == "__main__":
    main()
