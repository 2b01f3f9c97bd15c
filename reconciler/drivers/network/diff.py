"""A declared network against the engine's. Engine networks are immutable: any difference is a replace, whose
steps take the project's containers off the network and put them back on the new one.

Pure: the driver adds what only the engine or the host can tell (users, swarm mode, overlaps, routes)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from reconciler.contract import Step
from reconciler.diffing import REPLACE, Compare, Rule
from reconciler.drivers.network.spec import pools_in_order
from reconciler.model import Action, Change, Desired, FieldChange, Observed

RULES = {
    "driver": REPLACE,
    "internal": REPLACE,
    "attachable": REPLACE,
    "enableIPv6": REPLACE,
    "ipam": REPLACE,
    # the engine adds options of its own (e.g. the overlay's vxlan id); labels are the user's alone
    "options": Rule(Action.REPLACE, Compare.AT_LEAST),
    "encrypted": REPLACE,  # overlay: IPsec between nodes (the engine's `encrypted` driver option)
    "labels": REPLACE,
}


def comparable(desired: Desired, observed: Observed) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both sides with pools matched by subnet, without what the engine assigns when the manifest leaves
    it open (the pools themselves, or a pool's gateway)."""
    want = {**desired.spec, "labels": dict(desired.resource.labels)}
    want["ipam"] = {**desired.spec["ipam"], "config": pools_in_order(desired.spec["ipam"]["config"])}
    have = {k: v for k, v in observed.spec.items() if k != "adopting"}
    have["ipam"] = dict(observed.spec["ipam"])
    if desired.spec["driver"] != "overlay":
        # the engine ignores `attachable` outside swarm scope (Compose sets it on every network it makes)
        want.pop("attachable", None)
        have.pop("attachable", None)
    declared = {e["subnet"]: e for e in want["ipam"]["config"]}
    if not declared:
        have["ipam"]["config"] = []
    else:
        have["ipam"]["config"] = pools_in_order(
            {
                k: v
                for k, v in got.items()
                if got["subnet"] not in declared or k in {"ipRange", *declared[got["subnet"]]}
            }
            for got in observed.spec["ipam"]["config"]
        )
    return want, have


def replace_steps(users: Iterable[str]) -> tuple[Step, ...]:
    users = list(users)
    return (
        *(Step(f"disconnect container {u}", "disconnect", u) for u in users),
        Step("remove network", "remove"),
        Step("create network (on failure: recreate the old one and reconnect)", "create"),
        *(Step(f"reconnect container {u}", "reconnect", u) for u in users),
    )


def adoption(kind: str, project: str, desired: Desired, observed: Observed, blocked: str | None) -> Change:
    """A Compose network of the same name, as declared, is taken over as it is (its containers stay
    attached)."""
    owner = FieldChange("owner", f"Compose project {project}", f"project {project}", Action.UPDATE)
    step = Step(f"adopt network {desired.name} from Compose project {project}", "adopt")
    return Change(kind, desired.name, Action.UPDATE, (owner,), desired, observed, blocked, (step,))
