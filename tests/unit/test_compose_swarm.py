"""`reconcile import compose --swarm`: every `deploy:` key, the stack names, secrets/configs, and what
`docker stack deploy` ignores (a loss line each). No engine: the output is validated in the same process."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.compose import run_import

_WEB = """services:
  web:
    image: nginx:alpine
    ports:
      - "8080:80"
      - {target: 443, published: 8443, mode: host}
    secrets:
      - {source: pw, target: db_pw, uid: "100", gid: "101", mode: 0440}
      - short
    configs: [conf]
    networks: [front]
    volumes: [data:/data]
    stop_grace_period: 20s
    deploy:
      replicas: 2
      endpoint_mode: vip
      labels: {tier: front}
      update_config: {parallelism: 2, delay: 10s, order: start-first, failure_action: rollback, monitor: 5s,
                      max_failure_ratio: 0.5}
      rollback_config: {order: stop-first, failure_action: continue}
      restart_policy: {condition: on-failure, delay: 5s, max_attempts: 3, window: 30s}
      placement:
        constraints: [node.role==manager]
        preferences: [{spread: node.labels.zone}]
        max_replicas_per_node: 2
      resources:
        limits: {cpus: "0.5", memory: 64M, pids: 100}
        reservations: {cpus: "0.25", memory: 16M}
  agent:
    image: busybox
    restart: unless-stopped
    deploy: {mode: global}
networks:
  front: {attachable: true}
volumes:
  data: {}
secrets:
  pw: {file: ./pw.txt}
  short: {file: ./short.txt}
  ext: {external: true}
configs:
  conf: {file: ./conf.txt}
