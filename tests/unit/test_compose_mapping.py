"""Compose services, networks and volumes -> manifests: what is written, what is reported, how things are named.

Pure: a Compose file in a temporary directory goes through loading and mapping; no engine, no CLI.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from reconciler.compose.envfiles import env_file_problem
from reconciler.compose.loading import load_project
from reconciler.compose.losses import LossReport, Severity
from reconciler.compose.mapping import build_manifests
from reconciler.compose.shortforms import port_long, volume_long
from reconciler.compose.source import ComposeError, Loc

HERE = Loc("c.yml", 1)


def imported(tmp_path: Path, text: str, profiles=(), environ=None, project=None):
    """(manifests by (kind, name), report) for one Compose file."""
    (tmp_path / "compose.yml").write_text(text)
    report = LossReport()
    compose = load_project(
        [tmp_path / "compose.yml"], project, profiles, report, lambda loc, msg: None, environ=environ or {}
    )
    manifests = build_manifests(
        compose.model,
        compose.name,
        compose.directory,
        tmp_path / "out",
        compose.profiles,
        report,
        compose.interpolated,
        compose.variables,
    )
    found = {(m.kind, m.name): m for m in manifests}
    # containers (and their images) are named `<project>-<service>-1`: tests also find them by service name
    for m in manifests:
        if m.kind in ("Container", "Image") and m.name.startswith(f"{compose.name}-") and m.name.endswith("-1"):
            found.setdefault((m.kind, m.name[len(compose.name) + 1 : -2]), m)
    return found, report


def lost_keys(report: LossReport) -> set[str]:
    return {e.key for e in report.entries if e.severity is Severity.NOT_MAPPED}


def test_image_defaults_are_never_invented(tmp_path):
    """A service with only an image gets only an image (and Compose's default network): nothing else."""
    found, report = imported(tmp_path, "services:\n  app:\n    image: busybox\n")
    assert found[("Container", "app")].spec == {
        "image": "busybox",
        "networks": [{"name": f"{tmp_path.name}_default", "aliases": ["app"]}],
    }
    assert found[("Image", "app")].spec == {"reference": "busybox"}
    assert found[("Network", f"{tmp_path.name}_default")].spec == {}
    assert report.entries == []


def test_names_follow_compose_so_adoption_finds_the_data(tmp_path):
    """Volumes and networks are `<project>_<name>` unless `name:` says otherwise; containers are
    `<project>-<service>-1` as Compose v2 names them, so two projects with a `db` each can run on one engine."""
    found, _ = imported(
        tmp_path,
        "name: Shop.App\nservices:\n  db:\n    image: x\n    volumes: [data:/d, logs:/l]\n"
        "    networks: [back]\nvolumes:\n  data: {}\n  logs: {name: shared-logs}\n"
        "networks:\n  back: {name: backbone}\n",
    )
    assert {(m.kind, m.name) for m in found.values() if m.kind != "Image"} == {
        ("Container", "shopapp-db-1"),
        ("Volume", "shopapp_data"),
        ("Volume", "shared-logs"),
        ("Network", "backbone"),
    }
    assert found[("Container", "db")].spec["mounts"][0]["source"] == "shopapp_data"


def test_project_name_sources_in_order(tmp_path):
    """--project, then `name:`, then COMPOSE_PROJECT_NAME, then the directory (normalized as Compose does)."""
    text = "services:\n  db:\n    image: x\n    volumes: [d:/d]\nvolumes:\n  d: {}\n"
    found, _ = imported(tmp_path, text, environ={"COMPOSE_PROJECT_NAME": "From_Env"})
    assert ("Volume", "from_env_d") in found
    found, _ = imported(tmp_path, text, environ={"COMPOSE_PROJECT_NAME": "x"}, project="cli")
    assert ("Volume", "cli_d") in found


def test_container_name_keeps_the_service_name_reachable(tmp_path):
    """A container_name renames the container; the service name stays a DNS alias on each network."""
    found, _ = imported(
        tmp_path,
        "services:\n  web:\n    image: x\n    container_name: front\n"
        "  app:\n    image: x\n    depends_on: [web]\n    network_mode: service:web\n",
        project="p",
    )
    assert found[("Container", "front")].spec["networks"][0]["aliases"] == ["web"]
    # references follow the names: depends_on and network_mode name the containers
    assert found[("Container", "p-app-1")].spec["dependsOn"] == [{"name": "front"}]
    assert found[("Container", "p-app-1")].spec["networkMode"] == "container:front"


@pytest.mark.parametrize(
    ("depends", "expected", "lost"),
    [
        ("[db]", [{"name": "db"}], set()),
        ("{db: {condition: service_started}}", [{"name": "db"}], set()),
        ("{db: {condition: service_healthy}}", [{"name": "db", "condition": "healthy"}], set()),
        (
            "{db: {condition: service_completed_successfully}}",
            [{"name": "db", "condition": "completed"}],
            set(),
        ),
        (
            "{db: {condition: service_healthy, restart: true}}",
            [{"name": "db", "condition": "healthy"}],
            {"services.app.depends_on.db.restart"},
        ),
        ("{gone: {required: false}}", None, set()),
    ],
)
def test_depends_on_conditions(tmp_path, depends, expected, lost):
    """started/healthy map one to one; what reconciler cannot wait for is reported, never dropped silently."""
    found, report = imported(
        tmp_path, f"services:\n  db:\n    image: x\n  app:\n    image: x\n    depends_on: {depends}\n", project="p"
    )
    for dep in expected or []:
        dep["name"] = f"p-{dep['name']}-1"
    assert found[("Container", "app")].spec.get("dependsOn") == expected
    assert lost_keys(report) == lost


@pytest.mark.parametrize(
    ("restart", "expected"),
    [
        ("no", {"name": "no"}),
        ("always", {"name": "always"}),
        ('"on-failure:5"', {"name": "on-failure", "maximumRetryCount": 5}),
        ("unless-stopped", {"name": "unless-stopped"}),
    ],
)
def test_restart(tmp_path, restart, expected):
    """Every Compose restart value, including a bare `no` (a string in Compose, not a boolean)."""
    found, _ = imported(tmp_path, f"services:\n  app:\n    image: x\n    restart: {restart}\n")
    assert found[("Container", "app")].spec["restartPolicy"] == expected


def test_deploy_restart_policy_and_resources(tmp_path):
    """deploy.restart_policy and deploy.resources map; swarm-only settings are reported."""
    found, report = imported(
        tmp_path,
        "services:\n  app:\n    image: x\n    deploy:\n"
        "      restart_policy: {condition: on-failure, max_attempts: 2}\n"
        "      resources: {limits: {cpus: '2', memory: 1g}, reservations: {cpus: '1'}}\n"
        "      placement: {constraints: [node.role==manager]}\n",
    )
    spec = found[("Container", "app")].spec
    assert spec["restartPolicy"] == {"name": "on-failure", "maximumRetryCount": 2}
    assert spec["resources"] == {"cpus": 2, "memory": "1g"}
    assert lost_keys(report) == {"services.app.deploy.resources.reservations.cpus", "services.app.deploy.placement"}


def test_stop_grace_period_rounds_up_with_a_flag(tmp_path):
    """stopTimeout is whole seconds: 1m30s is 90, 1500ms is 2 (flagged)."""
    found, report = imported(
        tmp_path,
        "services:\n  sa:\n    image: x\n    stop_grace_period: 1m30s\n"
        "  sb:\n    image: x\n    stop_grace_period: 1500ms\n",
    )
    assert found[("Container", "sa")].spec["stopTimeout"] == 90
    assert found[("Container", "sb")].spec["stopTimeout"] == 2
    assert [e.key for e in report.entries] == ["services.sb.stop_grace_period"]


def test_healthcheck_forms(tmp_path):
    """A string test is CMD-SHELL; NONE and disable switch it off; a test-less healthcheck is reported."""
    found, report = imported(
        tmp_path,
        "services:\n  sa:\n    image: x\n    healthcheck: {test: curl -f x}\n"
        "  sb:\n    image: x\n    healthcheck: {test: [NONE]}\n"
        "  sc:\n    image: x\n    healthcheck: {interval: 5s}\n",
    )
    assert found[("Container", "sa")].spec["healthcheck"] == {"test": "curl -f x"}
    assert found[("Container", "sb")].spec["healthcheck"] == {"disable": True}
    assert "healthcheck" not in found[("Container", "sc")].spec
    assert lost_keys(report) == {"services.sc.healthcheck"}


def test_network_mode_forms(tmp_path):
    """host/none/bridge as they are, service:NAME as container:<its container>; ports with host are reported."""
    found, report = imported(
        tmp_path,
        "services:\n  sa:\n    image: x\n    container_name: aa\n"
        "  sb:\n    image: x\n    network_mode: service:sa\n"
        "  sc:\n    image: x\n    network_mode: host\n    ports: ['80:80']\n"
        "  sd:\n    image: x\n    network_mode: container:elsewhere\n",
    )
    assert found[("Container", "sb")].spec["networkMode"] == "container:aa"
    assert found[("Container", "sc")].spec == {"image": "x", "networkMode": "host"}
    assert "networkMode" not in found[("Container", "sd")].spec
    assert lost_keys(report) == {"services.sc.ports", "services.sd.network_mode"}


def test_profiles_select_services(tmp_path):
    """Services in inactive profiles are left out and flagged (no loss: `docker compose up` leaves them out too);
    --profile and `*` bring them in."""
    text = "services:\n  sa:\n    image: x\n  sb:\n    image: x\n    profiles: [debug]\n"
    found, report = imported(tmp_path, text)
    assert ("Container", "sb") not in found and not report.anything_lost
    assert [e.key for e in report.entries] == ["services.sb"]
    found, _ = imported(tmp_path, text, profiles=["debug"])
    assert ("Container", "sb") in found
    found, _ = imported(tmp_path, text, environ={"COMPOSE_PROFILES": "*"})
    assert ("Container", "sb") in found


def test_external_networks_and_volumes_are_declared_external(tmp_path):
    """Not owned: an `external: true` manifest under the engine name (no labels, nothing else), used by the
    services as any other; the file format 2/3 `external: {name:}` and `name:` + `external: true` spellings are
    understood; what else an external entry sets is whoever made it's (reported)."""
    found, report = imported(
        tmp_path,
        "services:\n  sa:\n    image: x\n    networks: {ext: {ipv4_address: 10.9.0.5}, other: {}}\n"
        "    volumes: [vol:/v, w:/w, x:/x]\n"
        "networks:\n  ext: {external: {name: proxy}}\n  other: {external: true, name: shared-net}\n"
        "volumes:\n  vol: {external: true, labels: {a: b}}\n  w: {external: {name: pg-data}}\n  x: {external: true}\n",
        project="p",
    )
    for kind, name in (("Network", "proxy"), ("Network", "shared-net"), ("Volume", "vol"), ("Volume", "pg-data")):
        assert found[(kind, name)].spec == {"external": True} and found[(kind, name)].labels == {}, name
        assert found[(kind, name)].document()["metadata"] == {"name": name}
    spec = found[("Container", "sa")].spec
    # a static address on an external network: its subnets are not declared, the engine checks it
    assert spec["networks"] == [
        {"name": "proxy", "ipv4Address": "10.9.0.5", "aliases": ["sa"]},
        {"name": "shared-net", "aliases": ["sa"]},
    ]
    assert [(m["source"], m["target"]) for m in spec["mounts"]] == [("vol", "/v"), ("pg-data", "/w")]
    # a name reconciler cannot declare (a Volume name has two characters at least): the volume and its uses lost
    assert lost_keys(report) == {"volumes.vol.labels", "volumes.x", "services.sa.volumes[2]"}


def test_bind_paths_are_rewritten_relative_to_the_output(tmp_path):
    """./x in Compose (relative to the file) is ../x from DIR=out; absolute paths stay; missing sources reported."""
    (tmp_path / "conf").mkdir()
    found, report = imported(
        tmp_path,
        "services:\n  sa:\n    image: x\n    volumes:\n      - ./conf:/c\n"
        f"      - {tmp_path}/conf:/abs\n      - ./nope:/n\n",
    )
    assert found[("Container", "sa")].spec["mounts"] == [
        {"type": "bind", "source": "../conf", "target": "/c"},
        {"type": "bind", "source": f"{tmp_path}/conf", "target": "/abs"},
    ]
    assert lost_keys(report) == {"services.sa.volumes[2]"}


def test_sensitive_binds_and_privileged_carry_their_opt_in_as_a_grant(tmp_path):
    """Validated output needs the opt-ins; the user reviews them (grants)."""
    found, report = imported(
        tmp_path, "services:\n  sa:\n    image: x\n    privileged: true\n    volumes: [/etc/hosts:/h]\n"
    )
    spec = found[("Container", "sa")].spec
    assert spec["allowPrivileged"] is True and spec["mounts"][0]["allowSensitive"] is True
    assert {e.severity for e in report.entries} == {Severity.GRANT} and len(report.grants) == 2
    assert not report.anything_lost


def test_secrets_are_bind_mounts_of_the_same_file(tmp_path):
    """A file secret is mounted read-only at /run/secrets/NAME (or its target); its value is never read."""
    (tmp_path / "pw.txt").write_text("hunter2")
    found, _ = imported(
        tmp_path,
        "services:\n  sa:\n    image: x\n    secrets:\n      - pw\n"
        "      - {source: pw, target: other}\nsecrets:\n  pw: {file: ./pw.txt}\n",
    )
    mounts = found[("Container", "sa")].spec["mounts"]
    assert mounts == [
        {"type": "bind", "source": "../pw.txt", "target": "/run/secrets/pw", "readOnly": True},
        {"type": "bind", "source": "../pw.txt", "target": "/run/secrets/other", "readOnly": True},
    ]


def test_build_without_image_is_tagged_as_compose_tags_it(tmp_path):
    """`<project>-<service>`, the name docker compose build gives it."""
    (tmp_path / "app").mkdir()
    found, _ = imported(tmp_path, "services:\n  App:\n    build: ./app\n", project="p")
    # the context lies outside the output directory: validation asks for the opt-in, so the import sets it
    assert found[("Image", "App")].spec == {
        "reference": "p-app",
        "build": {"context": "../app", "allowExternalContext": True},
    }
    assert found[("Container", "App")].spec["image"] == "p-app"


def test_a_bare_environment_name_takes_its_value_from_the_shell_or_dotenv(tmp_path):
    """`- NAME` is NAME's value in the shell (which wins) or .env, as Compose v2 passes it; a name set nowhere is
    passed by Compose as nothing, so it is left out with no report line; a secret-looking one is never copied."""
    (tmp_path / ".env").write_text("FROM_DOTENV=d\nBOTH=dotenv\n")
    found, report = imported(
        tmp_path,
        "services:\n  sa:\n    image: x\n    environment: [TOKEN, A=1, FROM_DOTENV, BOTH, NOWHERE]\n",
        environ={"TOKEN": "s3cret", "BOTH": "shell"},
    )
    assert found[("Container", "sa")].spec["env"] == {"A": "1", "FROM_DOTENV": "d", "BOTH": "shell"}
    assert "s3cret" not in str(found[("Container", "sa")].spec)
    assert found[("Container", "sa")].secrets == {"TOKEN": "s3cret"}
    assert "services.sa.environment.NOWHERE" not in {e.key for e in report.entries}


def test_a_healthcheck_disable_false_is_no_loss(tmp_path):
    """immich's `healthcheck: {disable: false}` changes nothing: nothing is written, nothing reported."""
    found, report = imported(tmp_path, "services:\n  sa:\n    image: x\n    healthcheck: {disable: false}\n")
    assert "healthcheck" not in found[("Container", "sa")].spec and report.entries == []


def test_unknown_keys_are_errors_and_extensions_are_ignored(tmp_path):
    """Compose refuses unknown keys; `x-` keys are allowed anywhere and carry no configuration."""
    _, report = imported(tmp_path, "x-top: 1\nservices:\n  sa:\n    image: x\n    x-mine: {y: 1}\n")
    assert report.entries == []
    with pytest.raises(ComposeError, match="unknown key 'imag'"):
        imported(tmp_path, "services:\n  sa:\n    imag: x\n")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (80, {"target": "80"}),
        ("8080:80", {"target": "80", "published": "8080"}),
        ("127.0.0.1:8080:80/udp", {"target": "80", "published": "8080", "host_ip": "127.0.0.1", "protocol": "udp"}),
        ("127.0.0.1::80", {"target": "80", "host_ip": "127.0.0.1"}),
        ("[::1]:8080:80", {"target": "80", "published": "8080", "host_ip": "::1"}),
        ("9000-9002:9000-9002", {"target": "9000-9002", "published": "9000-9002"}),
    ],
)
def test_port_short_forms(value, expected):
    """Every short form of `ports`, in long form."""
    assert port_long(value, HERE) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/data", {"type": "volume", "target": "/data"}),
        ("data:/data", {"type": "volume", "source": "data", "target": "/data"}),
        ("./d:/data:ro", {"type": "bind", "source": "./d", "target": "/data", "read_only": True}),
        ("~/d:/data:rw", {"type": "bind", "source": "~/d", "target": "/data", "read_only": False}),
        ("/d:/data:ro,z", {"type": "bind", "source": "/d", "target": "/data", "read_only": True, "flags": ["z"]}),
    ],
)
def test_volume_short_forms(value, expected):
    """Every short form of service `volumes`, in long form."""
    assert volume_long(value, HERE) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("A=1\nexport B=two\n# c\n\nC='x $y'\nD=\"q\"\n", None),
        ("A\n", "line 1 is not KEY=VALUE"),
        ("A=${B}\n", "line 1 has a value with $"),
        ("A=1 # note\n", "line 1 has a trailing # comment"),
        ('A="x\ny"\n', "line 1 has a quoted value"),
        ('A="$HOME"\n', "line 1 has a double-quoted value"),
    ],
)
def test_env_files_reconciler_reads_differently_are_detected(tmp_path, text, problem):
    """An env file is referenced only when reconciler reads the same values from it as Compose."""
    path = tmp_path / "x.env"
    path.write_text(text)
    found = env_file_problem(path)
    assert (found is None) if problem is None else (found is not None and found.startswith(problem))


