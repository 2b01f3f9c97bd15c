"""Which backend to use (nftables when the engine uses Docker's nftables firewall backend, else the one whose
tables hold Docker's DOCKER-USER chain), and which interfaces exist.

Read-only: legacy tables are looked up in /proc first so that looking never loads a legacy table.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from reconciler.drivers.firewall.backend import FAMILIES, Backend
from reconciler.drivers.firewall.restore import RestoreBackend, netns_prefix, run, tool
from reconciler.errors import PermanentError, ReconcileError

MODES = ("auto", "iptc", "restore", "nftables")
ENV_BACKEND = "RECONCILER_FIREWALL_BACKEND"

NO_DOCKER_USER = (
    "no DOCKER-USER chain in the iptables filter table (neither nf_tables nor legacy): the engine is not "
    "running, runs with --iptables=false, or uses Docker's nftables firewall backend (then use "
    "--firewall-backend nftables); nothing can be enforced"
)


@dataclass(frozen=True)
class Selection:
    """The chosen backend (None: nothing can be enforced, `reason` says why) and the families it serves."""

    backend: Backend | None
    reason: str
    families: tuple[int, ...] = ()


def resolve_mode(option: str | None) -> str:
    """The backend mode from the option, else the environment, else auto."""
    mode = (option or os.environ.get(ENV_BACKEND) or "auto").strip().lower()
    if mode not in MODES:
        raise PermanentError(f"unknown firewall backend {mode!r}: use one of {', '.join(MODES)}")
    return mode


def _has_docker_user(save_output: str) -> bool:
    in_filter = False
    for line in save_output.splitlines():
        if line.startswith("*"):
            in_filter = line.strip() == "*filter"
        elif in_filter and line.startswith(":DOCKER-USER "):
            return True
    return False


def nft_docker_user(family: int, netns: str | None = None) -> bool:
    """Whether the nf_tables (iptables-nft) filter table of `family` has a DOCKER-USER chain."""
    try:
        return _has_docker_user(RestoreBackend("nft", netns).save(family))
    except ReconcileError:
        return False


def legacy_docker_user(family: int, netns: str | None = None) -> bool:
    """Whether the legacy filter table of `family` has a DOCKER-USER chain (never creates the table)."""
    names = "/proc/net/ip_tables_names" if family == 4 else "/proc/net/ip6_tables_names"
    try:
        proc = run([*netns_prefix(netns), "cat", names])
    except ReconcileError:
        return False
    if "filter" not in proc.stdout.split():
        return False
    try:
        proc = run([*netns_prefix(netns), tool("legacy", family, "save"), "-t", "filter"])
    except ReconcileError:
        return False
    return proc.returncode == 0 and _has_docker_user(proc.stdout)


def iptc_usable() -> str | None:
    """None when python-iptables loads, else why not."""
    try:
        import iptc  # noqa: F401 - the import itself is the check
    except Exception as exc:  # XTablesError, OSError when libxtables is missing
        return f"python-iptables cannot be loaded: {exc}"
    return None


def _nftables(reason: str, netns: str | None) -> Selection:
    from reconciler.drivers.firewall.nft_backend import NftBackend, nft_missing

    problem = nft_missing(netns)
    if problem:
        return Selection(None, f"{reason}, but {problem}")
    # Both families always: the table costs nothing where nothing is DNATed, and the rules bite when it is.
    return Selection(NftBackend(netns), reason, FAMILIES)


def choose(option: str | None, netns: str | None = None, engine_firewall: str | None = None) -> Selection:
    """The backend for `option` (auto | iptc | restore | nftables); `netns` runs everything in that namespace
    (tests); `engine_firewall` is the engine's own word (`FirewallBackend.Driver` of `GET /info`), if it said."""
    from reconciler.drivers.firewall.iptc import IptcBackend
    from reconciler.drivers.firewall.nft_backend import docker_tables_present

    mode = resolve_mode(option)
    if mode == "nftables":
        return _nftables("forced nftables", netns)
    if mode == "auto" and engine_firewall == "nftables":
        return _nftables("auto: the engine reports the nftables firewall backend", netns)
    # An engine that did not say (not reachable, or older than API 1.49): Docker's own nftables table is the next
    # best sign. It goes before DOCKER-USER, which an earlier iptables run of the engine leaves behind.
    if mode == "auto" and engine_firewall is None and docker_tables_present(netns):
        return _nftables("auto: Docker's nftables table ip docker-bridges exists", netns)
    nft = tuple(f for f in FAMILIES if nft_docker_user(f, netns))
    legacy = tuple(f for f in FAMILIES if legacy_docker_user(f, netns))
    if mode == "iptc":
        if 4 not in legacy:
            where = " (Docker's DOCKER-USER is in nf_tables: use --firewall-backend restore)" if nft else ""
            return Selection(
                None, f"python-iptables works on legacy iptables only, and there is no legacy DOCKER-USER chain{where}"
            )
        problem = iptc_usable()
        if problem:
            return Selection(None, problem)
        return Selection(IptcBackend(netns), "forced iptc", legacy)
    if 4 in nft:
        return Selection(RestoreBackend("nft", netns), f"{mode}: DOCKER-USER is in nf_tables", nft)
    if 4 in legacy:
        if mode == "auto" and iptc_usable() is None:
            return Selection(IptcBackend(netns), "auto: DOCKER-USER is in legacy iptables", legacy)
        return Selection(RestoreBackend("legacy", netns), f"{mode}: DOCKER-USER is in legacy iptables", legacy)
    return Selection(None, NO_DOCKER_USER)


def interface_names(netns: str | None = None) -> set[str] | None:
    """Names of the network interfaces that exist (None when they cannot be listed)."""
    try:
        from pyroute2 import IPRoute

        with IPRoute(netns=netns) if netns else IPRoute() as ipr:
            return {link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
    except Exception:  # a listing failure must not stop a plan: the check is advisory
        return None
