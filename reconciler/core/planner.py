"""Desired x observed -> Plan. Drivers translate and diff single objects; the planner decides the rest:
ownership, pruning, and the order constraints between changes."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

import structlog

from reconciler.contract import Driver
from reconciler.core.catalog import Catalog
from reconciler.core.graph import Key, find_cycle, topological_order
from reconciler.model import Action, Change, Observed, Plan

log = structlog.get_logger()


def observe_all(catalog: Catalog, drivers: Mapping[str, Driver]) -> dict[str, Mapping[str, Observed]]:
    """Every kind's observation, concurrently (one filtered listing per kind, plus the inspects it needs)."""
    kinds = sorted(drivers)
    with ThreadPoolExecutor(max_workers=max(1, len(kinds))) as pool:
        futures = {kind: pool.submit(drivers[kind].observe, catalog.of_kind(kind)) for kind in kinds}
        return {kind: fut.result() for kind, fut in futures.items()}


def _unowned_conflict(obs: Observed, project: str) -> str:
    owner = f"project {obs.project!r}" if obs.project else "no reconciler project"
    return (
        f"name {obs.name!r} is taken by an existing {obs.kind.lower()} ({obs.id[:12]}) owned by {owner}; "
        "reconcile never takes over objects it does not own"
    )


def plan_changes(
    catalog: Catalog,
    drivers: Mapping[str, Driver],
    project: str,
    observed: Mapping[str, Mapping[str, Observed]],
    prune: bool = True,
    keep_reason: str = "kept because of --no-prune",
) -> Plan:
    """One change per declared object and per owned object whose manifest is gone (when `prune`)."""
    changes: dict[Key, Change] = {}
    notes: list[str] = []
    for key, desired in sorted(catalog.desired.items()):
        obs = observed.get(desired.kind, {}).get(desired.name)
        # A driver whose objects are not exclusively held by name (an image reference can be used by many
        # projects) sets `claims_names = False` and judges ownership itself in diff().
        if obs is not None and not obs.owned_by(project) and drivers[desired.kind].claims_names:
            changes[key] = Change(
                desired.kind,
                desired.name,
                Action.CREATE,
                desired=desired,
                observed=obs,
                blocked=_unowned_conflict(obs, project),
            )
            continue
        changes[key] = drivers[desired.kind].diff(desired, obs)

    for kind, objects in sorted(observed.items()):
        for name, obs in sorted(objects.items()):
            if (kind, name) in catalog.desired or not obs.owned_by(project):
                continue
            # a leftover of an interrupted replace of a declared object is replace state, not an object whose
            # manifest is gone: it is pruned even when pruning is off
            if not prune and (kind, drivers[kind].leftover_of(obs)) not in catalog.desired:
                notes.append(f"{kind}/{name}: manifest gone; {keep_reason}")
                continue
            change = drivers[kind].prune(obs)
            changes[(kind, name)] = change
            notes.extend(f"{kind}/{name}: {n}" for n in change.notes if change.action is Action.NONE)

    changes = _follow_upstream(changes, catalog, drivers)
    changes = _see_whole_plan(changes, drivers)
    changes = _block_dependents(changes, catalog)
    for change in changes.values():
        if change.action is not Action.NONE:
            notes.extend(f"{change.subject}: {n}" for n in change.notes)
    edges = order_edges(changes, catalog, drivers)
    # shown (and reported) in the order apply works through them
    ordered = topological_order(changes, edges)
    return Plan(project=project, changes=tuple(changes[k] for k in ordered), notes=tuple(notes), edges=edges)


def _see_whole_plan(changes: dict[Key, Change], drivers: Mapping[str, Driver]) -> dict[Key, Change]:
    """Let a driver revise its changes once every other change is known (an image kept for a container that
    this very plan removes can go too)."""
    for key in sorted(changes):
        changes[key] = drivers[key[0]].after_plan(changes[key], changes)
    return changes


def _block_dependents(changes: dict[Key, Change], catalog: Catalog) -> dict[Key, Change]:
    """A pending change that needs a blocked object is blocked too, so the plan says what apply will do
    (apply skips it) instead of promising it."""
    settled = False
    while not settled:
        settled = True
        for key, change in changes.items():
            if not change.pending:
                continue
            stuck = sorted(d for d in catalog.dependencies(key) if d in changes and changes[d].blocked is not None)
            if stuck:
                changes[key] = dataclasses.replace(
                    change, blocked=f"waits for {stuck[0][0]}/{stuck[0][1]}, which is blocked"
                )
                settled = False
    return changes


def _follow_upstream(changes: dict[Key, Change], catalog: Catalog, drivers: Mapping[str, Driver]) -> dict[Key, Change]:
    """Let a driver revise a change when something it depends on changes (a container whose image is rebuilt
    must be replaced once the build is done)."""
    for key in sorted(changes, key=lambda k: drivers[k[0]].rank):
        upstream = [changes[d] for d in sorted(catalog.dependencies(key)) if d in changes and changes[d].pending]
        if upstream and changes[key].action is not Action.DELETE:
            changes[key] = drivers[key[0]].follow(changes[key], upstream)
    return changes


def order_edges(
    changes: Mapping[Key, Change], catalog: Catalog, drivers: Mapping[str, Driver]
) -> dict[Key, frozenset[Key]]:
    """What each change waits for.

    Always: a create/update/replace waits for the changes of what it references, and a delete waits for the
    deletes of higher ranks (pruned containers go before the networks and volumes they used).
    Per kind, as its driver declares:
    - `delete_after_users`: a delete also waits for every other change of a higher rank (a volume or image is
      removed only once no replaced container uses it any more);
    - `create_after_deletes`: a create/update/replace waits for the deletes of its own kind (a pruned container
      may hold the host port or name its successor needs; a pruned network the subnet).
    And a pruned object goes before the same-kind objects pruned with it that it depended on (`Observed.depends_on`,
    the reverse of the order they were started in).
    Should a combination of third-party drivers make these optional edges circular, they are dropped.
    """

    def rank(key: Key) -> int:
        return drivers[key[0]].rank

    deletes = [k for k, c in changes.items() if c.action is Action.DELETE]
    required: dict[Key, set[Key]] = {}
    optional: dict[Key, set[Key]] = {}
    for key, change in changes.items():
        if change.action is Action.DELETE:
            required[key] = {k for k in deletes if rank(k) > rank(key)}
            optional[key] = {k for k in changes if rank(k) > rank(key)} if drivers[key[0]].delete_after_users else set()
        else:
            required[key] = {k for k in catalog.dependencies(key) if k in changes}
            optional[key] = (
                {k for k in deletes if k[0] == key[0] and k != key} if drivers[key[0]].create_after_deletes else set()
            )
    for key, change in changes.items():  # a pruned object goes before the same-kind objects it depended on
        if change.action is Action.DELETE and change.observed is not None:
            for name in change.observed.depends_on:
                dep = (key[0], name)
                if dep in changes and changes[dep].action is Action.DELETE:
                    optional[dep].add(key)
    combined = {k: required[k] | optional[k] for k in changes}
    if find_cycle(combined) is not None:
        log.warning("plan.order.relaxed", reason="optional ordering edges formed a cycle")
        combined = required
    return {k: frozenset(v) for k, v in combined.items()}