def _service_table_keys() -> set[str]:
    """The Compose keys the first column of docs/migrating.md's Services table names: each backquoted name
    outside parentheses (`build.dockerfile` names `build`; `(string or `context`)` is a remark)."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "migrating.md").read_text()
    section = text.split("\n### Services\n", 1)[1].split("\n### ", 1)[0]
    keys: set[str] = set()
    for line in section.splitlines():
        if not line.startswith("| ") or line.startswith(("| Compose key", "| ---")):
            continue
        first = re.sub(r"\([^)]*\)", "", line.split(" | ")[0])
        for token in re.findall(r"`([^`]+)`", first):
            if re.fullmatch(r"[a-z_]+(\.[a-z_*]+)*", token):
                keys.add(token.split(".")[0])
    return keys


def test_the_mapping_table_lists_exactly_the_keys_the_import_knows():
    """docs/migrating.md's Services table names every service key the import maps or reports (and no other),
    and the import knows every service key of the Compose Specification (tests/unit/data)."""
    from reconciler.compose.keys import HANDLED, UNMAPPED

    known = set(HANDLED) | set(UNMAPPED)
    table = _service_table_keys()
    assert sorted(known - table) == []
    assert sorted(table - known) == []
    spec = Path(__file__).resolve().parent / "data" / "compose_spec_service_keys.txt"
    spec_keys = {line for line in spec.read_text().splitlines() if line and not line.startswith("#")}
    assert len(spec_keys) > 80
    assert sorted(spec_keys - known) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("    healthcheck: CMD true\n", "services.sa.healthcheck must be a mapping"),
        ("    cap_add: NET_ADMIN\n", "services.sa.cap_add must be a list"),
        ("    ports: ['1-3:1-2']\n", "host and container port ranges differ in size"),
        ("    volumes: ['data:relative']\n", "must be an absolute path"),
        ("    networks: {back: {ipv4_address: 10.0.0.300}}\n", "undefined network 'back'"),
        ("    network_mode: host\n    networks: [x]\n", "network_mode and networks are exclusive"),
    ],
)
def test_shapes_compose_refuses_are_errors(tmp_path, text, message):
    """A value Compose would refuse stops the import with its line, rather than being half mapped."""
    with pytest.raises(ComposeError, match=message) as err:
        imported(tmp_path, "services:\n  sa:\n    image: x\n" + text)
    line = 3 + text.count("\n")  # the last line written
    assert str(err.value).startswith(f"{tmp_path / 'compose.yml'}:{line}: ")


def test_waiting_for_health_that_is_disabled_is_reported(tmp_path):
    """service_healthy on a service with its healthcheck disabled would never start: kept as started, reported."""
    found, report = imported(
        tmp_path,
        "services:\n  db:\n    image: x\n    healthcheck: {disable: true}\n"
        "  app:\n    image: x\n    depends_on: {db: {condition: service_healthy}}\n",
        project="p",
    )
    assert found[("Container", "app")].spec["dependsOn"] == [{"name": "p-db-1"}]
    assert lost_keys(report) == {"services.app.depends_on.db.condition"}


def test_a_host_port_on_all_addresses_clashes_with_one_address(tmp_path):
    """Two services on 0.0.0.0:80 and 127.0.0.1:80 cannot both start; `::` counts as all addresses too."""
    for first in ("'80:80'", "'[::]:80:80'"):
        with pytest.raises(ComposeError, match="also published by service 'sa'"):
            imported(
                tmp_path,
                f"services:\n  sa:\n    image: x\n    ports: [{first}]\n"
                "  sb:\n    image: x\n    ports: ['127.0.0.1:80:81']\n",
            )


def test_dependency_cycles_are_errors(tmp_path):
    """Compose refuses a cycle; so does the import, naming it."""
    with pytest.raises(ComposeError, match="dependency cycle between services: sa -> sb -> sc -> sa"):
        imported(
            tmp_path,
            "services:\n  sa:\n    image: x\n    depends_on: [sb]\n  sb:\n    image: x\n"
            "    network_mode: service:sc\n  sc:\n    image: x\n    depends_on: [sa]\n",
        )
    found, _ = imported(
        tmp_path,
        "services:\n  sa:\n    image: x\n    depends_on: [sb, sc]\n  sb:\n    image: x\n"
        "    depends_on: [sc]\n  sc:\n    image: x\n",
    )
    assert len({id(m) for m in found.values()}) == 5  # a diamond is no cycle: three containers, one image, one network


def test_secrets_from_the_shell_or_dotenv_go_to_the_secret_env_file(tmp_path):
    """A secret-looking value that interpolation took from .env or the shell (by its name, its variable's, or a URL
    with a password) goes to the container's secret env file, never into the manifest; values written in the
    Compose file itself (or its defaults) are copied, marked sensitive and flagged; build args are not copied."""
    (tmp_path / ".env").write_text(
        "DB_PASSWORD=from-dotenv\nMY_TOKEN=tok\nURL=http://x\nPOSTGRES_PASS=pw\nDSN=postgres://u:pw@db/x\n"
    )
    found, report = imported(
        tmp_path,
        "services:\n  sa:\n    image: x\n    environment:\n"
        "      DB_PASSWORD: ${DB_PASSWORD}\n      PLAIN: ${MY_TOKEN}\n      API_URL: ${URL}\n"
        "      ADMIN_PASSWORD: ${UNSET:-changeme}\n      POSTGRESQL_PASS: ${POSTGRES_PASS:-zammad}\n"
        "      DATABASE: $DSN\n      CACHE: redis://:literal@cache\n"
        '    build:\n      context: .\n      args: ["NPM_TOKEN=${MY_TOKEN}", "V=${URL}"]\n'
        '  sb:\n    image: y\n    environment: ["DB_PASSWORD=${DB_PASSWORD}"]\n',
        project="p",
    )
    sa = found[("Container", "sa")]
    assert sa.spec["env"] == {"API_URL": "http://x", "ADMIN_PASSWORD": "changeme", "CACHE": "redis://:literal@cache"}
    assert sa.spec["sensitiveEnv"] == ["ADMIN_PASSWORD", "CACHE"]  # written in the Compose file: kept, flagged
    assert sa.spec["envFiles"] == ["./.secrets/p-sa-1.env"]
    assert sa.secrets == {
        "DB_PASSWORD": "from-dotenv",
        "PLAIN": "tok",
        "POSTGRESQL_PASS": "pw",
        "DATABASE": "postgres://u:pw@db/x",
    }
    assert found[("Container", "sb")].secrets == {"DB_PASSWORD": "from-dotenv"}
    assert found[("Image", "sa")].spec["build"]["args"] == {"V": "http://x"}
    assert lost_keys(report) == {"services.sa.build.args.NPM_TOKEN"}
    assert {e.key for e in report.entries if e.severity is Severity.SECRET} == {
        "services.sa.environment.DB_PASSWORD",
        "services.sa.environment.PLAIN",
        "services.sa.environment.POSTGRESQL_PASS",
        "services.sa.environment.DATABASE",
        "services.sb.environment.DB_PASSWORD",
    }
    assert all(v not in e.why for e in report.entries for v in ("from-dotenv", "pw@", "=tok"))


def test_secret_env_marks_more_values_secret(tmp_path):
    """--secret-env NAME: the entry NAME, or any entry fed by variable NAME, goes to the secret env file."""
    (tmp_path / "compose.yml").write_text(
        "services:\n  sa:\n    image: x\n    environment: [FROM_SHELL, 'A=${OTHER}', B=literal, C=1]\n"
    )
    report = LossReport()
    compose = load_project(
        [tmp_path / "compose.yml"], "p", (), report, lambda loc, msg: None, environ={"FROM_SHELL": "s", "OTHER": "o"}
    )
    manifests = build_manifests(
        compose.model, "p", compose.directory, tmp_path / "out", (), report, compose.interpolated,
        compose.variables, secret_env=["FROM_SHELL", "OTHER", "B"],
    )  # fmt: skip
    container = next(m for m in manifests if m.kind == "Container")
    assert container.spec["env"] == {"C": "1"}
    assert container.secrets == {"FROM_SHELL": "s", "A": "o", "B": "literal"}


def test_extends_merges_the_base_service(tmp_path):
    """extends (same file, another file, chained) merges like -f files: the extending service wins."""
    (tmp_path / "common.yml").write_text(
        "services:\n  base:\n    image: x\n    environment: {A: '1', B: '1'}\n"
        "    ports: ['80:80']\n    command: [base]\n"
    )
    found, report = imported(
        tmp_path,
        "services:\n  mid:\n    extends: {file: common.yml, service: base}\n"
        "    environment: {B: '2'}\n    ports: !reset []\n  top:\n    extends: mid\n"
        "    command: [top]\n    ports: ['81:81']\n",
    )
    mid, top = found[("Container", "mid")].spec, found[("Container", "top")].spec
    assert mid["env"] == {"A": "1", "B": "2"} and mid["command"] == ["base"]
    assert top["env"] == {"A": "1", "B": "2"} and top["command"] == ["top"]
    assert "ports" not in mid and [p["hostPort"] for p in top["ports"]] == [81]
    assert report.entries == []


def test_extends_errors(tmp_path):
    """A missing base or a cycle is one line naming the extends."""
    with pytest.raises(ComposeError, match="no service 'nope'"):
        imported(tmp_path, "services:\n  sa:\n    extends: nope\n")
    with pytest.raises(ComposeError, match="a cycle through"):
        imported(tmp_path, "services:\n  sa:\n    extends: sb\n  sb:\n    extends: sa\n")


def test_the_import_agrees_with_the_container_driver():
    """The sensitive paths and the env-file line the import checks against are the Container driver's own: if
    they drift, imports would stop validating (or stop flagging)."""
    from reconciler.compose import envfiles, mounts
    from reconciler.drivers.container import checks
    from reconciler.drivers.engine.values import ENV_LINE

    assert mounts.SENSITIVE_PATHS == checks.SENSITIVE_PATHS
    assert envfiles._RECONCILER_LINE.pattern == ENV_LINE.pattern


def test_the_container_field_table_says_which_keys_are_imported():
    """The Compose keys the import maps are the ones the Container field table's rows name (plus the keys that
    make no field); every key a mapper here reads is named by a row, and no named key is also reported lost."""
    from reconciler.compose.keys import HANDLED, MAPPED_BY_HAND, NOT_FIELDS, UNMAPPED, container_fields

    named = {key for row in container_fields() for key in row.compose}
    assert named | NOT_FIELDS == HANDLED
    assert named >= MAPPED_BY_HAND, "a Compose key a mapper reads is named by its Container field's row"
    assert not named & set(UNMAPPED), "a key a row names is imported, not lost"
    assert not NOT_FIELDS & named


def test_a_key_added_to_a_row_is_imported_as_written(tmp_path, monkeypatch):
    """A Container field whose row names a Compose key no mapper here reads: copied as written, no loss."""
    import dataclasses

    from reconciler.compose import keys, service

    [row] = [r for r in keys.container_fields() if r.key == "readOnlyRootfs"]
    init = dataclasses.replace(row, key="init", compose=("init",))
    monkeypatch.setattr(service, "container_fields", lambda: (*keys.container_fields(), init))
    monkeypatch.setattr(service, "HANDLED", keys.HANDLED | {"init"})
    found, report = imported(tmp_path, "services:\n  app:\n    image: busybox\n    init: true\n")
    assert found[("Container", "app")].spec["init"] is True
    assert "services.app.init" not in lost_keys(report)


def test_booleans_and_numbers_from_variables_are_typed_as_compose_types_them(tmp_path):
    """`privileged: ${PRIV}`, `read_only: ${RO}`, a bind's `read_only: ${VRO}`, `retries: $RETRIES`: no silent drop,
    no false refusal; a value that is no boolean is reported."""
    (tmp_path / "d").mkdir()
    found, report = imported(
        tmp_path,
        "services:\n  sa:\n    image: x\n    privileged: ${PRIV}\n    read_only: ${RO}\n"
        "    volumes:\n      - type: bind\n        source: ./d\n        target: /d\n        read_only: ${VRO}\n"
        "    healthcheck:\n      test: [CMD, 'true']\n      retries: $RETRIES\n      interval: ${IV}\n"
        "    stop_grace_period: ${GRACE}\n    mem_limit: ${MEM}\n"
        "  sb:\n    image: x\n    privileged: ${BAD}\n"
        "  sc:\n    image: x\n    privileged: ${YES}\n    read_only: 'on'\n"
        "    healthcheck: {test: 'true', retries: '2'}\n",
        environ={"PRIV": "true", "RO": "true", "VRO": "true", "RETRIES": "5", "IV": "10s", "GRACE": "3", "MEM": "1g",
                 "BAD": "sure", "YES": "yes"},
    )  # fmt: skip
    spec = found[("Container", "sa")].spec
    assert spec["privileged"] is True and spec["readOnlyRootfs"] is True
    assert spec["mounts"][0]["readOnly"] is True
    assert spec["healthcheck"]["retries"] == 5 and spec["healthcheck"]["interval"] == "10s"
    assert spec["stopTimeout"] == 3 and spec["resources"]["memory"] == "1g"
    sc = found[("Container", "sc")].spec  # text Compose casts: yes/no, on/off, y/n, true/false; "2"
    assert sc["privileged"] is True and sc["readOnlyRootfs"] is True and sc["healthcheck"]["retries"] == 2
    assert lost_keys(report) == {"services.sb.privileged"}


GRANTING = (
    "services:\n  sa:\n    image: x\n    privileged: true\n    cap_add: [ALL, NET_ADMIN]\n"
    "    volumes: ['/:/host']\n    secrets: [shadow]\n"
    "  wg:\n    image: x\n    cap_add: [SYS_MODULE]\n"
    "  b:\n    build: {context: /etc, dockerfile: /etc/shadow}\n"
    "  c:\n    build: ../ctx\nsecrets:\n  shadow: {file: /etc/shadow}\n"
)


def test_grants_are_never_silent(tmp_path):
    """Every opt-in the import writes is a grant to review; a secret file or build context at a sensitive host
    path is never granted (a loss line instead); wg-easy's SYS_MODULE is carried with allowPrivileged."""
    (tmp_path.parent / "ctx").mkdir(exist_ok=True)
    found, report = imported(tmp_path, GRANTING, project="p")
    sa, wg = found[("Container", "sa")].spec, found[("Container", "wg")].spec
    assert sa["privileged"] is True and sa["allowPrivileged"] is True and sa["capAdd"] == ["ALL", "NET_ADMIN"]
    assert sa["mounts"] == [{"type": "bind", "source": "/", "target": "/host", "allowSensitive": True}]
    assert wg["capAdd"] == ["SYS_MODULE"] and wg["allowPrivileged"] is True
    assert "build" not in found[("Image", "b")].spec
    assert found[("Image", "c")].spec["build"]["allowExternalContext"] is True
    grants = {e.key for e in report.grants}
    assert grants == {
        "services.sa.privileged",
        "services.sa.cap_add[0]",
        "services.sa.volumes[0]",
        "services.wg.cap_add[0]",
        "services.c.build.context",
    }
    assert {"services.sa.secrets[0]", "services.b.build.context"} <= lost_keys(report)


