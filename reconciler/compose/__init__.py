"""Import Docker Compose projects as reconciler manifests (`reconcile import compose`).

Reading: source.py (YAML with the line of every key), interpolation.py (`${VAR}` and `.env`), shortforms.py and
merging.py (long forms, `-f` files merged), extends.py, loading.py (all of it, plus the project name).
Mapping: mapping.py (the project), objects.py (networks, volumes), service.py with ports.py, mounts.py,
networking.py, limits.py, envfiles.py (one service), keys.py (which service keys map, and why the others do not).
Output: losses.py (the loss report), writing.py (files on disk), command.py (the command and its exit status).
"""

from reconciler.compose.command import ImportOutcome, run_import

__all__ = ["ImportOutcome", "run_import"]
