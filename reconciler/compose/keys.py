"""Which Compose service keys the import maps, and why each of the others is not mapped (the loss report's
wording and docs/migrating.md's table both come from here).

The keys that make Container fields are named in the Container field table (each row's `compose` column): a field
added there is imported by adding its Compose key to its row; this package's own mappers handle the keys that need
more than a copy (MAPPED_BY_HAND)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reconciler.core.plugins import load

# Keys Compose knows that have no reconciler field, with the reason shown in the loss report.
UNMAPPED: dict[str, str] = {
    "annotations": "reconciler's Container has no annotations",
    "attach": "log attachment is a `docker compose up` console setting",
    "cgroup": "reconciler's Container has no cgroup namespace setting",
    "cpu_count": "reconciler's Container has no CPU count (Windows)",
    "cpu_percent": "reconciler's Container has no CPU percent (Windows)",
    "cpu_period": "reconciler's Container has only `resources.cpus`",
    "cpu_quota": "reconciler's Container has only `resources.cpus`",
    "cpu_rt_period": "reconciler's Container has no realtime CPU settings",
    "cpu_rt_runtime": "reconciler's Container has no realtime CPU settings",
    "credential_spec": "Windows only",
    "develop": "`docker compose watch` settings have no meaning outside Compose",
    "domainname": "reconciler's Container has no domain name",
    "driver_opts": "reconciler's Container has no per-network driver options",
    "external_links": "links are legacy; use a shared network",
    "isolation": "Windows only",
    "label_file": "reconciler reads labels only from the manifest",
    "links": "links are legacy; services on a shared network reach each other by name",
    "log_driver": "reconciler's Container has no log driver settings (the engine's default applies)",
    "log_opt": "reconciler's Container has no log driver settings (the engine's default applies)",
    "mem_swappiness": "reconciler's Container has no swappiness setting",
    "models": "AI model bindings are a Compose feature",
    "oom_kill_disable": "reconciler's Container has no OOM killer setting",
    "post_start": "lifecycle hooks are a Compose feature",
    "pre_stop": "lifecycle hooks are a Compose feature",
    "provider": "provider services are a Compose feature",
    "pull_refresh_after": "reconciler has pull policies IfNotPresent, Always and Never only",
    "scale": "reconciler runs one container per Container manifest",
    "storage_opt": "reconciler's Container has no storage options",
    "use_api_socket": "reconciler does not hand the engine socket to containers implicitly",
    "userns_mode": "reconciler's Container has no user namespace mode",
    "volume_driver": "reconciler's Container has no default volume driver",
    "volumes_from": "reconciler's Container mounts only what it declares",
}
# Keys that make no Container field: the Image manifest (build, pull_policy), the container's name, Compose's own.
NOT_FIELDS = frozenset({"build", "pull_policy", "container_name", "profiles", "extends"})
# Keys the mappers of this package read (service.py, ports.py, mounts.py, networking.py, limits.py); a key a
# Container row names that none of them reads is copied as written (ServiceMapper._copied).
MAPPED_BY_HAND = frozenset(
    {
        "image", "command", "entrypoint", "environment", "env_file", "ports", "volumes", "tmpfs", "secrets",
        "configs", "networks", "network_mode", "depends_on", "healthcheck", "restart", "deploy", "mem_limit",
        "mem_reservation", "memswap_limit", "cpus", "cpu_shares", "pids_limit", "user", "working_dir", "hostname",
        "cap_add", "cap_drop", "privileged", "read_only", "stop_grace_period", "labels", "cpuset",
        "gpus", "blkio_config",
    }
)  # fmt: skip


CONTAINER_FIELDS = "reconciler.drivers.container.fields:FIELDS"
# The capabilities validation refuses without allowPrivileged (they hand a container nearly the host).
DANGEROUS_CAPS: frozenset[str] = frozenset(load("reconciler.drivers.container.checks:DANGEROUS_CAPS"))


# The one spelling of an image reference, by which the drivers link a Container to its Image (loaded by name too)
canonical_reference: Callable[[str], str] = load("reconciler.drivers.engine.reference:canonical_reference")


def container_fields() -> tuple[Any, ...]:
    """The rows of the Container field table (reconciler/drivers/container/fields.py), loaded by name as the core
    loads drivers: the importer imports no driver package, yet each row says which Compose keys make its field."""
    return tuple(load(CONTAINER_FIELDS))


# The keys the import carries over (or that carry no configuration of the container).
HANDLED = NOT_FIELDS | {key for row in container_fields() for key in row.compose}
