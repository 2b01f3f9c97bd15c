"""`reconcile import compose` as users run it: the Compose projects under tests/compose_files imported by the
real CLI, their output checked by the real `reconcile validate`, and one imported project applied for real."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import remove_project_objects

REPO = Path(__file__).resolve().parents[2]
FILES = REPO / "tests" / "compose_files"
TIMEOUT = 120
LINE = re.compile(
    r"^  (?P<file>[^:]+):(?P<line>\d+): (?P<key>\S+): (?P<severity>grant|not mapped|secret|flagged): "
)  # a report line as --verbose prints it


def clean_env(**extra: str) -> dict[str, str]:
    """Interpolation reads the environment: give the CLI only what the test means it to see."""
    keep = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "PYTHONPATH") if k in os.environ}
    return {**keep, **extra}


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler.cli", *args],
        cwd=cwd,
        env=env or clean_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


@pytest.fixture
def shape(tmp_path: Path):
    """A copy of one Compose project of tests/compose_files (imports write next to it)."""

    def copy(name: str) -> Path:
        return Path(shutil.copytree(FILES / name, tmp_path / name))

    return copy


def documents(out: Path) -> dict[tuple[str, str], dict[str, Any]]:
    docs = {}
    for path in sorted(out.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs[(doc["kind"], doc["metadata"]["name"])] = doc
    return docs


def report_lines(stderr: str) -> list[re.Match[str]]:
    return [m for m in map(LINE.match, stderr.splitlines()) if m]


def test_full_project_maps_every_key_and_validates(shape):
    """Two -f files, .env, anchors and a profile: nothing lost, exit 2 only for the grants to review (listed
    first), and `reconcile validate` passes."""
    d = shape("full")
    run = cli(
        "import", "compose", "compose.yaml", "compose.override.yaml", "--profile", "ops", "--out", "out", "--verbose",
        cwd=d,
    )  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert run.stderr.startswith("Grants to review")
    flagged = {(m["key"], m["severity"]) for m in report_lines(run.stderr)}
    assert flagged == {
        ("services.tools.privileged", "grant"),
        ("services.tools.volumes[0]", "grant"),
        ("services.api.build.context", "grant"),  # outside out/: allowExternalContext set
    }
    valid = cli("--project", "shop", "validate", "out", cwd=d)
    assert valid.returncode == 0, valid.stderr
    assert "10 objects" in valid.stdout
    docs = documents(d / "out")
    db = docs[("Container", "shop-db-1")]["spec"]
    assert docs[("Container", "shop-db-1")]["metadata"]["labels"] == {"app.tier": "backend"}  # from a merge key
    assert db["image"] == "127.0.0.1:5000/reconciler/busybox:1.35"  # ${BASE_TAG} from .env
    assert db["entrypoint"] == "/bin/sh -c" and db["command"] == ["sleep 3600"]
    assert db["mounts"] == [
        {"type": "volume", "source": "shop_dbdata", "target": "/var/lib/db"},
        {"type": "tmpfs", "target": "/tmp", "size": "64m", "mode": "1777"},
        {"type": "tmpfs", "target": "/run/db", "size": "16m"},
        {
            "type": "bind",
            "source": "../secrets/db_password.txt",
            "target": "/run/secrets/db_password",
            "readOnly": True,
        },
    ]
    assert db["networks"] == [{"name": "shop_backend", "ipv4Address": "10.30.0.10", "aliases": ["db", "database"]}]
    assert db["healthcheck"] == {
        "test": ["CMD-SHELL", "test -d /var/lib/db"],
        "interval": "5s",
        "timeout": "3s",
        "startPeriod": "10s",
        "retries": 5,
    }
    assert db["resources"] == {"cpus": 0.5, "memory": "128M", "pidsLimit": 100, "memoryReservation": "64M"}
    assert (db["user"], db["workingDir"], db["hostname"]) == ("1000:1000", "/var/lib/db", "db")
    assert (db["capAdd"], db["capDrop"], db["readOnlyRootfs"], db["stopTimeout"]) == (["NET_ADMIN"], ["ALL"], True, 30)
    assert db["restartPolicy"] == {"name": "unless-stopped"}
    api = docs[("Container", "shop-api-1")]["spec"]
    assert api["command"] == ["serve", "--port", "8000"]  # replaced by the override, not appended
    assert api["env"] == {"LOG_LEVEL": "debug", "PRICE": "${PRICE}", "DEBUG": "yes"}  # merged; $$ kept; yes a string
    assert api["envFiles"] == ["../api.env"]
    assert api["dependsOn"] == [{"name": "shop-db-1", "condition": "healthy"}]
    assert api["restartPolicy"] == {"name": "on-failure", "maximumRetryCount": 3}
    assert api["resources"] == {
        "memory": "256m",
        "memorySwap": "512m",
        "memoryReservation": "128m",
        "cpus": 1.5,
        "cpuShares": 512,
        "pidsLimit": 200,
    }
    assert api["mounts"] == [{"type": "bind", "source": "../api.conf", "target": "/etc/api/api.conf", "readOnly": True}]
    assert docs[("Image", "shop-api-1")]["spec"] == {
        "reference": "127.0.0.1:5000/shop/api:2.0",
        "build": {
            "context": "../api",
            "allowExternalContext": True,
            "dockerfile": "Dockerfile.prod",
            "args": {"VERSION": "2.0"},
            "target": "runtime",
        },
    }
    web = docs[("Container", "shop-web")]
    assert web["metadata"]["labels"] == {"traefik.enable": "true"}
    assert web["spec"]["ports"] == [
        {"containerPort": 80, "hostPort": 8080},
        {"containerPort": 9000, "hostPort": 9000, "protocol": "udp"},
        {"containerPort": 9001, "hostPort": 9001, "protocol": "udp"},
        {"containerPort": 3000},
        {"containerPort": 5000, "hostPort": 5001, "hostIP": "127.0.0.1", "protocol": "tcp"},
        {"containerPort": 443, "hostPort": 8443, "hostIP": "127.0.0.1", "protocol": "tcp"},  # one, not two
        {"containerPort": 81, "hostPort": 8081},
    ]
    assert web["spec"]["networks"] == [{"name": "shop_frontend", "aliases": ["web"]}]  # the service name resolves
    assert web["spec"]["healthcheck"] == {"disable": True}
    assert web["spec"]["dependsOn"] == [{"name": "shop-api-1"}]
    assert docs[("Image", "shop-db-1")]["spec"] == {
        "reference": "127.0.0.1:5000/reconciler/busybox:1.35",
        "pullPolicy": "Always",
    }
    tools = docs[("Container", "shop-tools-1")]["spec"]
    assert tools["networkMode"] == "container:shop-web"
    assert (tools["privileged"], tools["allowPrivileged"]) == (True, True)
    assert tools["mounts"][0]["allowSensitive"] is True
    sidecar = docs[("Container", "shop-sidecar-1")]
    assert "labels" not in sidecar["metadata"]  # !reset in the override
    assert sidecar["spec"] == {
        "image": "127.0.0.1:5000/reconciler/busybox:1.35",
        "networkMode": "host",
        "restartPolicy": {"name": "no"},
    }
    assert docs[("Network", "shop_backend")] == {
        "apiVersion": "reconciler/v1",
        "kind": "Network",
        "metadata": {"name": "shop_backend", "labels": {"purpose": "data"}},
        "spec": {
            "driver": "bridge",
            "internal": True,
            "ipam": {
                "driver": "default",
                "config": [{"subnet": "10.30.0.0/24", "gateway": "10.30.0.1", "ipRange": "10.30.0.128/25"}],
            },
        },
    }
    assert docs[("Network", "shop_frontend")]["spec"] == {
        "enableIPv6": False,
        "options": {"com.docker.network.bridge.enable_icc": "true"},
    }
    assert docs[("Volume", "shop_dbdata")]["spec"] == {"driver": "local"}
    assert docs[("Volume", "shop_dbdata")]["metadata"]["labels"] == {"backup": "daily"}


# (line, key) of every loss in tests/compose_files/losses/compose.yml (its bind propagation and volume nocopy are
# mapped now: they are there to show no loss)
EXPECTED_LOSSES = {
    (3, "include"),
    (8, "services.app.build.context"),
    (12, "services.app.env_file[0]"),
    (14, "services.app.links"),
    (18, "services.app.ports[0]"),
    (19, "services.app.ports[1].app_protocol"),
    (19, "services.app.ports[1].name"),
    (21, "services.app.volumes[0]"),
    (23, "services.app.volumes[2]"),
    (34, "services.app.secrets[0]"),
    (36, "services.app.secrets[1].uid"),
    (37, "services.app.configs[0]"),
    (41, "services.app.depends_on.init.restart"),
    (45, "services.app.networks.inside.ipv6_address"),
    (46, "services.app.networks.inside.ipv4_address"),
    (49, "services.app.healthcheck.start_interval"),
    (51, "services.app.deploy.replicas"),
    (52, "services.app.deploy.restart_policy.delay"),
    (56, "services.init.entrypoint"),
    (64, "services.x.ports"),
    (65, "services.x.pull_policy"),
    (73, "networks.inside.ipam.config[0].aux_addresses"),
}


def test_every_loss_is_reported_with_its_line_and_the_output_still_validates(shape):
    """Exit 2; each unmapped key once on stderr as file:line: key, the same list in DIR; validate passes."""
    d = shape("losses")
    run = cli("import", "compose", "compose.yml", "--out", "out", "--verbose", cwd=d)
    assert run.returncode == 2, run.stderr
    lines = report_lines(run.stderr)
    lost = {(int(m["line"]), m["key"]) for m in lines if m["severity"] == "not mapped"}
    assert lost == EXPECTED_LOSSES
    assert {m["file"] for m in lines} == {"compose.yml"}
    # left out as Compose leaves them out: no loss; `- FROM_SHELL`, set nowhere, is no line at all
    assert {m["key"] for m in lines if m["severity"] == "flagged"} == {
        "services.cache",
        "networks.unused",
        "secrets.unused_secret",
    }
    report = (d / "out" / "compose-import-report.yaml").read_text()
    assert all(line.startswith("#") for line in report.splitlines())
    for m in lines:
        assert f"# {m.string}" in report.splitlines()
    assert f"{len(EXPECTED_LOSSES)} not mapped, 0 secret values kept out, 3 flagged" in run.stderr
    valid = cli("--project", "losses", "validate", "out", cwd=d)
    assert valid.returncode == 0, valid.stderr
    docs = documents(d / "out")
    app = docs[("Container", "losses-app-1")]["spec"]
    assert app["dependsOn"] == [{"name": "losses-init-1", "condition": "completed"}]
    assert docs[("Container", "losses-init-1")]["spec"]["state"] == "completed"
    assert app["networks"] == [{"name": "outside", "aliases": ["app"]}, {"name": "losses_inside", "aliases": ["app"]}]
    assert ("Container", "losses-x-1") in docs and ("Container", "losses-cache-1") not in docs
    # external: not owned, declared as such under the engine name, no labels
    assert docs[("Volume", "shared_data")] == {
        "apiVersion": docs[("Volume", "shared_data")]["apiVersion"],
        "kind": "Volume",
        "metadata": {"name": "shared_data"},
        "spec": {"external": True},
    }
    assert docs[("Network", "outside")]["spec"] == {"external": True}


def test_secret_values_are_never_written_or_printed(shape):
    """File secrets become bind mounts of the same file; env-file and secret contents appear nowhere."""
    d = shape("full")
    run = cli("import", "compose", "compose.yaml", "--profile", "ops", "--out", "out", cwd=d)
    assert run.returncode == 2, run.stderr  # grants to review
    written = "".join(p.read_text() for p in (d / "out").iterdir() if p.is_file())
    for secret in ("not-a-real-password", "not-a-real-key"):
        assert secret not in written and secret not in run.stdout + run.stderr
    d = shape("losses")
    run = cli(
        "import",
        "compose",
        "compose.yml",
        "--out",
        "out",
        "--secret-env",
        "FROM_SHELL",
        cwd=d,
        env=clean_env(SECRET_TOKEN="tok-123", FROM_SHELL="shell-456"),
    )
    written = "".join(p.read_text() for p in (d / "out").iterdir() if p.is_file())
    # `- FROM_SHELL` takes its value from the shell, as Compose v2 does; marked secret, it is in the 0600 env file
    secret_file = d / "out" / ".secrets" / "losses-app-1.env"
    assert "FROM_SHELL='shell-456'" in secret_file.read_text() and secret_file.stat().st_mode & 0o077 == 0
    assert "- ./.secrets/losses-app-1.env" in written
    for secret in ("not-a-real-secret", "tok-123", "shell-456"):
        assert secret not in written and secret not in run.stdout + run.stderr


MALFORMED = [
    ("bad-yaml.yml", 4, "invalid YAML"),
    ("duplicate-key.yml", 4, "duplicate key 'image' (first at line 3)"),
    ("unknown-key.yml", 4, "services.web: unknown key 'imagee'"),
    ("bad-interpolation.yml", 4, "invalid interpolation"),
    ("required-variable.yml", 3, "required variable TAG is missing a value: set TAG first"),
    ("undefined-volume.yml", 5, "refers to undefined volume 'data'"),
    ("undefined-network.yml", 4, "undefined network 'back'"),
    ("invalid-port.yml", 5, "invalid port '80:http'"),
    ("not-a-mapping.yml", 1, "must be a mapping"),
    ("unknown-dependency.yml", 4, "unknown service 'db'"),
    ("missing-context.yml", 3, "is not a directory"),
    ("missing-env-file.yml", 4, "does not exist"),
    ("invalid-restart.yml", 4, "invalid value 'sometimes'"),
    ("port-clash.yml", 7, "also published by service 'a1'"),
]


@pytest.mark.parametrize(("name", "line", "message"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_compose_is_one_line_naming_file_and_line(shape, name, line, message):
    """Exit 1, exactly one stderr line `file:line: message`, and nothing written."""
    d = shape("malformed")
    run = cli("import", "compose", name, "--out", "out", cwd=d)
    assert run.returncode == 1
    assert len(run.stderr.splitlines()) == 1, run.stderr
    assert run.stderr.startswith(f"{name}:{line}: ") and message in run.stderr
    assert not (d / "out").exists() and not run.stdout


def test_unreadable_file_is_an_error(tmp_path):
    """A missing Compose file is exit 1 with one line."""
    run = cli("import", "compose", "nope.yml", cwd=tmp_path)
    assert run.returncode == 1 and run.stderr.strip() == "nope.yml: no such file"


def test_import_again_replaces_its_own_files_and_refuses_others(shape):
    """A second import leaves no stale files of the first; a directory with other files is refused."""
    d = shape("full")
    assert cli("import", "compose", "compose.yaml", "--profile", "ops", "--out", "out", cwd=d).returncode == 2
    assert (d / "out" / "container-shop-tools-1.yaml").exists()
    again = cli("import", "compose", "compose.yaml", "--out", "out", cwd=d)
    assert again.returncode == 2  # the api build context is still a grant to review
    assert not (d / "out" / "container-shop-tools-1.yaml").exists()
    (d / "out" / "mine.yaml").write_text("# hand-written\n")
    refused = cli("import", "compose", "compose.yaml", "--out", "out", cwd=d)
    assert refused.returncode == 1 and "mine.yaml" in refused.stderr


def test_default_out_dir_and_project_name(shape):
    """Without --out the manifests go to ./PROJECT; --project renames the engine objects; COMPOSE_PROFILES works."""
    d = shape("full")
    run = cli("import", "compose", "compose.yaml", "--project", "other", cwd=d, env=clean_env(COMPOSE_PROFILES="ops"))
    assert run.returncode == 2, run.stderr  # grants to review
    assert "compose.override.yaml exists and `docker compose` without -f merges it" in run.stderr
    docs = documents(d / "other")
    assert ("Volume", "other_dbdata") in docs and ("Container", "other-tools-1") in docs
    assert cli("validate", "other", cwd=d).returncode == 0


@pytest.mark.engine
def test_imported_project_applies_and_the_next_plan_is_in_sync(shape, engine_host, project_name, base_image, api):
    """Nothing invented: import -> apply -> plan says in sync (no perpetual diff from image defaults)."""
    d = shape("engine")
    env = clean_env(DOCKER_HOST=engine_host, P=project_name)
    run = cli("import", "compose", "compose.yml", "--project", project_name, "--out", "out", cwd=d, env=env)
    assert run.returncode == 0, run.stderr
    applied = cli("--project", project_name, "apply", "out", cwd=d, env=env)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    plan = cli("--project", project_name, "plan", "--output", "json", "out", cwd=d, env=env)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert json.loads(plan.stdout)["inSync"] is True
    # the engine names are Compose's: what a later adoption of the Compose project's volume will find
    assert api.inspect_volume(f"{project_name}_data")["Labels"]["io.reconciler.project"] == project_name
    assert api.inspect_network(f"{project_name}_back")["Name"] == f"{project_name}_back"
    assert api.inspect_container(f"{project_name}-store")["State"]["Health"]["Status"] == "healthy"


SHAPES = [
    ("wordpress", "docker-compose.yml", 0, set()),
    (
        "traefik",
        "compose.yml",
        2,
        {
            "services.traefik.volumes[0]",  # where the socket does not exist (the test engine's is elsewhere)
        },
    ),
    # its init: true is a Container run option; exit 2: its build context, beside the output, is a grant to review
    ("v2-format", "docker-compose.yml", 2, set()),
]


@pytest.mark.parametrize(("name", "file", "code", "lost"), SHAPES, ids=[s[0] for s in SHAPES])
def test_common_shapes_import_and_validate(shape, name, file, code, lost):
    """Real-world layouts (file formats 2.4 and 3, external networks, the engine socket) validate after import."""
    d = shape(name)
    run = cli("import", "compose", file, "--out", "out", "--verbose", cwd=d)
    assert run.returncode == code, run.stderr
    if name == "traefik" and os.path.exists("/var/run/docker.sock"):  # mapped with allowSensitive: a grant
        lost = lost - {"services.traefik.volumes[0]"}
        assert "services.traefik.volumes[0]: grant: " in run.stderr
    assert {m["key"] for m in report_lines(run.stderr) if m["severity"] == "not mapped"} == lost
    valid = cli("--project", name, "validate", "out", cwd=d)
    assert valid.returncode == 0, valid.stderr


def test_inputs_that_are_no_files_are_named_for_what_they_are(tmp_path):
    """Issue 24, defect 10: an env_file that is /dev/zero or a FIFO was said not to exist, and a `.env` linked to
    /dev/zero was silently ignored."""
    os.mkfifo(tmp_path / "fifo")
    cases = [
        ("services:\n  web:\n    image: busybox\n    env_file: /dev/zero\n", "4: services.web.env_file: /dev/zero: "),
        ("services:\n  web:\n    image: busybox\n    env_file: ./fifo\n", "not a regular file"),
    ]
    for text, said in cases:
        (tmp_path / "compose.yaml").write_text(text)
        run = cli("import", "compose", "compose.yaml", "--out", "out", cwd=tmp_path)
        assert run.returncode == 1 and len(run.stderr.splitlines()) == 1, run.stderr
        assert said in run.stderr and "does not exist" not in run.stderr, run.stderr
        assert not (tmp_path / "out").exists()
    (tmp_path / ".env").symlink_to("/dev/zero")
    (tmp_path / "compose.yaml").write_text("services:\n  web:\n    image: busybox\n")
    run = cli("import", "compose", "compose.yaml", "--out", "out", cwd=tmp_path)
    assert run.returncode == 1 and run.stderr.strip().endswith(".env: not a regular file"), run.stderr


def _engine_time(text: str) -> datetime:
    """The engine's RFC 3339 time (nanoseconds, trailing zeros trimmed) to microseconds."""
    whole, _, fraction = text.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{whole}.{(fraction + '000000')[:6]}+00:00")


