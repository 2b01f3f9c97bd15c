"""A FirewallAllowList against the live ruleset. Each list's view of the project's whole ruleset (what it guards,
its sources, the shared rules of its groups) is taken the same way from the expected and the live rules
(observe.py); a list whose view differs is drifted, field by field, then rule by rule.

Pure: the driver reads the rules and builds the expected ruleset from every desired list.
"""

from __future__ import annotations

from collections.abc import Mapping

from reconciler.diffing import UPDATE, diff_specs
from reconciler.drivers.firewall.backend import LiveFamily
from reconciler.drivers.firewall.detect import Selection
from reconciler.drivers.firewall.observe import list_view, read_list
from reconciler.drivers.firewall.rules import ChainSet, main_chain
from reconciler.drivers.firewall.spec import describe, families_of
from reconciler.model import Action, Desired, FieldChange

SPEC_FIELDS = ("interfaces", "sources", "destinations", "ports", "spec-hash")
RULES = {key: UPDATE for key in SPEC_FIELDS}


def list_notes(desired: Desired, interfaces: set[str] | None, sel: Selection) -> list[str]:
    """What the plan says beside a list's change: no source allowed, interfaces not there (yet), IPv6 not
    filtered."""
    spec = desired.spec
    notes = []
    if not spec["sources"]:
        notes.append(f"allows no source: drops all {describe(spec)}")
    if interfaces is not None:
        missing = [i for i in spec["interfaces"] if i not in interfaces]
        if missing:
            notes.append(
                f"interface {', '.join(missing)} does not exist (yet); its rules are written anyway "
                "and take effect when it appears"
            )
    if 6 not in sel.families and sel.backend is not None:
        v6 = 6 in families_of([*spec["sources"], *spec["destinations"]])
        what = "its IPv6 entries are not enforced" if v6 else "IPv6 clients are not filtered"
        notes.append(
            f"{what}: there is no ip6tables DOCKER-USER chain (Docker's ip6tables is off); with the "
            "userland proxy, IPv6 clients reach published ports through docker-proxy anyway"
        )
    return notes


def list_changes(
    project: str,
    name: str,
    sel: Selection,
    expected: Mapping[int, ChainSet | None],
    live: Mapping[int, ChainSet | None],
    live_families: Mapping[int, LiveFamily],
) -> list[FieldChange]:
    """How list `name`'s view of the live ruleset differs from its view of the `expected` one: its spec as read
    back, then (same spec) its rules line by line and the jump from DOCKER-USER, per family of `sel`."""
    want = read_list(expected, project, name) or {}
    have = read_list(live, project, name) or {}
    fields = diff_specs(want, have, RULES)
    if fields:
        return fields
    # Same list, but the rules enforcing it may have been edited by hand.
    for family in sel.families:
        groups = cs.covered.get(name, ()) if (cs := expected[family]) else ()
        want_lines = list_view(expected[family], name, project, groups)
        have_lines = list_view(live.get(family), name, project, groups)
        have_lines += _foreign_main_rules(live.get(family), expected[family])
        if want_lines != have_lines:
            missing = [line for line in want_lines if line not in have_lines]
            extra = [line for line in have_lines if line not in want_lines]
            note = "" if missing or extra else "rule order differs"
            fields.append(FieldChange(f"rules.ipv{family}", extra, missing, Action.UPDATE, note=note))
        jump = live_families.get(family)
        if jump is None or not jump.jump_on_top:
            fields.append(
                FieldChange(
                    f"jump.ipv{family}",
                    _jump_text(jump),
                    "rule 1",
                    Action.UPDATE,
                    note=sel.backend.jump_note(family, project)
                    if sel.backend is not None and hasattr(sel.backend, "jump_note")
                    else f"the jump from DOCKER-USER to {main_chain(project)} must be its first rule "
                    "(rules above it, such as Docker's -j RETURN, see traffic first)",
                )
            )
    return fields


def _jump_text(live: LiveFamily | None) -> str:
    """Where the project's jump is, for the plan: `missing`, `rule 3`, `2 jumps, first at rule 1`."""
    if live is None or live.jumps == 0:
        return "missing"
    if live.jumps > 1:
        return f"{live.jumps} jumps, first at rule {live.jump_index}"
    return f"rule {live.jump_index}"


def _foreign_main_rules(live: ChainSet | None, expected: ChainSet | None) -> list[str]:
    """Rules in the live main chain that the desired ruleset does not have (a hand edit affects every list)."""
    if live is None:
        return []
    known = set(expected.chains.get(expected.main, ())) if expected is not None else set()
    return [r.text(live.main) for r in live.chains.get(live.main, ()) if r not in known]


def create_steps(desired: Desired) -> tuple[str, ...]:
    """A new list's plan: the rules it will write, in one line."""
    spec = desired.spec
    sources = ", ".join(spec["sources"]) or "no source"
    return (f"{describe(spec)}: allow {sources}; drop every other source",)
