"""Failures of the git source, in the project's taxonomy: a fetch that failed may work at the next poll
(temporary); a source that is misconfigured will not (permanent). A commit that is refused (unsigned, wrongly
signed, without the directory) is not an error at all: `sync()` reports it in its result, because the commit in
force keeps running and the controller has nothing to retry."""

from __future__ import annotations

from reconciler.errors import PermanentError, ReconcileError, TemporaryError


class GitSourceError(ReconcileError):
    """Base of every git source failure."""


class FetchFailed(GitSourceError, TemporaryError):
    """Fetching or checking out did not complete (network, timeout, size cap, a git error); the commit in force
    is unchanged."""


class SourceInvalid(GitSourceError, PermanentError):
    """The source cannot work as configured (bad URL, path, key or credentials file, a state directory in use)."""
