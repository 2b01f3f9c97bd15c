"""The option strings only the engine's older fields carry (HostConfig.Binds / Tmpfs, swarm's Hosts lines), the
platform read back from an image, and the warnings of a discarded setting: each written form reads back as the
canonical value it was made from."""

from __future__ import annotations

import pytest

from reconciler.drivers.container import mountopts, platform
from reconciler.drivers.container.discarded import refuse_discarded
from reconciler.drivers.swarm import runfields
from reconciler.errors import PermanentError


@pytest.mark.parametrize(
    "mount",
    [
        {"type": "bind", "source": "/srv/a", "target": "/a", "readOnly": True, "selinux": "z"},
        {
            "type": "bind",
            "source": "/srv/b",
            "target": "/b",
            "readOnly": False,
            "selinux": "Z",
            "propagation": "rshared",
        },
    ],
)
def test_a_relabelled_bind_reads_back_as_declared(mount: dict) -> None:
    """`src:dst:ro,z,rshared` and back."""
    assert mountopts.needs_binds(mount)
    assert mountopts.read_bind(mountopts.bind_string(mount)) == mount


def test_an_exec_tmpfs_reads_back_as_declared() -> None:
    """`exec,size=…,mode=…` and back; the last of exec/noexec wins."""
    mount = {"type": "tmpfs", "target": "/x", "size": 8 * 1024**2, "mode": 0o750, "exec": True}
    assert mountopts.read_tmpfs("/x", mountopts.tmpfs_options(mount)) == mount
    assert "exec" not in mountopts.read_tmpfs("/x", "exec,noexec")


def test_a_named_volume_in_binds_reads_as_a_volume_mount() -> None:
    """Compose 1.29 (and `docker run -v`) put named volumes in HostConfig.Binds: an adopted container that mounts
    its volume must not show `mounts: [] -> [...]`."""
    assert mountopts.read_bind("proj_data:/data:rw") == {
        "type": "volume",
        "source": "proj_data",
        "target": "/data",
        "readOnly": False,
    }
    assert mountopts.read_bind("proj_data:/data:ro,nocopy") == {
        "type": "volume",
        "source": "proj_data",
        "target": "/data",
        "readOnly": True,
        "noCopy": True,
    }


def test_platform_compares_the_declared_parts() -> None:
    """Aliases are the OCI names; a variant left out matches any."""
    assert platform.platform("Linux/x86_64") == "linux/amd64"
    image = platform.of_image({"Os": "linux", "Architecture": "arm64", "Variant": "v8"})
    assert platform.matches("linux/arm64", image) and platform.matches("linux/arm64/v8", image)
    assert not platform.matches("linux/amd64", image) and not platform.matches("linux/arm64/v7", image)


def test_swarm_hosts_lines_read_back_as_extra_hosts() -> None:
    """`ADDRESS NAME` lines <-> `name:address` entries."""
    entries = ["db:10.0.0.2", "cache:10.0.0.3"]
    assert runfields.read_hosts(runfields.engine_hosts(sorted(entries))) == sorted(entries)


def test_a_discarded_setting_is_refused_by_name() -> None:
    """The engine's "Weight discarded" warning names resources.blkioWeight; other warnings pass."""
    refuse_discarded(["Your kernel does not support swap limit capabilities. Memory limited without swap."], "create")
    warning = "Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded."
    with pytest.raises(PermanentError, match=r"discarded resources\.blkioWeight at the update"):
        refuse_discarded([warning], "update")
