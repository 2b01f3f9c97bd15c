"""The nftables backend: the project's lists in a table of its own, for engines with Docker's nftables firewall
backend (which has no DOCKER-USER chain). Runs the `nft` binary: `nft -j list table` to read, one `nft -f`
transaction to replace the table as a whole."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import structlog

from reconciler.drivers.firewall.backend import LiveFamily
from reconciler.drivers.firewall.detect import legacy_docker_user
from reconciler.drivers.firewall.nft import BASE_CHAIN, PRIORITY_TEXT, canonical_chainset, nft_family, render_table
from reconciler.drivers.firewall.nft import table_name as nft_table_name
from reconciler.drivers.firewall.nft_parse import parse_table
from reconciler.drivers.firewall.restore import VARIANTS, RestoreBackend, netns_prefix, run
from reconciler.drivers.firewall.rules import ChainSet, main_chain
from reconciler.errors import PermanentError, ReconcileError, TemporaryError

log = structlog.get_logger()

NFT = "nft"
NAME = "nftables"
# What Docker's nftables firewall backend creates (docs: engine/network/firewall-nftables).
DOCKER_TABLE = ("ip", "docker-bridges")


def _missing_table(stderr: str) -> bool:
    return "No such file or directory" in stderr or "does not exist" in stderr


class NftBackend:
    """`nft -j list table` to read, `nft -f` (one transaction per family) to write.

    The project's rules live in one place: chains an iptables backend wrote for the project earlier (before the
    engine moved to nftables) are reported as drift and removed by the next write, since Docker leaves the
    FORWARD -> DOCKER-USER jump in place and those stale rules would go on dropping traffic.
    """

    name = NAME

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self._leftovers: dict[int, list[RestoreBackend]] = {}

    def _iptables_leftovers(self, family: int, project: str) -> list[RestoreBackend]:
        """The iptables backends (nf_tables, legacy) still holding chains or a jump of the project."""
        found = []
        for variant in VARIANTS:
            # legacy: only where a legacy DOCKER-USER exists, so that looking never loads a legacy table
            if variant == "legacy" and not legacy_docker_user(family, self.netns):
                continue
            backend = RestoreBackend(variant, self.netns)
            try:
                live = backend.read(family, project)
            except ReconcileError:  # no such tool, or no table: nothing left there
                continue
            # without DOCKER-USER nothing can reach them (and iptables-restore would refuse to touch them)
            if live.docker_user and (live.chains or live.jumps):
                found.append(backend)
        return found

    def _nft(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return run([*netns_prefix(self.netns), NFT, *args], stdin=stdin)

    def read(self, family: int, project: str) -> LiveFamily:
        table = nft_table_name(project)
        proc = self._nft("-j", "list", "table", nft_family(family), table)
        if proc.returncode != 0:
            if _missing_table(proc.stderr):
                return self._with_leftovers(LiveFamily(family, True), project)
            raise TemporaryError(f"nft list table {nft_family(family)} {table} failed: {proc.stderr.strip()}")
        try:
            data = json.loads(proc.stdout)
        except ValueError as exc:
            raise TemporaryError(f"nft -j printed no JSON: {exc}") from None
        live = parse_table(data, family, project)
        return self._with_leftovers(live, project)

    def _with_leftovers(self, live: LiveFamily, project: str) -> LiveFamily:
        """`live`, made to differ from any desired state while old iptables rules of the project remain."""
        leftovers = self._leftovers[live.family] = self._iptables_leftovers(live.family, project)
        if not leftovers:
            return live
        chains = live.chains or {main_chain(project): ()}
        return replace(live, chains=chains, foreign_above=live.foreign_above + 1)

    def write(self, family: int, project: str, want: ChainSet | None) -> None:
        try:
            script = render_table(family, project, want)
        except ValueError as exc:
            raise PermanentError(str(exc)) from None
        proc = self._nft("-f", "-", stdin=script)
        if proc.returncode != 0:
            # nft -f is one transaction: rejected whole, the previous table is still in force.
            log.error("firewall.nft_failed", family=family, stderr=proc.stderr.strip(), script=script)
            raise TemporaryError(f"nft rejected the new table (old rules kept): {proc.stderr.strip()}")
        log.info("firewall.written", backend=self.name, family=family, chains=len(want.chains) if want else 0)
        for old in self._iptables_leftovers(family, project):
            # after the new table is in force, so that no moment is without the project's rules
            old.write(family, project, None)
            log.info("firewall.iptables_retired", backend=old.name, family=family, chain=main_chain(project))

    def canonical(self, want: ChainSet | None) -> ChainSet | None:
        """`want` as this backend reads it back (source sets merged the way nft keeps intervals)."""
        return canonical_chainset(want)

    def jump_note(self, family: int, project: str) -> str:
        """What the plan says when the base chain or its jump is not as written."""
        leftovers = self._leftovers.get(family)
        if leftovers:
            where = " and ".join(b.name for b in leftovers)
            return (
                f"iptables chain {main_chain(project)} of this project is still in {where}, from before the engine "
                "used nftables; it would go on filtering through DOCKER-USER, so apply removes it"
            )
        return (
            f"chain {BASE_CHAIN} of table {nft_family(family)} {nft_table_name(project)} must be a filter chain on "
            f"the forward hook at priority {PRIORITY_TEXT}, policy accept, holding only the jump to "
            f"{main_chain(project)}"
        )


def nft_missing(netns: str | None = None) -> str | None:
    """None when the nft binary can run, else why not."""
    if shutil.which(NFT) is None:
        return "the nft binary is not installed (Debian/Ubuntu package nftables)"
    return None


def docker_tables_present(netns: str | None = None) -> bool:
    """Whether Docker's nftables firewall backend left its table here (`ip docker-bridges`)."""
    if nft_missing(netns):
        return False
    try:
        proc = run([*netns_prefix(netns), NFT, "-j", "list", "tables"])
    except Exception:  # detection is advisory: any failure means "not seen"
        return False
    if proc.returncode != 0:
        return False
    try:
        items = json.loads(proc.stdout).get("nftables") or []
    except ValueError:
        return False
    return any((t.get("table", {}).get("family"), t.get("table", {}).get("name")) == DOCKER_TABLE for t in items)


def engine_firewall_driver(info: Mapping[str, Any] | None) -> str | None:
    """The engine's firewall backend from `GET /info` (`FirewallBackend.Driver`, API 1.49 and later):
    `iptables`, `nftables`, `iptables+firewalld`...; None when the engine does not say (older engines)."""
    if not isinstance(info, Mapping):
        return None
    backend = info.get("FirewallBackend")
    if not isinstance(backend, Mapping):
        return None
    driver = backend.get("Driver")
    return str(driver) if driver else None
