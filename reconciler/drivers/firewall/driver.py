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
from reconciler.drivers.firewall.apply import enforce
from reconciler.drivers.firewall.backend import LiveFamily
from reconciler.drivers.firewall.detect import Selection, choose, interface_names, resolve_mode
from reconciler.drivers.firewall.diff import create_steps, list_changes, list_notes
from reconciler.drivers.firewall.nft_backend import engine_firewall_driver
from reconciler.drivers.firewall.observe import read_list
from reconciler.drivers.firewall.rules import (
    COMMENT_PREFIX,
    HASH_KEY,
    AllowList,
    ChainSet,
    build_chains,
    jump_rule,
    main_chain,
)
from reconciler.drivers.firewall.spec import check_spec, normalize_spec
from reconciler.errors import PermanentError, ReconcileError
from reconciler.model import (
    LABEL_KIND,
    LABEL_NAME,
    LABEL_PROJECT,
    LABEL_SPEC_HASH,
    Action,
    Change,
    Desired,
    Observed,
    Resource,
)
from reconciler.spechash import spec_hash

KIND = "FirewallAllowList"


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

    def diff(self, desired: Desired, observed: Observed | None) -> Change:
        self._lists[desired.name] = desired
        sel = self.selection()
        notes = tuple(list_notes(desired, self._interfaces, sel))
        create = Action.CREATE if observed is None else Action.UPDATE
        if sel.backend is None:
            return Change(
                KIND, desired.name, create, desired=desired, observed=observed, blocked=sel.reason, notes=notes
            )
        if observed is None:  # nothing of it is live: the plan spells out the rules it will write
            return Change(KIND, desired.name, Action.CREATE, desired=desired, notes=notes, steps=create_steps(desired))
        fields = list_changes(
            self.project, desired.name, sel, self._expected(sel.families), self._live_chainsets(), self._live
        )
        action = Action.UPDATE if fields else Action.NONE
        return Change(KIND, desired.name, action, tuple(fields), desired, observed, notes=notes)

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
                after = enforce(sel.backend, family, self.project, expected[family])
                if after is None:  # already as wanted
                    continue
                self._live[family] = after
                self.log.info(
                    "firewall.applied",
                    family=family,
                    backend=sel.backend.name,
                    lists=len(self._lists),
                    trigger=f"{change.action.value} {change.name}",
                )