"""


def run(tmp_path: Path, text: str, **options: Any) -> tuple[int, dict[tuple[str, str], dict[str, Any]], str]:
    for name in ("pw.txt", "short.txt", "conf.txt"):
        (tmp_path / name).write_text("x\n")
    (tmp_path / "compose.yml").write_text(text)
    stdout, stderr = io.StringIO(), io.StringIO()
    outcome = run_import([tmp_path / "compose.yml"], tmp_path / "out", "p", (), stdout, stderr, swarm=True, **options)
    docs = {}
    for path in (tmp_path / "out").glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and "kind" in doc:
                docs[(doc["kind"], doc["metadata"]["name"])] = doc
    return outcome.exit_code, docs, stderr.getvalue()


def test_every_deploy_key_becomes_its_service_field(tmp_path):
    code, docs, err = run(tmp_path, _WEB)
    assert code == 0, err
    web = docs[("Service", "p_web")]
    assert web["metadata"]["labels"] == {"tier": "front"}
    spec = web["spec"]
    assert spec["replicas"] == 2 and "mode" not in spec
    assert spec["endpointMode"] == "vip"
    assert spec["update"] == {
        "parallelism": 2,
        "delay": "10s",
        "order": "start-first",
        "failureAction": "rollback",
        "monitor": "5s",
        "maxFailureRatio": 0.5,
    }
    # stack deploy sets parallelism 1 when the file gives other keys but not it
    assert spec["rollback"] == {"order": "stop-first", "failureAction": "continue", "parallelism": 1}
    assert spec["restartPolicy"] == {"condition": "on-failure", "delay": "5s", "maxAttempts": 3, "window": "30s"}
    assert spec["placement"] == {
        "constraints": ["node.role==manager"],
        "preferences": [{"spread": "node.labels.zone"}],
        "maxReplicasPerNode": 2,
    }
    assert spec["resources"] == {
        "cpus": 0.5,
        "memory": "64M",
        "pidsLimit": 100,
        "reservations": {"cpus": 0.25, "memory": "16M"},
    }
    assert spec["stopGracePeriod"] == "20s"
    agent = docs[("Service", "p_agent")]["spec"]
    assert agent["mode"] == "global" and "replicas" not in agent
    assert agent["restartPolicy"] == {"condition": "any"}  # `restart:` as stack deploy converts it


def test_stack_names_overlay_networks_ports_and_file_objects(tmp_path):
    _, docs, _ = run(tmp_path, _WEB)
    spec = docs[("Service", "p_web")]["spec"]
    assert docs[("Network", "p_front")]["spec"] == {"driver": "overlay", "attachable": True}
    assert docs[("Network", "p_default")]["spec"] == {"driver": "overlay"}
    assert spec["networks"] == [{"name": "p_front", "aliases": ["web"]}]
    assert docs[("Service", "p_agent")]["spec"]["networks"] == [{"name": "p_default", "aliases": ["agent"]}]
    assert spec["mounts"] == [{"type": "volume", "source": "p_data", "target": "/data"}]
    assert spec["ports"] == [
        {"containerPort": 80, "hostPort": 8080},
        {"containerPort": 443, "hostPort": 8443, "publishMode": "host"},
    ]
    assert docs[("Secret", "p_pw")]["spec"] == {"file": "../pw.txt"}
    assert docs[("Config", "p_conf")]["spec"] == {"file": "../conf.txt"}
    assert spec["secrets"] == [
        {"name": "p_pw", "target": "db_pw", "uid": "100", "gid": "101", "mode": 0o440},
        {"name": "p_short", "target": "short"},
    ]
    assert spec["configs"] == [{"name": "p_conf", "target": "/conf"}]
    assert not any(kind in ("Container", "Image") for kind, _ in docs)


def test_external_secret_is_referenced_by_its_name_and_flagged(tmp_path):
    code, docs, err = run(
        tmp_path,
        "services:\n  a:\n    image: x\n    secrets: [ext]\nsecrets:\n  ext: {external: true, name: real}\n",
    )
    assert code == 0, err
    assert docs[("Service", "p_a")]["spec"]["secrets"] == [{"name": "real", "target": "ext"}]
    assert ("Secret", "real") not in docs
    assert "secrets.ext: flagged: external: referenced as 'real'" in err


def test_environment_secret_is_reported_not_copied(tmp_path, monkeypatch):
    monkeypatch.setenv("PW", "hunter2")
    code, docs, err = run(
        tmp_path, "services:\n  a:\n    image: x\n    secrets: [s]\nsecrets:\n  s: {environment: PW}\n"
    )
    assert code == 2
    assert "secrets" not in docs[("Service", "p_a")]["spec"]
    assert "secrets.s: not mapped: a secret from `environment`" in err
    assert "hunter2" not in "".join(p.read_text() for p in (tmp_path / "out").iterdir() if p.is_file())


@pytest.mark.parametrize(
    ("text", "key", "why"),
    [
        ("    build: .\n", "build", "does not build"),
        ("    privileged: true\n", "privileged", "ignores it"),
        ("    devices: [/dev/fuse]\n", "devices", "ignores it"),
        ("    security_opt: [no-new-privileges:true]\n", "security_opt", "ignores it"),
        ("    container_name: c\n", "container_name", "names tasks itself"),
        ("    depends_on: [b]\n", "depends_on", "no order"),
        ("    cap_add: [SYS_ADMIN]\n", "cap_add[0]", "a Service refuses it"),
        ("    labels: {a: b}\n", "labels", "deploy.labels label the service"),
        ("    mem_limit: 64m\n", "mem_limit", "refuses it: set resource limits with deploy.resources"),
        ("    ports: ['127.0.0.1:80:80']\n", "ports[0].host_ip", "every address"),
        ("    deploy: {mode: replicated-job}\n", "deploy.mode", "replicated or global"),
        ("    deploy: {resources: {reservations: {devices: [{capabilities: [gpu]}]}}}\n",
         "deploy.resources.reservations.devices", "memory and CPUs only"),
        ("    deploy: {update_config: {order: sideways}}\n", "deploy.update_config.order", "one of"),
        ("    deploy: {rollback_config: {failure_action: rollback}}\n", "deploy.rollback_config.failure_action",
         "one of pause, continue"),
        ("    restart: always\n    deploy: {restart_policy: {condition: none}}\n", "restart", "only when"),
    ],
)  # fmt: skip
def test_what_stack_deploy_ignores_is_a_loss_line_and_not_written(tmp_path, text, key, why):
    code, docs, err = run(tmp_path, "services:\n  a:\n    image: x\n" + text + "  b:\n    image: y\n")
    assert code == 2, err
    assert re.search(rf"services\.a\.{re.escape(key)}: not mapped: [^\n]*{re.escape(why)}", err), err
    spec = docs[("Service", "p_a")]["spec"]
    assert not {"privileged", "devices", "securityOpt", "dependsOn", "allowPrivileged"} & set(spec)
    assert "SYS_ADMIN" not in str(spec)


def test_a_grant_still_follows_the_grant_rules(tmp_path):
    """A bind of a sensitive host path is a grant to review (exit 2, listed first), or left out (--no-grants)."""
    text = "services:\n  a:\n    image: x\n    volumes: ['/etc:/host-etc:ro']\n"
    code, docs, err = run(tmp_path, text)
    assert code == 2 and err.startswith("Grants to review"), err
    assert docs[("Service", "p_a")]["spec"]["mounts"][0]["allowSensitive"] is True
    code, docs, err = run(tmp_path, text, grants=False)
    assert "mounts" not in docs[("Service", "p_a")]["spec"]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("    deploy:\n      mode: global\n      replicas: 2\n", 6, "deploy.replicas: only with mode replicated"),
        ("    ports: ['80:80']\n    deploy:\n      endpoint_mode: dnsrr\n", 6, "dnsrr cannot publish ingress"),
        ("    build: .\n", 3, "a swarm service needs `image`"),
    ],
)
def test_what_stack_deploy_refuses_is_an_error_with_its_line(tmp_path, text, line, message):
    stdout, stderr = io.StringIO(), io.StringIO()
    (tmp_path / "compose.yml").write_text(
        "services:\n  a:\n" + ("    image: x\n" if "build" not in text else "") + text
    )
    outcome = run_import([tmp_path / "compose.yml"], tmp_path / "out", "p", (), stdout, stderr, swarm=True)
    assert outcome.exit_code == 1
    assert f"compose.yml:{line}" in stderr.getvalue() and message in stderr.getvalue(), stderr.getvalue()
    assert not (tmp_path / "out").exists()


def test_docs_swarm_table_lists_exactly_the_deploy_keys_mapped():
    """docs/migrating.md's `--swarm` table names every deploy key swarm.py reads (and no other)."""
    from reconciler.compose.swarm import _DEPLOY_KEYS, _UPDATE_KEYS

    text = (Path(__file__).resolve().parents[2] / "docs" / "migrating.md").read_text()
    section = text.split("\n### `deploy:` keys\n", 1)[1].split("\n#", 1)[0]
    named = set()
    for line in section.splitlines():
        if line.startswith("| `deploy."):
            named.add(re.findall(r"`deploy\.([a-z_.*]+)`", line)[0])
    top = {key.split(".")[0] for key in named}
    assert top == _DEPLOY_KEYS
    assert {key.split(".")[1] for key in named if key.startswith("update_config.")} == set(_UPDATE_KEYS)


