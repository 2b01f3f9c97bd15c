"""The loss report: every Compose key the import did not carry over, and everything it carried over that needs a
second look (an opt-in it had to set, a value it copied that may be secret)."""

from __future__ import annotations

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
