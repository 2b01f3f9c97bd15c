"""FirewallAllowList driver: who may reach published ports, enforced in Docker's DOCKER-USER chain.

Rules of all lists of a project share chains (several lists on one interface and port allow the union of their
sources), so the driver always computes the project's whole ruleset from every desired list and writes it in one
transaction per family. Each list's view of that ruleset (what it guards, its sources, the shared rules of its
groups) is compared with the same view of the live ruleset: a list whose view differs is drifted.

The desired lists are the ones `observe()` is given; the driver instance lives for one pass, so what it keeps
of them never outlives the pass.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

from reconciler.contract import BaseDriver, Catalog, DriverContext, option
from reconciler.diffing import UPDATE, diff_specs
from reconciler.drivers.firewall.backend import LiveFamily
from reconciler.drivers.firewall.detect import Selection, choose, interface_names, resolve_mode
from reconciler.drivers.firewall.nft_backend import engine_firewall_driver
from reconciler.drivers.firewall.observe import list_view, read_list
from reconciler.drivers.firewall.rules import (
    COMMENT_PREFIX,
    HASH_KEY,
    AllowList,
    ChainSet,
    build_chains,
    jump_rule,
    main_chain,
)
from reconciler.drivers.firewall.spec import check_spec, describe, families_of, normalize_spec
from reconciler.errors import PermanentError, ReconcileError, TemporaryError
from reconciler.model import (
    LABEL_KIND,
    LABEL_NAME,
    LABEL_PROJECT,
    LABEL_SPEC_HASH,
    Action,
    Change,
    Desired,
    FieldChange,
    Observed,
    Resource,
)
from reconciler.spechash import spec_hash

KIND = "FirewallAllowList"
SPEC_FIELDS = ("interfaces", "sources", "destinations", "ports", "spec-hash")
RULES = {key: UPDATE for key in SPEC_FIELDS}


@dataclass(frozen=True)
class FirewallOptions:
    backend: str = option(
        "auto",
        "--firewall-backend",
        "how FirewallAllowList rules are written (default: auto-detect)",
        choices=("auto", "iptc", "restore", "nftables"),
        env="RECONCILER_FIREWALL_BACKEND",
    )
    # Tests run a backend inside a throw-away network namespace; not on the command line.
    netns: str | None = None


class FirewallDriver(BaseDriver):
    kind = KIND
    rank = 3  # after the containers whose published ports it guards
    options_type: ClassVar[type] = FirewallOptions
    local_only = True  # written with this machine's iptables or nft, never through an engine

    def __init__(self, ctx: DriverContext) -> None:
        super().__init__(ctx)
        self.options = ctx.options_for(FirewallOptions)
        self.netns: str | None = self.options.netns
        self._lists: dict[str, Desired] = {}
        self._pruned: set[str] = set()
        self._selection: Selection | None = None
        self._live: dict[int, LiveFamily] = {}
        self._interfaces: set[str] | None = None
        self._lock = threading.Lock()

    # --- pure -------------------------------------------------------------------------------------------------

    def normalize(self, resource: Resource) -> Desired:
        spec = normalize_spec(resource.spec)
        return Desired(resource, spec, spec_hash(KIND, spec, resource.labels))

    def check(self, desired: Desired, catalog: Catalog) -> Iterable[tuple[str, str]]:
        return check_spec(desired.resource.spec)

    # --- observe ----------------------------------------------------------------------------------------------

    def selection(self) -> Selection:
        if self._selection is None:
            self._selection = choose(self.options.backend, self.netns, self._engine_firewall())
            # worth a line only when the project has lists; otherwise every plan would repeat it
            say = self.log.info if self._lists else self.log.debug
            say(
                "firewall.backend",
                backend=getattr(self._selection.backend, "name", None),
                reason=self._selection.reason,
                families=self._selection.families,
            )
        return self._selection

    def _engine_firewall(self) -> str | None:
        """The engine's firewall backend as it reports it (None: it did not say, or cannot be asked)."""
        if self.netns or resolve_mode(self.options.backend) != "auto":
            return None  # a test namespace has no engine of its own; a forced backend needs no answer
        try:
            return engine_firewall_driver(self.ctx.engine.info())
        except Exception as exc:  # the engine is only a hint here: detection by tables follows
            self.log.debug("firewall.engine_info_failed", error=str(exc))
            return None

    def _live_chainsets(self) -> dict[int, ChainSet | None]:
        main, jump = main_chain(self.project), jump_rule(self.project)
        return {f: live.chainset(main, jump) for f, live in self._live.items()}

    def observe(self, desired: Sequence[Desired]) -> Mapping[str, Observed]:
        """One Observed per list with a marker in the project's chains (both families). The ruleset is the
        project's as a whole, so every desired list is kept for this pass's diff, prune and apply."""
        self._lists = {d.name: d for d in desired}
        self._selection = None
        self._pruned = set()
        sel = self.selection()
        self._live = {}
        if sel.backend is None:
            return {}
        try:
            self._live = {f: sel.backend.read(f, self.project) for f in sel.families}
        except ReconcileError as exc:
            # Other kinds can still be planned; every list is blocked with the reason instead.
            self._selection = Selection(None, f"cannot read the firewall rules ({sel.backend.name}): {exc}")
            self.log.error("firewall.observe_failed", error=str(exc))
            return {}
        # only declared lists name interfaces; listing links costs a pyroute2 import on every plan otherwise
        self._interfaces = interface_names(self.netns) if self._lists else None
        chainsets = self._live_chainsets()
        found: dict[str, Observed] = {}
        for name in sorted(self._marked_names()):
            spec = read_list(chainsets, self.project, name)
            if spec is None:
                continue
            labels = {
                LABEL_PROJECT: self.project,
                LABEL_KIND: KIND,
                LABEL_NAME: name,
                LABEL_SPEC_HASH: spec["spec-hash"],
            }
            found[name] = Observed(KIND, name, main_chain(self.project), labels, spec, raw=chainsets)
        return found

    def _marked_names(self) -> set[str]:
        prefix = f"{COMMENT_PREFIX}{self.project}:"
        names = set()
        for live in self._live.values():
            for rule in live.chains.get(main_chain(self.project), ()):
                comment = rule.comment or ""
                if comment.startswith(prefix) and HASH_KEY in comment and not rule.target:
                    names.add(comment[len(prefix) :].split(" ", 1)[0])
        return names

    # --- the desired ruleset ----------------------------------------------------------------------------------

    def _allow_lists(self) -> list[AllowList]:
        """Every list to enforce: the declared ones, plus gone ones kept (not pruned) as read back."""
        lists = {name: AllowList.from_spec(name, d.spec, d.spec_hash) for name, d in self._lists.items()}
        chainsets = self._live_chainsets()
        for name in self._marked_names() - set(lists) - self._pruned:
            spec = read_list(chainsets, self.project, name)
            if spec is not None:
                lists[name] = AllowList.from_spec(name, spec, spec["spec-hash"])
        return [lists[n] for n in sorted(lists)]

    def _expected(self, families: Iterable[int]) -> dict[int, ChainSet | None]:
        lists = self._allow_lists()
        # A backend may store rules in a form of its own (nft merges source sets): compare in that form.
        canonical = getattr(self.selection().backend, "canonical", None)
        built = {f: build_chains(self.project, lists, f) for f in families}
        return {f: canonical(cs) for f, cs in built.items()} if canonical else built

    # --- diff -------------------------------------------------------------------------------------------------

    def _notes(self, desired: Desired, sel: Selection) -> list[str]:
        spec = desired.spec
        notes = []
        if not spec["sources"]:
            notes.append(f"allows no source: drops all {describe(spec)}")
        if self._interfaces is not None:
            missing = [i for i in spec["interfaces"] if i not in self._interfaces]
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

    def diff(self, desired: Desired, observed: Observed | None) -> Change:
        self._lists[desired.name] = desired
        sel = self.selection()
        notes = tuple(self._notes(desired, sel))
        create = Action.CREATE if observed is None else Action.UPDATE
        if sel.backend is None:
            return Change(
                KIND, desired.name, create, desired=desired, observed=observed, blocked=sel.reason, notes=notes
            )
        if observed is None:  # nothing of it is live: the plan spells out the rules it will write
            return Change(KIND, desired.name, Action.CREATE, desired=desired, notes=notes, steps=_create_steps(desired))
        fields = self._field_changes(desired.name, sel)
        action = Action.UPDATE if fields else Action.NONE
        return Change(KIND, desired.name, action, tuple(fields), desired, observed, notes=notes)

    def _field_changes(self, name: str, sel: Selection) -> list[FieldChange]:
        expected = self._expected(sel.families)
        live = self._live_chainsets()
        want = read_list(expected, self.project, name) or {}
        have = read_list(live, self.project, name) or {}
        fields = diff_specs(want, have, RULES)
        if fields:
            return fields
        # Same list, but the rules enforcing it may have been edited by hand.
        for family in sel.families:
            groups = expected[family].covered.get(name, ()) if expected[family] else ()
            want_lines = list_view(expected[family], name, self.project, groups)
            have_lines = list_view(live.get(family), name, self.project, groups)
            have_lines += _foreign_main_rules(live.get(family), expected[family])
            if want_lines != have_lines:
                missing = [line for line in want_lines if line not in have_lines]
                extra = [line for line in have_lines if line not in want_lines]
                note = "" if missing or extra else "rule order differs"
                fields.append(FieldChange(f"rules.ipv{family}", extra, missing, Action.UPDATE, note=note))
            jump = self._live.get(family)
            if jump is None or not jump.jump_on_top:
                fields.append(
                    FieldChange(
                        f"jump.ipv{family}",
                        _jump_text(jump),
                        "rule 1",
                        Action.UPDATE,
                        note=sel.backend.jump_note(family, self.project)
                        if hasattr(sel.backend, "jump_note")
                        else f"the jump from DOCKER-USER to {main_chain(self.project)} must be its first rule "
                        "(rules above it, such as Docker's -j RETURN, see traffic first)",
                    )
                )
        return fields

    def prune(self, observed: Observed) -> Change:
        self._lists.pop(observed.name, None)
        self._pruned.add(observed.name)
        sel = self.selection()
        return Change(
            KIND, observed.name, Action.DELETE, observed=observed, blocked=sel.reason if sel.backend is None else None
        )

    # --- apply ------------------------------------------------------------------------------------------------

    def apply(self, change: Change) -> None:
        """Rewrite the project's whole ruleset (every family) so it matches every desired list."""
        with self._lock:
            if change.action is Action.DELETE:
                self._lists.pop(change.name, None)
                self._pruned.add(change.name)
            elif change.desired is not None:
                self._lists[change.name] = change.desired
            sel = self.selection()
            if sel.backend is None:
                raise PermanentError(sel.reason)
            expected = self._expected(sel.families)
            for family in sel.families:
                want = expected[family]
                live = sel.backend.read(family, self.project)
                if _matches(live, want):
                    continue
                sel.backend.write(family, self.project, want)
                after = sel.backend.read(family, self.project)
                if not _matches(after, want):
                    raise TemporaryError(f"IPv{family} rules read back differ from what was written")
                self._live[family] = after
                self.log.info(
                    "firewall.applied",
                    family=family,
                    backend=sel.backend.name,
                    lists=len(self._lists),
                    trigger=f"{change.action.value} {change.name}",
                )


def _matches(live: LiveFamily, want: ChainSet | None) -> bool:
    if want is None:
        return not live.chains and live.jumps == 0
    return dict(live.chains) == dict(want.chains) and live.jump_on_top


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


def _create_steps(desired: Desired) -> tuple[str, ...]:
    spec = desired.spec
    sources = ", ".join(spec["sources"]) or "no source"
    return (f"{describe(spec)}: allow {sources}; drop every other source",)
