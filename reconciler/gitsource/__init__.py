"""The git source: reconcile fetches the manifests it applies from a git remote itself and knows which commit is
in force (issue 22).

Before it, git was the user's problem (a systemd timer fetching a mirror and switching a symlink), so reconcile
could not say which commit ran, refuse an unsigned one, or react to a push. This package does the git half: fetch
a ref shallowly and within bounds, verify the newest commit's ssh signature, check its tree out and switch it into
force atomically, and remember on disk what is in force. It knows nothing of manifests, engines or the watch loop:
the controller calls `GitSource.sync()` on its poll (or a webhook) and applies `SyncResult.tree` when
`SyncResult.changed`.

Layer: below reconciler.watch (which drives it), above reconciler.fleet; it imports only the error taxonomy.
"""

from reconciler.gitsource.errors import FetchFailed, GitSourceError, SourceInvalid
from reconciler.gitsource.source import GitAuth, GitSource, Limits, Rejection, Revision, SyncResult

__all__ = [
    "FetchFailed",
    "GitAuth",
    "GitSource",
    "GitSourceError",
    "Limits",
    "Rejection",
    "Revision",
    "SourceInvalid",
    "SyncResult",
]
