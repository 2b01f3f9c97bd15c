"""The differential test's stacks (tests/compose_files/differential) use every Compose key the importer maps,
except the few composediff.NOT_IN_STACKS names with the reason they cannot be brought up by both tools."""

from __future__ import annotations

import yaml

from reconciler.compose.keys import HANDLED
from tests.composediff import NOT_IN_STACKS, STACKS, Side, compare, stack_names


def test_the_stacks_use_every_mapped_key() -> None:
    used: set[str] = set()
    for name in stack_names():
        services = yaml.safe_load((STACKS / name / "compose.yaml").read_text())["services"]
        for service in services.values():
            used |= set(service)
    assert sorted(HANDLED - used - set(NOT_IN_STACKS)) == []
    assert sorted(set(NOT_IN_STACKS) & used) == []  # an exemption the stacks no longer need
    assert sorted(set(NOT_IN_STACKS) - HANDLED) == []


def _container(name: str, project: str, host: dict, **config: object) -> dict:
    return {
        "Id": ("f" if project.startswith("c") else "e") * 64,
        "Name": f"/{name}",
        "Config": {"Labels": {"com.docker.compose.project": project, "io.reconciler.project": project}, **config},
        "HostConfig": host,
        "Mounts": [],
        "NetworkSettings": {"Networks": {}},
    }


def test_compare_reports_what_differs_and_only_what_the_allow_list_explains() -> None:
    """The comparison itself: project names and container names are placeholders, own labels are dropped, an
    allowed difference passes only with the values its entry names, anything else is one line."""
    theirs = Side("ct-0123abcd", {}, "")
    ours = Side("t-0123abcd", {}, "")
    theirs.containers["db"] = _container(
        "ct-0123abcd_db_1",
        "ct-0123abcd",
        {"NetworkMode": "ct-0123abcd_back", "ShmSize": 268435456, "GroupAdd": ["b", "a"]},
        StopTimeout=None,
    )
    ours.containers["db"] = _container(
        "t-0123abcd-db-1",
        "t-0123abcd",
        {"NetworkMode": "t-0123abcd_back", "ShmSize": 67108864, "GroupAdd": ["a", "b"]},
        StopTimeout=10,
    )
    assert compare(theirs, ours) == ["container:db:HostConfig.ShmSize: compose=268435456 reconcile=67108864"]
    ours.containers["db"]["HostConfig"]["ShmSize"] = 268435456
    assert compare(theirs, ours) == []
    ours.containers["db"]["Config"]["StopTimeout"] = 30  # allowed only as the engine's default, 10
    assert compare(theirs, ours) == ["container:db:Config.StopTimeout: compose=null reconcile=30"]