def test_no_grants_leaves_them_all_out_and_says_so(tmp_path):
    """--no-grants: nothing needing an opt-in is written, and each is a loss line naming the opt-in."""
    (tmp_path.parent / "ctx").mkdir(exist_ok=True)
    (tmp_path / "compose.yml").write_text(GRANTING)
    report = LossReport()
    compose = load_project([tmp_path / "compose.yml"], "p", (), report, lambda loc, msg: None, environ={})
    manifests = build_manifests(
        compose.model, compose.name, compose.directory, tmp_path / "out", (), report, grants=False
    )
    assert not any(k.startswith("allow") for m in manifests for k in m.spec)
    assert not any(
        "allow" in str(m.spec.get("mounts", "")) or "allow" in str(m.spec.get("build", "")) for m in manifests
    )
    assert report.grants == []
    left_out = {e.key for e in report.entries if "--no-grants" in e.why}
    assert left_out == {
        "services.sa.privileged",
        "services.sa.cap_add[0]",
        "services.sa.volumes[0]",
        "services.wg.cap_add[0]",
        "services.c.build.context",
    }


def test_copied_run_options_that_take_away_isolation_are_grants(tmp_path, monkeypatch):
    """Once the field table has pid, ipc and securityOpt rows: `pid: host`, `ipc: host` and an unconfined
    security_opt are carried with allowPrivileged (as validation asks) and listed as grants; --no-grants drops
    them."""
    import dataclasses

    from reconciler.compose import keys, service

    [row] = [r for r in keys.container_fields() if r.key == "readOnlyRootfs"]
    rows = tuple(
        dataclasses.replace(row, key=k, compose=(c,))
        for k, c in (("pid", "pid"), ("ipc", "ipc"), ("securityOpt", "security_opt"))
    )
    monkeypatch.setattr(service, "container_fields", lambda: (*keys.container_fields(), *rows))
    monkeypatch.setattr(service, "HANDLED", keys.HANDLED | {"pid", "ipc", "security_opt"})
    text = (
        "services:\n  app:\n    image: x\n    pid: host\n    ipc: shareable\n"
        "    security_opt: [no-new-privileges:true, 'seccomp:unconfined']\n"
    )
    found, report = imported(tmp_path, text)
    spec = found[("Container", "app")].spec
    assert (spec["pid"], spec["ipc"], spec["allowPrivileged"]) == ("host", "shareable", True)
    assert spec["securityOpt"] == ["no-new-privileges:true", "seccomp:unconfined"]
    assert {e.key for e in report.grants} == {"services.app.pid", "services.app.security_opt[1]"}
    (tmp_path / "compose.yml").write_text(text)
    report = LossReport()
    compose = load_project([tmp_path / "compose.yml"], "p", (), report, lambda loc, msg: None, environ={})
    [container] = [
        m
        for m in build_manifests(compose.model, "p", tmp_path, tmp_path / "out", (), report, grants=False)
        if m.kind == "Container"
    ]
    assert "pid" not in container.spec and "allowPrivileged" not in container.spec
    assert container.spec["securityOpt"] == ["no-new-privileges:true"]


