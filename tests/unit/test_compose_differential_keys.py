"""The differential test's stacks (tests/compose_files/differential) use every Compose key the importer maps,
except the few composediff.NOT_IN_STACKS names with the reason they cannot be brought up by both tools."""

from __future__ import annotations

import yaml

from reconciler.compose.keys import HANDLED
from tests.composediff import NOT_IN_STACKS, STACKS, stack_names


def test_the_stacks_use_every_mapped_key() -> None:
    used: set[str] = set()
    for name in stack_names():
        services = yaml.safe_load((STACKS / name / "compose.yaml").read_text())["services"]
        for service in services.values():
            used |= set(service)
    assert sorted(HANDLED - used - set(NOT_IN_STACKS)) == []
    assert sorted(set(NOT_IN_STACKS) & used) == []  # an exemption the stacks no longer need
    assert sorted(set(NOT_IN_STACKS) - HANDLED) == []
