"""The loss report: every Compose key the import did not carry over, and everything it carried over that needs a
second look (an opt-in it had to set, a value it copied that may be secret)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

from reconciler.compose.source import Loc


class Severity(Enum):
    GRANT = "grant"  # mapped with an opt-in (allowPrivileged, allowSensitive, allowExternalContext) to review
    NOT_MAPPED = "not mapped"
    FLAGGED = "flagged"  # mapped, with a caveat the user must know about
    SECRET = "secret"  # mapped into the git-ignored secret env file, not into a manifest


@dataclass(frozen=True, order=True)
class Loss:
    """One report line: `file:line: key: not mapped: why`."""

    file: str
    line: int
    key: str
    why: str
    severity: Severity = field(default=Severity.NOT_MAPPED, compare=False)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.key}: {self.severity.value}: {self.why}"


class LossReport:
    """Collects losses while mapping; an entry is recorded once however often the same key is met."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, int, str, str], Loss] = {}

    def lost(self, loc: Loc, key: str, why: str) -> None:
        self._add(Loss(loc.file, loc.line, key, why, Severity.NOT_MAPPED))

    def flag(self, loc: Loc, key: str, why: str) -> None:
        self._add(Loss(loc.file, loc.line, key, why, Severity.FLAGGED))

    def secret(self, loc: Loc, key: str, why: str) -> None:
        self._add(Loss(loc.file, loc.line, key, why, Severity.SECRET))

    def grant(self, loc: Loc, key: str, why: str) -> None:
        self._add(Loss(loc.file, loc.line, key, why, Severity.GRANT))

    def _add(self, loss: Loss) -> None:
        self._entries.setdefault((loss.file, loss.line, loss.key, loss.why), loss)

    @property
    def entries(self) -> list[Loss]:
        return sorted(self._entries.values(), key=lambda e: (e.file, e.line, e.key, e.why))

    @property
    def anything_lost(self) -> bool:
        return any(e.severity is Severity.NOT_MAPPED for e in self._entries.values())

    @property
    def grants(self) -> list[Loss]:
        return [e for e in self.entries if e.severity is Severity.GRANT]


_HEADINGS = {
    Severity.GRANT: "Grants to review (opt-ins the Compose file asks for; each gives a container part of the host)",
    Severity.NOT_MAPPED: "Not mapped (set in the Compose file, not carried over)",
    Severity.SECRET: "Secret values kept out of the manifests",
    Severity.FLAGGED: "Flagged (carried over or left out as Compose does, with a caveat)",
}
_INDEX = re.compile(r"\[\d+\]|:[^.]*$")


def group_of(key: str) -> str:
    """The key a report line is grouped under: the service key without service name, index or entry name
    (`services.web.volumes[2]:z` -> `services.*.volumes`), or a top-level section (`networks.*`)."""
    parts = key.split(".")
    if parts[0] == "services" and len(parts) >= 3:
        return "services.*." + _INDEX.sub("", parts[2])
    if parts[0] == "services":
        return "services.*"
    return f"{parts[0]}.*" if len(parts) > 1 else key


def render(entries: Sequence[Loss], verbose: bool = False) -> list[str]:
    """The report as lines: grants first, every one of them; then losses, secrets and flags, each grouped by key
    with a count and one example (`verbose`: every line)."""
    lines: list[str] = []
    for severity in _HEADINGS:
        items = [e for e in entries if e.severity is severity]
        if not items:
            continue
        if verbose or severity is Severity.GRANT:
            lines.append(f"{_HEADINGS[severity]}: {len(items)}")
            lines.extend(f"  {e}" for e in items)
            continue
        groups: dict[str, list[Loss]] = {}
        for e in items:
            groups.setdefault(group_of(e.key), []).append(e)
        lines.append(f"{_HEADINGS[severity]}: {len(items)} (by key; --verbose lists every line)")
        for group, members in groups.items():
            lines.append(f"  {group} ({len(members)}), e.g. {members[0]}")
    return lines