def test_volume_nocopy_and_bind_propagation_become_mount_fields(tmp_path):
    """`volume.nocopy` (and the short `:nocopy`) -> noCopy; `bind.propagation` (and a short `:rslave`) ->
    propagation, the engine's default rprivate written nowhere; nothing reported (the differential test found
    Compose sends them)."""
    (tmp_path / "d").mkdir()
    found, report = imported(
        tmp_path,
        "services:\n  app:\n    image: x\n    volumes:\n"
        "      - {type: volume, source: data, target: /a, volume: {nocopy: true}}\n"
        "      - data:/b:nocopy\n"
        "      - {type: bind, source: ./d, target: /c, bind: {propagation: rslave}}\n"
        "      - ./d:/e:ro,shared\n"
        "      - {type: bind, source: ./d, target: /f, bind: {propagation: rprivate}}\n"
        "      - {type: volume, source: data, target: /g, volume: {nocopy: false}}\n"
        "volumes:\n  data: {}\n",
    )
    mounts = {m["target"]: m for m in found[("Container", "app")].spec["mounts"]}
    assert mounts["/a"]["noCopy"] is True and mounts["/b"]["noCopy"] is True
    assert mounts["/c"]["propagation"] == "rslave"
    assert mounts["/e"] == {"type": "bind", "source": "../d", "target": "/e", "readOnly": True, "propagation": "shared"}
    assert "propagation" not in mounts["/f"] and "noCopy" not in mounts["/g"]
    assert report.entries == []
    # a value neither Compose nor the engine takes is reported, and no field written
    found, report = imported(
        tmp_path,
        "services:\n  app:\n    image: x\n    volumes:\n"
        "      - {type: bind, source: ./d, target: /c, bind: {propagation: sideways}}\n"
        "      - {type: volume, source: data, target: /a, volume: {nocopy: maybe}}\n"
        "volumes:\n  data: {}\n",
    )
    assert lost_keys(report) == {"services.app.volumes[0].bind.propagation", "services.app.volumes[1].volume.nocopy"}
    assert all("propagation" not in m and "noCopy" not in m for m in found[("Container", "app")].spec["mounts"])


