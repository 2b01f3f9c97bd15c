"""Replaces an earlier run did not finish (killed, the host rebooted) after it parked the old container as
`<name>__reconciler_old`, including the replaces of `apply --adopt` (the parked container is then one of the
Compose project being adopted). The next plan, with or without `--adopt`, finishes or undoes the interrupted step:

- the new container holds `<name>` and runs (or is declared stopped): only the removal of the parked one was
  left; it is a leftover of the replace and pruned (even under --no-prune);
- nothing holds `<name>`: the parked container stands for it again, so its replace (or its rename back and
  start, when its spec is the declared one) is planned as for any parked container; should that fail, it is
  given its name back and started;
- the new container holds `<name>` but never ran (created, or it stopped): it never proved it works, so it is
  removed and the parked one stands for `<name>` as above (`ContainerFacts.discard`).

Volumes are never touched: a parked container is removed without its volumes, as any replaced one.
Pure: the driver lists and inspects, and hands the observations in here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from reconciler.drivers.container.observe import ContainerFacts
from reconciler.drivers.container.spec import ASIDE_SUFFIX
from reconciler.drivers.engine.adoption import COMPOSE_NUMBER, COMPOSE_PROJECT, COMPOSE_SERVICE
from reconciler.model import LABEL_NAME, LABEL_PROJECT, Observed

COMPOSE_VERSION = "com.docker.compose.version"


def base_name(engine_name: str) -> str | None:
    """`<name>` of a container parked as `<name>__reconciler_old`, or None for any other name."""
    if engine_name.endswith(ASIDE_SUFFIX) and len(engine_name) > len(ASIDE_SUFFIX):
        return engine_name.removesuffix(ASIDE_SUFFIX)
    return None


def compose_name(labels: Mapping[str, str], fallback: str) -> str:
    """The name Compose gave a container (v1 `P_S_N`, v2 `P-S-N`), from its own labels: a parked container of
    an interrupted adoption goes back under it when its replace fails."""
    project, service, number = (labels.get(k) for k in (COMPOSE_PROJECT, COMPOSE_SERVICE, COMPOSE_NUMBER))
    if not (project and service and number):
        return fallback
    sep = "_" if str(labels.get(COMPOSE_VERSION, "")).startswith("1.") else "-"
    return sep.join((project, service, number))


def _facts(obs: Observed) -> ContainerFacts:
    assert isinstance(obs.raw, ContainerFacts)
    return obs.raw


def _done(primary: Observed, wanted_state: str | None) -> bool:
    """The new container of a replace finished its part: it runs, or stays stopped as declared."""
    return primary.spec.get("state") in ("running", "paused") or wanted_state == "stopped"


def resume_interrupted(
    found: Mapping[str, Observed],
    compose_parked: Mapping[str, Observed],
    wanted_states: Mapping[str, str],
    project: str,
) -> dict[str, Observed]:
    """`found` (the project's containers by key: a parked one under its name when nothing holds it, under its
    aside name otherwise) with every parked container settled as the module says. `compose_parked`: parked
    containers of the Compose project of the same name, by engine name, labelled as this project's; and
    `wanted_states`: declared name -> declared state."""
    out = dict(found)
    parked = {k: o for k, o in found.items() if base_name(_facts(o).engine_name) and not _facts(o).aside}
    parked.update({k: o for k, o in compose_parked.items() if k not in out})
    for key, obs in sorted(parked.items()):
        name = base_name(_facts(obs).engine_name)
        if name is None or obs.labels.get(LABEL_NAME) != name:
            continue
        primary = out.get(name)
        if primary is None:
            out.pop(key, None)
            out[name] = dataclasses.replace(obs, name=name, raw=dataclasses.replace(_facts(obs), aside=True))
        elif primary.labels.get(LABEL_PROJECT) != project or _facts(primary).adopted or _facts(primary).aside:
            continue  # not this project's new container (or already settled): left as it is
        elif _done(primary, wanted_states.get(name)):
            out[key] = obs  # a leftover: pruned
        else:
            out.pop(key, None)
            facts = dataclasses.replace(_facts(obs), aside=True, discard=primary.id)
            out[name] = dataclasses.replace(obs, name=name, raw=facts)
    return out
