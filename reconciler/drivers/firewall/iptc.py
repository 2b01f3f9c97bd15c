"""The python-iptables (libiptc) backend: legacy iptables only.

libiptc sees only the legacy tables (on an iptables-nft host it finds none of Docker's chains), takes no
xtables lock of its own, and a commit replaces the whole table: so every read-modify-commit here holds the
standard lock (`flock` on /run/xtables.lock, what `iptables -w` takes) and all changes of a family go into one
commit, which the kernel swaps in atomically.

python-iptables caches tables per process, so a namespace (tests) is served by a child process started with
`ip netns exec NS python -m reconciler.drivers.firewall.iptc` that speaks JSON on stdin/stdout.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

from reconciler.drivers.firewall.backend import LiveFamily
from reconciler.drivers.firewall.restore import netns_prefix, run
from reconciler.drivers.firewall.rules import (
    DOCKER_USER,
    ChainSet,
    Rule,
    canonical_network,
    is_reconcile_jump,
    jump_rule,
    main_chain,
    parse_args,
)
from reconciler.errors import PermanentError, TemporaryError

LOCK_TIMEOUT = 10.0
_thread_lock = threading.Lock()  # libiptc handles are not thread-safe, and the flock is per process


def lock_path() -> str:
    return os.environ.get("XTABLES_LOCKFILE", "/run/xtables.lock")


@contextlib.contextmanager
def xtables_lock(timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """Hold the xtables lock (the one `iptables -w` waits for) for a read-modify-commit."""
    with _thread_lock:
        fd = os.open(lock_path(), os.O_CREAT | os.O_RDWR, 0o600)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise TemporaryError(f"xtables lock {lock_path()} held for more than {timeout:.0f}s") from None
                    time.sleep(0.05)
            yield
        finally:
            os.close(fd)  # closing releases the flock


def _iptc() -> Any:
    try:
        import iptc
    except Exception as exc:  # the module raises XTablesError/OSError when libxtables cannot be loaded
        raise PermanentError(f"python-iptables cannot be loaded: {exc}") from None
    return iptc


def _table(family: int) -> Any:
    iptc = _iptc()
    table = iptc.Table(iptc.Table.FILTER) if family == 4 else iptc.Table6(iptc.Table6.FILTER)
    table.autocommit = False
    table.refresh()
    return table


# --- Rule <-> python-iptables ---------------------------------------------------------------------------------


def to_iptc_dict(rule: Rule) -> dict[str, Any]:
    """A Rule as python-iptables' `easy` dictionary (insertion order is the match order)."""
    if rule.extra:
        raise PermanentError(f"internal error: cannot write foreign options {rule.extra}")
    d: dict[str, Any] = {}
    if rule.src:
        d["src"] = rule.src
    if rule.iface:
        d["in-interface"] = rule.iface
    if rule.proto:
        d["protocol"] = rule.proto
    if rule.src_range:
        d["iprange"] = {"src-range": rule.src_range}
    ct: dict[str, str] = {}
    for key in ("ctstate", "ctorigdst", "ctorigdstport", "ctdir"):
        value = getattr(rule, key)
        if value:
            ct[key] = str(value)
    if ct:
        d["conntrack"] = ct
    if rule.comment:
        d["comment"] = {"comment": rule.comment}
    if rule.target:
        d["target"] = {"goto": rule.target} if rule.goto else rule.target
    return d


def from_iptc_dict(d: Mapping[str, Any]) -> Rule:
    """A Rule from python-iptables' decoded dictionary; anything reconcile never writes goes to `extra`."""
    values: dict[str, Any] = {}
    extra: list[str] = []
    for key, value in d.items():
        if key == "counters":
            continue
        if key == "src":
            values["src"] = canonical_network(value)
        elif key == "in-interface":
            values["iface"] = value
        elif key == "protocol":
            values["proto"] = value
        elif key == "iprange" and set(value) == {"src-range"}:
            values["src_range"] = value["src-range"]
        elif key == "conntrack" and set(value) <= {"ctstate", "ctorigdst", "ctorigdstport", "ctdir"}:
            for ck, cv in value.items():
                if ck == "ctorigdst":
                    values[ck] = canonical_network(cv)
                elif ck == "ctorigdstport":
                    values[ck] = int(cv) if str(cv).isdigit() else cv
                else:
                    values[ck] = cv
        elif key == "comment" and set(value) == {"comment"}:
            values["comment"] = value["comment"]
        elif key == "target":
            if isinstance(value, Mapping) and set(value) == {"goto"}:
                values["target"], values["goto"] = value["goto"], True
            elif isinstance(value, str):
                values["target"] = value or None
            else:
                extra.append(f"target={value!r}")
        else:
            extra.append(f"{key}={value!r}")
    return Rule(**values, extra=tuple(extra))


def _rule(iptc: Any, rule: Rule, family: int) -> Any:
    return iptc.easy.encode_iptc_rule(to_iptc_dict(rule), ipv6=family == 6)


def _decode(iptc: Any, rule: Any, family: int) -> Rule:
    return from_iptc_dict(iptc.easy.decode_iptc_rule(rule, ipv6=family == 6))


# --- in-process operations ------------------------------------------------------------------------------------


def _has_filter_table(family: int) -> bool:
    # Reading /proc avoids loading the legacy filter table as a side effect of looking.
    names = "/proc/net/ip_tables_names" if family == 4 else "/proc/net/ip6_tables_names"
    try:
        with open(names) as fh:
            return "filter" in fh.read().split()
    except OSError:
        return False