def test_deploy_restart_policy_wins_over_restart_as_in_compose(tmp_path):
    """Compose (1.29 and v2) takes deploy.restart_policy when both are set (the differential test showed it):
    the import did the opposite. `restart` is reported as not carried over."""
    found, report = imported(
        tmp_path,
        "services:\n  app:\n    image: x\n    restart: on-failure:3\n    deploy: {restart_policy: {condition: any}}\n",
    )
    assert found[("Container", "app")].spec["restartPolicy"] == {"name": "always"}
    assert lost_keys(report) == {"services.app.restart"}


@pytest.mark.parametrize("key", ["ipc", "pid"])
def test_joining_another_containers_namespace(tmp_path, key):
    """`service:X` -> `container:<X's container>`, `container:NAME` as written when the import declares NAME (no
    grant: a container of the project is not the host); a service or container outside the import is lost."""
    found, report = imported(
        tmp_path,
        "services:\n  a:\n    image: x\n    container_name: aa\n    ipc: shareable\n"
        f"  b:\n    image: x\n    {key}: service:a\n"
        f"  c:\n    image: x\n    {key}: container:aa\n"
        f"  d:\n    image: x\n    {key}: service:gone\n"
        f"  e:\n    image: x\n    {key}: container:elsewhere\n",
    )
    assert found[("Container", "b")].spec[key] == "container:aa"
    assert found[("Container", "c")].spec[key] == "container:aa"
    assert "allowPrivileged" not in found[("Container", "b")].spec
    assert key not in found[("Container", "d")].spec and key not in found[("Container", "e")].spec
    assert lost_keys(report) == {f"services.d.{key}", f"services.e.{key}"}


