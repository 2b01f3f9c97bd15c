"""One error hierarchy: every expected failure is a ReconcileError and says whether a retry may help."""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.model import ErrorClass


class ReconcileError(Exception):
    """Base of every expected failure; the CLI prints its message without a traceback."""

    retryable: bool = False
    # A later round of the same `apply` may observe and plan this again (core/project.py): only a fault of the
    # engine or of the connection to it, after which a fresh plan shows whether the work was done. An outcome (a
    # rollout that did not converge, a replace rolled back, a container that stopped in its settle window) is
    # not, even when temporary: a re-plan can find the spec applied and call it done while it did not work.
    replannable: bool = False
    delay: float | None = None  # seconds a retry should wait, when the failure knows
    # the last lines a failing process printed (a container that crashed at start), secret values masked
    log_tail: tuple[str, ...] = ()


class TemporaryError(ReconcileError):
    """A failure that may go away by itself (engine busy, registry down): retry with backoff."""

    retryable = True

    def __init__(self, message: str, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class PermanentError(ReconcileError):
    """A failure that repeats until the manifest or the host changes: do not retry blindly."""


class EngineFault(TemporaryError):
    """A transient fault of the engine or of the connection to it (a 5xx the request's retries did not outlast, an
    answer lost after the request was sent): whatever the engine did, a fresh plan sees it."""

    replannable = True


class EngineUnavailable(EngineFault):
    """The Docker engine cannot be reached."""


def classify(exc: BaseException) -> ErrorClass:
    """The retry class of an exception; anything that is not a ReconcileError (a driver bug) is permanent."""
    if isinstance(exc, EngineUnavailable):
        return ErrorClass.UNAVAILABLE
    if isinstance(exc, ReconcileError) and exc.retryable:
        return ErrorClass.TEMPORARY
    return ErrorClass.PERMANENT


class LockHeld(ReconcileError):
    """Another writer holds the project lock."""


@dataclass(frozen=True, order=True)
class Problem:
    """One validation problem, printed as `file:line: kind/name: field: message`."""

    file: str
    line: int
    subject: str  # "Kind/name", or "" when the document has no identity yet
    field: str  # dotted path, or "" for the whole document
    message: str

    def __str__(self) -> str:
        parts = [f"{self.file}:{self.line}"]
        if self.subject:
            parts.append(self.subject)
        if self.field:
            parts.append(self.field)
        parts.append(self.message)
        return printable(": ".join(parts))


def printable(text: str) -> str:
    """`text` with every control or otherwise unprintable character escaped (`\\x00`, `\\n`, `\\u2028`), so a NUL
    or a newline in a name can neither cut an error line in two nor hide what follows it on a terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


class ValidationFailed(PermanentError):
    """Manifests are invalid; carries every problem found, sorted."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(set(problems))
        super().__init__("\n".join(str(p) for p in self.problems))


class SpecError(PermanentError):
    """A problem with one field of one manifest, found while normalizing or checking it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