def read_local(family: int, project: str) -> LiveFamily:
    if not _has_filter_table(family):
        return LiveFamily(family, False)
    iptc = _iptc()
    main, jump = main_chain(project), jump_rule(project)
    with xtables_lock():
        table = _table(family)
        names = [c.name for c in table.chains]
        if DOCKER_USER not in names:
            return LiveFamily(family, False)
        jumps, jump_index, above = 0, 0, 0
        for index, rule in enumerate(iptc.Chain(table, DOCKER_USER).rules, start=1):
            decoded = _decode(iptc, rule, family)
            if decoded == jump:
                jumps += 1
                jump_index = jump_index or index
            elif not jump_index and not is_reconcile_jump(decoded):
                above += 1
        chains = {
            name: tuple(_decode(iptc, r, family) for r in iptc.Chain(table, name).rules)
            for name in names
            if name.startswith(main)
        }
    return LiveFamily(family, True, jumps, jump_index, chains, above if jump_index else 0)


def write_local(family: int, project: str, want: ChainSet | None) -> None:
    if not _has_filter_table(family):
        raise PermanentError(f"no legacy IPv{family} filter table (python-iptables works on legacy iptables only)")
    iptc = _iptc()
    main, jump = main_chain(project), jump_rule(project)
    with xtables_lock():
        table = _table(family)
        try:
            names = {c.name for c in table.chains}
            if DOCKER_USER not in names:
                raise PermanentError(f"no DOCKER-USER chain in the legacy IPv{family} filter table")
            du = iptc.Chain(table, DOCKER_USER)
            ours: list[Any] = []
            above = 0
            for rule in du.rules:
                decoded = _decode(iptc, rule, family)
                if decoded == jump:
                    ours.append(rule)
                elif not ours and not is_reconcile_jump(decoded):
                    above += 1
            # Kept only when alone and at the top; otherwise every copy goes and one is inserted at position 1,
            # all in this commit (a jump below Docker's `-j RETURN` would leave our rules never run).
            keep = want is not None and len(ours) == 1 and above == 0
            for rule in [] if keep else ours:
                du.delete_rule(rule)
            wanted = dict(want.chains) if want is not None else {}
            existing = sorted(n for n in names if n.startswith(main))
            for name in existing:
                iptc.Chain(table, name).flush()
            # Every chain must exist before a rule may jump to it, even inside one uncommitted handle.
            chains = {n: iptc.Chain(table, n) if n in existing else table.create_chain(n) for n in wanted}
            for name, rules in wanted.items():
                for rule in rules:
                    chains[name].append_rule(_rule(iptc, rule, family))
            if want is not None and not keep:
                du.insert_rule(_rule(iptc, jump, family), position=0)
            for name in existing:
                if name not in wanted:
                    table.delete_chain(name)
            table.commit()  # one atomic swap of the whole table
        except iptc.IPTCError as exc:
            raise TemporaryError(f"libiptc rejected the new rules (old rules kept): {exc}") from None
        finally:
            table.refresh()  # drop whatever was not committed
            table.autocommit = True


# --- the backend ----------------------------------------------------------------------------------------------


class IptcBackend:
    """python-iptables on the legacy tables, in this process or (tests) in a child inside a namespace."""

    name = "iptc (legacy)"

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns

    def _child(self, request: dict[str, Any]) -> Any:
        argv = [*netns_prefix(self.netns), sys.executable, "-m", "reconciler.drivers.firewall.iptc"]
        proc = run(argv, stdin=json.dumps(request))
        try:
            reply = json.loads(proc.stdout or "{}")
        except ValueError:
            reply = {}
        if proc.returncode != 0 or "error" in reply:
            message = reply.get("error") or proc.stderr.strip()
            cls = TemporaryError if reply.get("retryable", True) else PermanentError
            raise cls(f"iptc backend in netns {self.netns}: {message}")
        return reply.get("result")

    def read(self, family: int, project: str) -> LiveFamily:
        if self.netns is None:
            return read_local(family, project)
        return LiveFamily.from_json(self._child({"op": "read", "family": family, "project": project}))

    def write(self, family: int, project: str, want: ChainSet | None) -> None:
        if self.netns is None:
            write_local(family, project, want)
            return
        chains = None if want is None else {n: [r.args() for r in rules] for n, rules in want.chains.items()}
        self._child({"op": "write", "family": family, "project": project, "chains": chains})


def _serve(request: Mapping[str, Any]) -> Any:
    family, project = int(request["family"]), str(request["project"])
    if request["op"] == "read":
        return read_local(family, project).to_json()
    if request["op"] == "write":
        chains = request.get("chains")
        want = None
        if chains is not None:
            parsed = {n: tuple(parse_args(a) for a in rules) for n, rules in chains.items()}
            want = ChainSet(main_chain(project), jump_rule(project), parsed)
        write_local(family, project, want)
        return None
    raise PermanentError(f"unknown op {request['op']!r}")


def main() -> int:
    """Child-process entry: one JSON request on stdin, one JSON reply on stdout."""
    try:
        result = _serve(json.loads(sys.stdin.read()))
    except (PermanentError, TemporaryError) as exc:
        print(json.dumps({"error": str(exc), "retryable": exc.retryable}))
        return 1
    print(json.dumps({"result": result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