def test_the_ipc_namespace_joined_is_made_shareable(tmp_path):
    """docker-compose sets nothing on `ipc: service:a`'s target and the engine's default (private) refuses the
    join: the target gets `ipc: shareable`, flagged; one declared with another mode cannot be joined (lost)."""
    found, report = imported(
        tmp_path,
        "services:\n  a:\n    image: x\n  b:\n    image: x\n    ipc: service:a\n"
        "  c:\n    image: x\n    ipc: private\n  d:\n    image: x\n    ipc: service:c\n",
    )
    assert found[("Container", "a")].spec["ipc"] == "shareable"
    assert found[("Container", "b")].spec["ipc"] == "container:" + found[("Container", "a")].name
    assert "ipc" not in found[("Container", "d")].spec
    assert lost_keys(report) == {"services.d.ipc"}
    assert "services.a.ipc" in {e.key for e in report.entries if e.severity is Severity.FLAGGED}


def test_gpus_and_reserved_devices_become_device_requests(tmp_path):
    """`gpus` and `deploy.resources.reservations.devices` (device_ids, count, capabilities, options) -> gpus in
    the manifest's spelling; they were copied as written (`device_ids`) or reported lost."""
    found, report = imported(
        tmp_path,
        "services:\n"
        "  a:\n    image: x\n    gpus: all\n"
        "  b:\n    image: x\n    gpus:\n"
        "      - {driver: nvidia, device_ids: ['0', '3'], capabilities: [gpu, utility]}\n"
        "  c:\n    image: x\n    deploy:\n      resources:\n        reservations:\n          devices:\n"
        "            - {driver: nvidia, count: 2, capabilities: [gpu], options: {virtualization: false}}\n"
        "            - {capabilities: [gpu], count: all}\n",
    )
    assert found[("Container", "a")].spec["gpus"] == "all"
    assert found[("Container", "b")].spec["gpus"] == [
        {"driver": "nvidia", "deviceIds": ["0", "3"], "capabilities": ["gpu", "utility"]}
    ]
    assert found[("Container", "c")].spec["gpus"] == [
        {"driver": "nvidia", "count": 2, "capabilities": ["gpu"], "options": {"virtualization": "false"}},
        {"count": "all", "capabilities": ["gpu"]},
    ]
    assert report.entries == []