def test_secret_env_values_go_to_the_services_private_env_file(tmp_path, monkeypatch):
    monkeypatch.setenv("DB_PASSWORD", "hunter2")
    code, docs, err = run(tmp_path, "services:\n  a:\n    image: x\n    environment: {DB_PASSWORD: $DB_PASSWORD}\n")
    assert code == 0, err
    assert docs[("Service", "p_a")]["spec"]["envFiles"] == ["./.secrets/p_a.env"]
    assert "hunter2" in (tmp_path / "out" / ".secrets" / "p_a.env").read_text()
    assert "hunter2" not in (tmp_path / "out" / "service-p_a.yaml").read_text()


def test_restart_no_leaves_swarms_default_as_stack_deploy_does(tmp_path):
    code, docs, err = run(tmp_path, "services:\n  a:\n    image: x\n    restart: 'no'\n")
    assert code == 0, err
    assert "restartPolicy" not in docs[("Service", "p_a")]["spec"]
    assert "services.a.restart: flagged: `no` leaves swarm's default" in err


@pytest.mark.parametrize(
    ("restart", "policy"),
    [("always", {"condition": "any"}), ("unless-stopped", {"condition": "any"}),
     ("on-failure:4", {"condition": "on-failure", "maxAttempts": 4}), ("on-failure", {"condition": "on-failure"})],
)  # fmt: skip
def test_restart_without_deploy_policy_is_converted_as_stack_deploy_does(tmp_path, restart, policy):
    code, docs, err = run(tmp_path, f"services:\n  a:\n    image: x\n    restart: {restart}\n")
    assert code == 0, err
    assert docs[("Service", "p_a")]["spec"]["restartPolicy"] == policy


def test_unused_network_is_flagged_and_not_written(tmp_path):
    code, docs, err = run(tmp_path, "services:\n  a:\n    image: x\nnetworks:\n  spare: {}\n")
    assert code == 0, err
    assert ("Network", "p_spare") not in docs and ("Network", "p_default") in docs
    assert "networks.spare: flagged: no imported service uses it" in err
