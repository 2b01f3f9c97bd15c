"""Networks of the project that share a name. The engine lets two creates of one name both succeed when they
run at once (its duplicate check and the create are not one step, whatever `CheckDuplicate` says): an apply
killed while its create was in flight, and the next apply creating the same network. The engine then refuses
the name itself: a start says `Could not attach to network N: ... not found`, a remove says `N is ambiguous`.

The project keeps one of them (the one most of its containers are on) and removes the others, moving the
containers on them to the kept one. Pure: the driver lists, inspects and carries out the steps."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.contract import Step
from reconciler.model import Action, FieldChange


@dataclass(frozen=True)
class Duplicates:
    """The kept network's ID and the others of its name: (ID, {container ID: container name}) each."""

    kept: str
    extra: tuple[tuple[str, Mapping[str, str]], ...]

    @property
    def ids(self) -> list[str]:
        return [net_id for net_id, _ in self.extra]


def split(inspected: Sequence[Mapping[str, Any]]) -> tuple[Mapping[str, Any], Duplicates]:
    """The network to keep among same-named ones (the one with the most containers, then the lowest ID, so two
    plans pick the same) and the others."""
    ranked = sorted(inspected, key=lambda n: (-len(n.get("Containers") or {}), n["Id"]))
    kept, rest = ranked[0], ranked[1:]
    extra = tuple(
        (n["Id"], {cid: str(c.get("Name") or cid[:12]) for cid, c in (n.get("Containers") or {}).items()}) for n in rest
    )
    return kept, Duplicates(kept["Id"], extra)


def field(dups: Duplicates) -> FieldChange:
    note = (
        "the engine holds more than one network of this name (creates that ran at once, as when an apply was "
        "killed while its create was in flight): the others are removed, their containers moved to the kept one"
    )
    return FieldChange(
        "duplicates", sorted(i[:12] for i in [dups.kept, *dups.ids]), [dups.kept[:12]], Action.UPDATE, note=note
    )


def steps(dups: Duplicates) -> tuple[Step, ...]:
    out: list[Step] = []
    for net_id, containers in dups.extra:
        for cid, name in sorted(containers.items(), key=lambda c: c[1]):
            text = f"move container {name} from duplicate network {net_id[:12]} to {dups.kept[:12]}"
            out.append(Step(text, "move_off_duplicate", net_id, cid))
        out.append(Step(f"remove duplicate network {net_id[:12]}", "remove_duplicate", net_id))
    return tuple(out)


def others_of(listed: Iterable[Mapping[str, Any]], name: str, keep: str, project_label: tuple[str, str]) -> list[str]:
    """IDs of the networks named `name` in `keep`'s scope (a swarm's overlay is not a local network's twin), other
    than `keep`, that carry the project's label."""
    key, value = project_label
    listed = [n for n in listed if n.get("Name") == name]
    scope = next((n.get("Scope") for n in listed if n["Id"] == keep), None)
    return [
        n["Id"]
        for n in listed
        if n["Id"] != keep and n.get("Scope") == scope and (n.get("Labels") or {}).get(key) == value
    ]