def test_a_device_request_the_engine_would_refuse_is_reported(tmp_path):
    found, report = imported(
        tmp_path,
        "services:\n  a:\n    image: x\n    gpus:\n      - {count: 1, device_ids: ['0']}\n      - {count: 0}\n",
    )
    assert "gpus" not in found[("Container", "a")].spec
    assert lost_keys(report) == {"services.a.gpus[0]", "services.a.gpus[1].count"}


def test_spellings_of_one_image_make_one_image_manifest(tmp_path):
    """`nginx` and `docker.io/library/nginx:latest`, `x:1@sha256:...` and `x@sha256:...` are one image to the
    drivers (canonical_reference): one Image each, which every such container links to."""
    digest = "sha256:" + "a" * 64
    found, report = imported(
        tmp_path,
        "services:\n  a:\n    image: nginx\n  b:\n    image: docker.io/library/nginx:latest\n"
        f"  c:\n    image: 'reg.example/x:1@{digest}'\n  d:\n    image: 'reg.example/x@{digest}'\n",
    )
    images = sorted(m.spec["reference"] for (kind, _), m in found.items() if kind == "Image")
    assert sorted(set(images)) == ["nginx", f"reg.example/x:1@{digest}"]
    assert report.entries == []


def test_platform_is_copied_as_written(tmp_path):
    found, report = imported(tmp_path, "services:\n  a:\n    image: x\n    platform: linux/arm64/v8\n")
    assert found[("Container", "a")].spec["platform"] == "linux/arm64/v8"
    assert report.entries == []


