"""Import Docker Compose projects as reconciler manifests (`reconcile import compose`).

source.py reads YAML keeping lines, interpolation.py substitutes `${VAR}`, merging.py merges `-f` files,
loading.py ties those together; mapping.py, objects.py, service.py, ports.py, mounts.py translate; losses.py
keeps the report; writing.py puts it all on disk; command.py is the command.
"""

from reconciler.compose.command import ImportOutcome, run_import

__all__ = ["ImportOutcome", "run_import"]
