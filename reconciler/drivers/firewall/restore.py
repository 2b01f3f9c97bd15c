"""The iptables-save / iptables-restore backend: the one that works on nf_tables hosts (iptables-nft), and also
on legacy ones. Every change is one `iptables-restore --noflush` transaction per table, taken with `-w`."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

import structlog

from reconciler.drivers.firewall.backend import LiveFamily, parse_save, restore_script
from reconciler.drivers.firewall.rules import ChainSet, jump_rule, main_chain
from reconciler.errors import PermanentError, TemporaryError

log = structlog.get_logger()

TIMEOUT = 30.0
LOCK_WAIT_SECONDS = "5"
VARIANTS = ("nft", "legacy")


def tool(variant: str, family: int, action: str) -> str:
    """`iptables-nft-save`, `ip6tables-legacy-restore`, ... for a variant, family and action (`save`/`restore`/``)."""
    base = "iptables" if family == 4 else "ip6tables"
    suffix = f"-{action}" if action else ""
    return f"{base}-{variant}{suffix}"


def netns_prefix(netns: str | None) -> list[str]:
    """Run a command inside the named network namespace (tests), or on the host (None)."""
    return ["ip", "netns", "exec", netns] if netns else []


def run(argv: Sequence[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a firewall command; a missing tool is permanent, a timeout temporary."""
    try:
        return subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    except FileNotFoundError as exc:
        raise PermanentError(f"{argv[0]} not found: {exc}") from None
    except subprocess.TimeoutExpired:
        raise TemporaryError(f"{' '.join(argv)} timed out after {TIMEOUT:.0f}s") from None


class RestoreBackend:
    """iptables-save to read, iptables-restore --noflush to write, for one variant (`nft` or `legacy`)."""

    def __init__(self, variant: str = "nft", netns: str | None = None) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"unknown iptables variant {variant!r}")
        self.variant = variant
        self.netns = netns
        self.name = f"restore ({'nf_tables' if variant == 'nft' else 'legacy'})"

    def save(self, family: int) -> str:
        argv = [*netns_prefix(self.netns), tool(self.variant, family, "save"), "-t", "filter"]
        proc = run(argv)
        if proc.returncode != 0:
            # iptables-nft-save -t filter fails when the table does not exist: that is "no rules", not an error.
            if "does not exist" in proc.stderr or "Table does not exist" in proc.stderr:
                return ""
            raise TemporaryError(f"{argv[-3]} failed: {proc.stderr.strip()}")
        return proc.stdout

    def read(self, family: int, project: str) -> LiveFamily:
        parsed = parse_save(self.save(family), main_chain(project), jump_rule(project))
        if parsed is None:
            return LiveFamily(family, False)
        return LiveFamily(
            family, parsed.docker_user, parsed.jumps, parsed.jump_index, parsed.chains, parsed.foreign_above
        )

    def write(self, family: int, project: str, want: ChainSet | None) -> None:
        jump = jump_rule(project)
        live = self.read(family, project)
        if not live.docker_user:
            raise PermanentError(f"no DOCKER-USER chain in the IPv{family} filter table ({self.name})")
        script = restore_script(live, want, jump)
        argv = [*netns_prefix(self.netns), tool(self.variant, family, "restore"), "-w", LOCK_WAIT_SECONDS, "--noflush"]
        proc = run(argv, stdin=script)
        if proc.returncode != 0:
            # The whole transaction was rejected: the previous rules are still in force.
            log.error("firewall.restore_failed", family=family, stderr=proc.stderr.strip(), script=script)
            raise TemporaryError(f"{argv[-4]} rejected the new rules (old rules kept): {proc.stderr.strip()}")
        log.info("firewall.written", backend=self.name, family=family, chains=len(want.chains) if want else 0)