def test_blkio_weight_becomes_resources_blkio_weight_and_device_limits_are_reported(tmp_path):
    """`weight` -> blkioWeight, with a note that an engine without a weight controller refuses it at apply;
    every per-device limit is reported by its own key; 0 is Compose's "unset"."""
    found, report = imported(
        tmp_path,
        "services:\n  a:\n    image: x\n    blkio_config:\n      weight: 300\n"
        "      weight_device: [{path: /dev/sda, weight: 400}]\n"
        "      device_read_bps: [{path: /dev/sda, rate: 1mb}]\n"
        "      device_write_iops: [{path: /dev/sda, rate: 10}]\n"
        "  b:\n    image: x\n    blkio_config: {weight: 0}\n"
        "  c:\n    image: x\n    blkio_config: {weight: 5}\n",
    )
    assert found[("Container", "a")].spec["resources"] == {"blkioWeight": 300}
    assert "resources" not in found[("Container", "b")].spec and "resources" not in found[("Container", "c")].spec
    assert lost_keys(report) == {
        "services.a.blkio_config.weight_device",
        "services.a.blkio_config.device_read_bps",
        "services.a.blkio_config.device_write_iops",
        "services.c.blkio_config.weight",
    }
    [note] = [e for e in report.entries if e.severity is Severity.FLAGGED]
    assert note.key == "services.a.blkio_config.weight" and "resources.blkioWeight" in note.why


def test_bind_selinux_flags_become_the_mount_selinux_field(tmp_path):
    """`:z`/`:Z` (also beside `ro`) and the long `bind.selinux` -> `selinux`; on a named volume, reported."""
    (tmp_path / "d").mkdir()
    found, report = imported(
        tmp_path,
        "services:\n  app:\n    image: x\n    volumes:\n"
        "      - ./d:/a:z\n      - ./d:/b:ro,Z\n"
        "      - {type: bind, source: ./d, target: /c, bind: {selinux: Z}}\n"
        "      - {type: bind, source: ./d, target: /d, bind: {selinux: q}}\n"
        "      - data:/e:z\n"
        "volumes:\n  data: {}\n",
    )
    mounts = {m["target"]: m for m in found[("Container", "app")].spec["mounts"]}
    assert mounts["/a"] == {"type": "bind", "source": "../d", "target": "/a", "selinux": "z"}
    assert mounts["/b"] == {"type": "bind", "source": "../d", "target": "/b", "readOnly": True, "selinux": "Z"}
    assert mounts["/c"]["selinux"] == "Z" and "selinux" not in mounts["/d"] and "selinux" not in mounts["/e"]
    assert lost_keys(report) == {"services.app.volumes[3].bind.selinux", "services.app.volumes[4]:z"}


def test_tmpfs_exec_size_and_mode_become_mount_fields(tmp_path):
    """`exec` -> exec: true; `noexec` (the engine's default) writes nothing; the last of the two wins."""
    found, report = imported(
        tmp_path,
        "services:\n  app:\n    image: x\n"
        "    tmpfs: [/a:exec, '/b:noexec,size=64m,mode=1777', '/c:exec,noexec', '/d:noexec,exec', '/e:uid=1']\n",
    )
    mounts = {m["target"]: m for m in found[("Container", "app")].spec["mounts"]}
    assert mounts["/a"] == {"type": "tmpfs", "target": "/a", "exec": True}
    assert mounts["/b"] == {"type": "tmpfs", "target": "/b", "size": "64m", "mode": "1777"}
    assert mounts["/c"] == {"type": "tmpfs", "target": "/c"}
    assert mounts["/d"]["exec"] is True
    assert lost_keys(report) == {"services.app.tmpfs[4]:uid"}


def test_waiting_for_completion_makes_the_other_a_one_shot(tmp_path):
    """service_completed_successfully -> `condition: completed` and the other `state: completed`; a restart
    policy a one-shot cannot have is reported and dropped (`on-failure` kept); every other wait on it (short
    form included) becomes `completed`, flagged, since validation refuses started/healthy on a one-shot."""
    found, report = imported(
        tmp_path,
        "services:\n"
        "  migrate:\n    image: x\n    restart: always\n"
        "  keys:\n    image: x\n    restart: on-failure\n"
        "  app:\n    image: x\n    depends_on:\n"
        "      migrate: {condition: service_completed_successfully}\n"
        "      keys: {condition: service_completed_successfully}\n"
        "  web:\n    image: x\n    depends_on: [migrate, app]\n",
        project="p",
    )
    migrate, keys = found[("Container", "migrate")].spec, found[("Container", "keys")].spec
    assert migrate["state"] == "completed" and "restartPolicy" not in migrate
    assert keys["state"] == "completed" and keys["restartPolicy"] == {"name": "on-failure"}
    assert found[("Container", "app")].spec["dependsOn"] == [
        {"name": "p-migrate-1", "condition": "completed"},
        {"name": "p-keys-1", "condition": "completed"},
    ]
    assert "state" not in found[("Container", "app")].spec
    assert found[("Container", "web")].spec["dependsOn"] == [
        {"name": "p-migrate-1", "condition": "completed"},
        {"name": "p-app-1"},
    ]
    assert lost_keys(report) == {"services.migrate.restart"}
    flagged = {e.key for e in report.entries if e.severity is Severity.FLAGGED}
    assert flagged == {"services.web.depends_on.migrate.condition"}