@pytest.mark.engine
def test_one_shots_external_objects_and_mount_flags_apply_on_the_engine(shape, engine_host, project_name, api):
    """service_completed_successfully, external volumes and networks, `:z` and tmpfs `exec` imported and applied:
    the one-shot exits 0 before its dependent starts, the flags reach HostConfig, and the external volume and
    network (made here first) are used, never created, labelled or removed (not even when their manifests go)."""
    import docker.errors

    d = shape("oneshot")
    ext = f"{project_name}-ext"
    volume = api.create_volume(f"{ext}-data", labels={"made-by": "test"})["Name"]
    network = api.create_network(f"{ext}-net", labels={"made-by": "test"})["Id"]
    env = clean_env(DOCKER_HOST=engine_host, EXT=ext)
    try:
        run = cli("import", "compose", "compose.yml", "--project", project_name, "--out", "out", cwd=d, env=env)
        assert run.returncode == 0, run.stderr
        assert len(run.stderr.splitlines()) < 30
        applied = cli("--project", project_name, "apply", "out", cwd=d, env=env)
        assert applied.returncode == 0, applied.stdout + applied.stderr
        init = api.inspect_container(f"{project_name}-init-1")
        app = api.inspect_container(f"{project_name}-app-1")
        assert (init["State"]["Status"], init["State"]["ExitCode"]) == ("exited", 0)
        assert app["State"]["Running"] is True
        assert _engine_time(app["State"]["StartedAt"]) > _engine_time(init["State"]["FinishedAt"])
        assert any(b.endswith("/seed:/seed:ro,z") for b in init["HostConfig"]["Binds"]), init["HostConfig"]["Binds"]
        assert set(app["HostConfig"]["Tmpfs"]["/scratch"].split(",")) >= {"exec", "size=1048576"}
        assert [m["Name"] for m in app["Mounts"] if m["Type"] == "volume"] == [volume]
        assert app["NetworkSettings"]["Networks"][f"{ext}-net"]["NetworkID"] == network
        plan = cli("--project", project_name, "plan", "--output", "json", "out", cwd=d, env=env)
        assert plan.returncode == 0, plan.stdout + plan.stderr
        assert json.loads(plan.stdout)["inSync"] is True
        # the manifests of the containers and the external objects go: the containers are pruned, the rest stays
        for path in (d / "out").glob("*.yaml"):
            if not path.name.startswith("image-"):
                path.unlink()
        pruned = cli("--project", project_name, "apply", "out", cwd=d, env=env)
        assert pruned.returncode == 0, pruned.stdout + pruned.stderr
        for name in (f"{project_name}-init-1", f"{project_name}-app-1"):
            with pytest.raises(docker.errors.NotFound):
                api.inspect_container(name)
        assert api.inspect_volume(volume)["Labels"] == {"made-by": "test"}
        assert api.inspect_network(network)["Labels"] == {"made-by": "test"}
    finally:
        remove_project_objects(api, project_name)  # its containers hold the network
        api.remove_network(network)
        api.remove_volume(volume)
