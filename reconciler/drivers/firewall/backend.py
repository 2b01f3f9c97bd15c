"""What both backends share: the live state of one family's filter table as reconcile sees it, the Backend
protocol, and the pure translation between that state and iptables-save / iptables-restore text."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from reconciler.drivers.firewall.rules import DOCKER_USER, ChainSet, Rule, is_reconcile_jump, parse_args, quote

FAMILIES = (4, 6)


@dataclass(frozen=True)
class LiveFamily:
    """The part of one family's filter table reconcile cares about.

    `chains` holds the project's chains (name starts with the main chain's name), in table order;
    `jumps` counts DOCKER-USER rules equal to the project's jump; `jump_index` is the 1-based position of the
    first of them (0 when absent); `foreign_above` counts the DOCKER-USER rules above that first jump which are
    not another reconcile project's jump (any of them means our rules may never run, e.g. Docker's `-j RETURN`).
    """

    family: int
    docker_user: bool
    jumps: int = 0
    jump_index: int = 0
    chains: Mapping[str, tuple[Rule, ...]] = field(default_factory=dict)
    foreign_above: int = 0

    @property
    def jump_on_top(self) -> bool:
        """Exactly one jump, with no rule but other projects' jumps above it."""
        return self.jumps == 1 and self.foreign_above == 0

    def chainset(self, main: str, jump: Rule) -> ChainSet | None:
        if not self.chains:
            return None
        ordered = {main: self.chains.get(main, ())} if main in self.chains else {}
        ordered.update({k: v for k, v in self.chains.items() if k != main})
        return ChainSet(main, jump, ordered)

    def to_json(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "docker_user": self.docker_user,
            "jumps": self.jumps,
            "jump_index": self.jump_index,
            "chains": {name: [r.args() for r in rules] for name, rules in self.chains.items()},
            "foreign_above": self.foreign_above,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LiveFamily:
        chains = {name: tuple(parse_args(a) for a in rules) for name, rules in data["chains"].items()}
        return cls(
            data["family"], data["docker_user"], data["jumps"], data["jump_index"], chains, data["foreign_above"]
        )


class Backend(Protocol):
    """Reads and atomically rewrites the project's chains in one family's filter table.

    A backend may also have `canonical(want) -> want` (the form in which it reads rules back, when that differs
    from the built one) and `jump_note(family, project) -> str` (the plan's note for a jump that is not in place).
    """

    name: str

    def read(self, family: int, project: str) -> LiveFamily:
        """The live state of the project's rules (no side effects)."""
        ...

    def write(self, family: int, project: str, want: ChainSet | None) -> None:
        """Replace the project's chains and jump with `want` (None: remove them all) in one transaction."""
        ...


def parse_save(text: str, main: str, jump: Rule) -> LiveFamily | None:
    """The filter table of `iptables-save` output as a LiveFamily (family left 0); None without a filter table."""
    in_filter = False
    seen_filter = False
    docker_user = False
    chains: dict[str, list[Rule]] = {}
    du_index = 0
    jumps = 0
    jump_index = 0
    foreign_above = 0
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("*"):
            in_filter = line == "*filter"
            seen_filter = seen_filter or in_filter
            continue
        if not in_filter or not line or line.startswith("#"):
            continue
        if line.startswith(":"):
            name = line[1:].split()[0]
            if name == DOCKER_USER:
                docker_user = True
            elif name.startswith(main):
                chains.setdefault(name, [])
            continue
        if not line.startswith("-A "):
            continue
        tokens = shlex.split(line)
        chain = tokens[1]
        if chain == DOCKER_USER:
            du_index += 1
            rule = parse_args(tokens[2:])
            if rule == jump:
                jumps += 1
                jump_index = jump_index or du_index
            elif not jump_index and not is_reconcile_jump(rule):
                foreign_above += 1
        elif chain.startswith(main):
            chains.setdefault(chain, []).append(parse_args(tokens[2:]))
    if not seen_filter:
        return None
    if not jump_index:
        foreign_above = 0
    return LiveFamily(0, docker_user, jumps, jump_index, {k: tuple(v) for k, v in chains.items()}, foreign_above)


def restore_script(live: LiveFamily, want: ChainSet | None, jump: Rule) -> str:
    """iptables-restore --noflush input that turns `live` into `want` in one transaction.

    A `:CHAIN - [0:0]` line empties a chain inside the transaction; DOCKER-USER is never declared (that
    would flush other people's rules): only our jump is inserted or deleted in it. A jump that is not alone or
    not at the top is moved: every copy deleted and one inserted at position 1, in the same transaction, so
    there is no moment without it (`-D` removes the first match, which may be the one at the top).
    """
    wanted = dict(want.chains) if want is not None else {}
    obsolete = [name for name in live.chains if name not in wanted]
    keep = want is not None and live.jump_on_top
    lines = ["*filter"]
    lines += [f":{name} - [0:0]" for name in [*wanted, *obsolete]]
    lines += [jump.text(DOCKER_USER, "-D")] * (0 if keep else live.jumps)
    for name, rules in wanted.items():
        lines += [rule.text(name) for rule in rules]
    if want is not None and not keep:
        lines.append(" ".join(quote(t) for t in ["-I", DOCKER_USER, "1", *jump.args()]))
    # Every obsolete chain was emptied above and the jump deleted, so nothing references them any more.
    lines += [f"-X {name}" for name in sorted(obsolete)]
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"
