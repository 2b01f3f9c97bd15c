"""The JSON Schemas in schemas/: well-formed, and accepting exactly the manifests the reference describes."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"
KINDS = ("Image", "Volume", "Network", "Container", "FirewallAllowList", "Host", "Service", "Secret", "Config")


def _load_all() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted(SCHEMA_DIR.glob("*.schema.json"))}


SCHEMAS = _load_all()
REGISTRY: Registry = Registry().with_resources((doc["$id"], Resource.from_contents(doc)) for doc in SCHEMAS.values())
VALIDATORS = {kind: Draft202012Validator(SCHEMAS[f"{kind}.schema.json"], registry=REGISTRY) for kind in KINDS}


def document(kind: str, spec: Any = None, name: str = "web", **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"apiVersion": "reconciler/v1", "kind": kind, "metadata": {"name": name}}
    if spec is not None:
        doc["spec"] = spec
    doc.update(extra)
    return doc


def errors(doc: dict[str, Any], kind: str | None = None) -> list[tuple[str, str]]:
    """Every schema error of `doc` under the schema of `kind` (default: its own kind), as (path, keyword)."""
    found = VALIDATORS[kind or doc["kind"]].iter_errors(doc)
    return sorted((".".join(str(p) for p in e.absolute_path), str(e.validator)) for e in found)


# ---------------------------------------------------------------------------------------------- the files


def test_every_kind_and_common_have_a_schema_file() -> None:
    """schemas/ holds common.schema.json and one schema per kind of the contract, nothing else."""
    assert set(SCHEMAS) == {"common.schema.json"} | {f"{k}.schema.json" for k in KINDS}


@pytest.mark.parametrize("file_name", sorted(SCHEMAS))
def test_schema_is_valid_draft_2020_12(file_name: str) -> None:
    """Each schema file is itself a valid draft 2020-12 schema whose $id is its file name."""
    schema = SCHEMAS[file_name]
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == file_name


def _subschemas(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            if key in ("const", "default", "enum", "examples"):
                continue
            yield from _subschemas(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _subschemas(value, f"{path}/{i}")


def _is_conditional(path: str) -> bool:
    # properties inside if/then/else/not only restate a property declared (and described) elsewhere
    return any(f"/{word}/" in f"{path}/" for word in ("if", "then", "else", "not"))


@pytest.mark.parametrize("file_name", sorted(SCHEMAS))
def test_every_property_and_definition_has_a_description(file_name: str) -> None:
    """Docs are written from the schemas: every declared property and every $defs entry says what it is."""
    missing = []
    for path, node in _subschemas(SCHEMAS[file_name]):
        for name, sub in node.get("properties", {}).items():
            if not _is_conditional(path) and "description" not in sub:
                missing.append(f"{path}/properties/{name}")
        for name, sub in node.get("$defs", {}).items():
            if "description" not in sub:
                missing.append(f"{path}/$defs/{name}")
    assert missing == []


@pytest.mark.parametrize("file_name", sorted(SCHEMAS))
def test_every_default_is_valid_for_its_own_field(file_name: str) -> None:
    """A documented default is itself a value the schema accepts (catches a default that drifted from the enum)."""
    checked = 0
    for path, node in _subschemas(SCHEMAS[file_name]):
        if "default" not in node:
            continue
        base = f"{file_name}#{path}" if path else file_name
        validator = Draft202012Validator({"$ref": base}, registry=REGISTRY)
        assert list(validator.iter_errors(node["default"])) == [], path
        checked += 1
    if file_name not in ("common.schema.json", "Secret.schema.json", "Config.schema.json"):  # no optional field
        assert checked > 0


# ------------------------------------------------------------------------------- the contract's examples

CONTRACT_ENVELOPE = """
apiVersion: reconciler/v1
kind: Container            # Image | Volume | Network | Container | FirewallAllowList
metadata:
  name: web                # unique per kind within a project; [a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}
  labels: {tier: front}    # copied onto the Docker object (optional)
spec: {image: busybox}
"""

CONTRACT_IMAGE = """
spec:
  reference: 127.0.0.1:5000/web:1.2   # required: the name:tag (or @digest) the image is known by
  pullPolicy: IfNotPresent            # IfNotPresent (default) | Always | Never
  build:                              # optional: build from a context instead of pulling
    context: ./web
    dockerfile: Dockerfile            # relative to context
    args: {VERSION: "1.2"}
    target: runtime
  push: false                         # push `reference` to its registry after a build
"""

CONTRACT_VOLUME = """
spec:
  driver: local                       # default local
  driverOpts: {type: tmpfs, device: tmpfs, o: size=64m}
  reclaimPolicy: Retain               # Retain (default) | Delete
"""

CONTRACT_NETWORK = """
spec:
  driver: bridge                      # bridge (default) | overlay (needs swarm mode) | macvlan | ipvlan
  internal: false
  attachable: false                   # overlay only
  enableIPv6: false
  ipam:
    config:
      - {subnet: 10.10.0.0/24, gateway: 10.10.0.1, ipRange: 10.10.0.128/25}
  options: {parent: eth0}             # driver options, e.g. macvlan parent
"""

# The contract lists `networks` and `networkMode` in one catalogue of fields; they are alternatives
# (`networkMode: host` also publishes no ports), so the example is checked as the two manifests it describes.
CONTRACT_CONTAINER = """
spec:
  image: 127.0.0.1:5000/web:1.2
  command: ["httpd", "-f", "-p", "80"]
  entrypoint: ["/bin/sh", "-c"]
  env: {LOG_LEVEL: info}
  envFiles: [./web.env]
  ports:
    - {containerPort: 80, hostPort: 8080, hostIP: 0.0.0.0, protocol: tcp}
  mounts:
    - {type: volume, source: data, target: /data, readOnly: false}
    - {type: bind, source: /srv/app/config, target: /etc/app, readOnly: true}
    - {type: bind, source: /var/run/docker.sock, target: /var/run/docker.sock, allowSensitive: true}
    - {type: tmpfs, target: /tmp, size: 64m}
  networks:
    - {name: backend, aliases: [api], ipv4Address: 10.10.0.10}
  restartPolicy: {name: unless-stopped}
  state: running
  healthcheck: {test: ["CMD", "true"], interval: 10s, timeout: 5s, retries: 3, startPeriod: 0s}
  resources: {memory: 256m, cpus: 0.5, pidsLimit: 200}
  user: "1000:1000"
  workingDir: /app
  hostname: web
  capAdd: [NET_ADMIN]
  capDrop: [ALL]
  privileged: false
  allowPrivileged: false
  readOnlyRootfs: false
  stopTimeout: 10
  dependsOn:
    - {name: db, condition: healthy}
"""

CONTRACT_CONTAINER_HOST_MODE = """
spec:
  image: 127.0.0.1:5000/web:1.2
  networkMode: host
  restartPolicy: {name: unless-stopped}
"""

CONTRACT_FIREWALL = """
spec:
  interfaces: [eth0]
  sources:
    - 192.168.1.0/24
    - 10.0.0.5-10.0.0.9
  destinations: [203.0.113.10]
  ports:
    - {port: 8080, protocol: tcp}
"""


@pytest.mark.parametrize(
    ("kind", "text"),
    [
        ("Image", CONTRACT_IMAGE),
        ("Volume", CONTRACT_VOLUME),
        ("Network", CONTRACT_NETWORK),
        ("Container", CONTRACT_CONTAINER),
        ("Container", CONTRACT_CONTAINER_HOST_MODE),
        ("FirewallAllowList", CONTRACT_FIREWALL),
    ],
    ids=["Image", "Volume", "Network", "Container", "Container-host-mode", "FirewallAllowList"],
)
def test_contract_examples_validate(kind: str, text: str) -> None:
    """Every example of CONTRACT.md, parsed as YAML, is a valid manifest."""
    doc = document(kind, yaml.safe_load(text)["spec"])
    assert errors(doc) == []


def test_contract_envelope_validates() -> None:
    """The contract's document shape (apiVersion, kind, metadata with labels, spec) is valid."""
    assert errors(yaml.safe_load(CONTRACT_ENVELOPE)) == []


# --------------------------------------------------------------------------------- valid documents

VALID: list[tuple[str, str, Any]] = [
    # Image
    ("image-minimal", "Image", {"reference": "busybox"}),
    ("image-digest", "Image", {"reference": "busybox@sha256:" + "a" * 64}),
    ("image-tag-and-digest", "Image", {"reference": "127.0.0.1:5000/a/b:v1@sha256:" + "0" * 64}),
    ("image-localhost-registry", "Image", {"reference": "localhost:5000/reconciler/busybox:1.35"}),
    ("image-ipv6-registry", "Image", {"reference": "[::1]:5000/web:1"}),
    ("image-pull-always", "Image", {"reference": "busybox:1.35", "pullPolicy": "Always"}),
    ("image-pull-never", "Image", {"reference": "busybox:1.35", "pullPolicy": "Never"}),
    ("image-build-push", "Image", {"reference": "127.0.0.1:5000/web:1", "build": {"context": "."}, "push": True}),
    ("image-push-false-without-build", "Image", {"reference": "busybox", "push": False}),
    # Volume
    ("volume-no-spec", "Volume", None),
    ("volume-empty-spec", "Volume", {}),
    ("volume-delete", "Volume", {"reclaimPolicy": "Delete", "driver": "local"}),
    # Network
    ("network-no-spec", "Network", None),
    ("network-overlay-attachable", "Network", {"driver": "overlay", "attachable": True}),
    ("network-macvlan", "Network", {"driver": "macvlan", "options": {"parent": "veth0"}}),
    ("network-ipvlan", "Network", {"driver": "ipvlan"}),
    (
        "network-ipv6",
        "Network",
        {
            "enableIPv6": True,
            "ipam": {"driver": "default", "config": [{"subnet": "fd00:10::/64", "gateway": "fd00:10::1"}]},
        },
    ),
    ("network-internal", "Network", {"internal": True, "ipam": {"config": []}}),
    # Container
    ("container-minimal", "Container", {"image": "busybox"}),
    ("container-command-string", "Container", {"image": "busybox", "command": "sleep 3600", "entrypoint": "/bin/sh"}),
    ("container-stopped", "Container", {"image": "busybox", "state": "stopped"}),
    (
        "container-mode-bridge",
        "Container",
        {"image": "busybox", "networkMode": "bridge", "ports": [{"containerPort": 80}]},
    ),
    (
        "container-mode-bridge-empty-networks",
        "Container",
        {"image": "busybox", "networkMode": "bridge", "networks": []},
    ),
    ("container-mode-none", "Container", {"image": "busybox", "networkMode": "none"}),
    ("container-mode-container", "Container", {"image": "busybox", "networkMode": "container:db"}),
    ("container-ipc-pid-container", "Container", {"image": "b", "ipc": "container:db", "pid": "container:db.1"}),
    (
        "container-port-udp-ipv6",
        "Container",
        {"image": "b", "ports": [{"containerPort": 53, "protocol": "udp", "hostIP": "::1"}]},
    ),
    (
        "container-port-sctp",
        "Container",
        {"image": "b", "ports": [{"containerPort": 9, "hostPort": 9, "protocol": "sctp"}]},
    ),
    (
        "container-restart-on-failure",
        "Container",
        {"image": "b", "restartPolicy": {"name": "on-failure", "maximumRetryCount": 3}},
    ),
    ("container-restart-always", "Container", {"image": "b", "restartPolicy": {"name": "always"}}),
    ("container-restart-no", "Container", {"image": "b", "restartPolicy": {"name": "no"}}),
    ("container-health-disabled", "Container", {"image": "b", "healthcheck": {"disable": True}}),
    (
        "container-health-shell-string",
        "Container",
        {"image": "b", "healthcheck": {"test": "wget -q localhost", "interval": 5}},
    ),
    (
        "container-health-cmd-shell",
        "Container",
        {"image": "b", "healthcheck": {"test": ["CMD-SHELL", "true"], "timeout": "1m30s"}},
    ),
    (
        "container-resources-all",
        "Container",
        {
            "image": "b",
            "resources": {
                "memory": "1g",
                "memorySwap": -1,
                "memoryReservation": 67108864,
                "cpus": 1.5,
                "cpuShares": 512,
                "pidsLimit": 100,
            },
        },
    ),
    ("container-memory-units", "Container", {"image": "b", "resources": {"memory": "64MiB", "memorySwap": "1.5g"}}),
    ("container-privileged-allowed", "Container", {"image": "b", "privileged": True, "allowPrivileged": True}),
    (
        "container-sensitive-env",
        "Container",
        {"image": "b", "env": {"DB_PASSWORD": "x"}, "sensitiveEnv": ["DB_PASSWORD"]},
    ),
    (
        "container-bind-relative",
        "Container",
        {"image": "b", "mounts": [{"type": "bind", "source": "./conf", "target": "/c"}]},
    ),
    (
        "container-bind-parent",
        "Container",
        {"image": "b", "mounts": [{"type": "bind", "source": "../x", "target": "/c"}]},
    ),
    (
        "container-bind-var-log",
        "Container",
        {"image": "b", "mounts": [{"type": "bind", "source": "/var/log", "target": "/l"}]},
    ),
    (
        "container-bind-docker-like",
        "Container",
        {"image": "b", "mounts": [{"type": "bind", "source": "/var/lib/docker2", "target": "/l"}]},
    ),
    (
        "container-bind-etc-allowed",
        "Container",
        {
            "image": "b",
            "mounts": [
                {"type": "bind", "source": "/etc/localtime", "target": "/etc/localtime", "allowSensitive": True}
            ],
        },
    ),
    (
        "container-tmpfs-mode",
        "Container",
        {"image": "b", "mounts": [{"type": "tmpfs", "target": "/t", "size": 1024, "mode": "1777"}]},
    ),
    ("container-depends-started", "Container", {"image": "b", "dependsOn": [{"name": "db", "timeout": "2m"}]}),
    ("container-duration-seconds", "Container", {"image": "b", "dependsOn": [{"name": "db", "timeout": 30}]}),
    ("container-caps-lowercase-prefix", "Container", {"image": "b", "capAdd": ["cap_net_admin"], "capDrop": ["ALL"]}),
    # FirewallAllowList
    ("fw-minimal", "FirewallAllowList", {"interfaces": ["eth0"]}),
    ("fw-drop-all", "FirewallAllowList", {"interfaces": ["eth0", "wlan0"], "sources": []}),
    ("fw-ipv6", "FirewallAllowList", {"interfaces": ["eth0"], "sources": ["2001:db8::/32", "2001:db8::1-2001:db8::9"]}),
    (
        "fw-ports",
        "FirewallAllowList",
        {"interfaces": ["eth0"], "ports": [{"port": 53, "protocol": "udp"}, {"port": 1}]},
    ),
]


@pytest.mark.parametrize(("kind", "spec"), [c[1:] for c in VALID], ids=[c[0] for c in VALID])
def test_valid_documents(kind: str, spec: Any) -> None:
    """Documents the reference describes as valid produce no schema error."""
    assert errors(document(kind, spec, name="web")) == []


# ------------------------------------------------------------------------------- invalid documents

# (id, kind, spec, expected errors as (path, keyword)); every case differs from a valid document by one mistake
INVALID: list[tuple[str, str, Any, list[tuple[str, str]]]] = [
    # Image
    ("image-no-spec", "Image", None, [("", "required")]),
    ("image-no-reference", "Image", {"pullPolicy": "Always"}, [("spec", "required")]),
    ("image-reference-uppercase-repo", "Image", {"reference": "Busybox"}, [("spec.reference", "pattern")]),
    ("image-reference-space", "Image", {"reference": "busy box"}, [("spec.reference", "pattern")]),
    ("image-pull-policy", "Image", {"reference": "b", "pullPolicy": "always"}, [("spec.pullPolicy", "enum")]),
    ("image-push-without-build", "Image", {"reference": "b", "push": True}, [("spec.push", "const")]),
    ("image-build-no-context", "Image", {"reference": "b", "build": {"dockerfile": "D"}}, [("spec.build", "required")]),
    (
        "image-build-arg-number",
        "Image",
        {"reference": "b", "build": {"context": ".", "args": {"V": 1}}},
        [("spec.build.args.V", "type")],
    ),
    (
        "image-push-not-bool",
        "Image",
        {"reference": "b", "build": {"context": "."}, "push": "yes"},
        [("spec.push", "type")],
    ),
    # Volume
    ("volume-reclaim", "Volume", {"reclaimPolicy": "delete"}, [("spec.reclaimPolicy", "enum")]),
    ("volume-opts-number", "Volume", {"driverOpts": {"size": 5}}, [("spec.driverOpts.size", "type")]),
    ("volume-spec-null", "Volume", {"driver": None}, [("spec.driver", "type")]),
    # Network
    ("network-driver", "Network", {"driver": "host"}, [("spec.driver", "enum")]),
    ("network-attachable-bridge", "Network", {"attachable": True}, [("spec.attachable", "const")]),
    (
        "network-attachable-macvlan",
        "Network",
        {"driver": "macvlan", "attachable": True},
        [("spec.attachable", "const")],
    ),
    (
        "network-ipam-no-subnet",
        "Network",
        {"ipam": {"config": [{"gateway": "10.0.0.1"}]}},
        [("spec.ipam.config.0", "required")],
    ),
    (
        "network-subnet-not-cidr",
        "Network",
        {"ipam": {"config": [{"subnet": "10.0.0.0"}]}},
        [("spec.ipam.config.0.subnet", "pattern")],
    ),
    (
        "network-gateway-cidr",
        "Network",
        {"ipam": {"config": [{"subnet": "10.0.0.0/24", "gateway": "10.0.0.1/24"}]}},
        [("spec.ipam.config.0.gateway", "pattern")],
    ),
    ("network-internal-string", "Network", {"internal": "false"}, [("spec.internal", "type")]),
    ("network-options-number", "Network", {"options": {"mtu": 1500}}, [("spec.options.mtu", "type")]),
    # Container
    ("container-no-spec", "Container", None, [("", "required")]),
    ("container-no-image", "Container", {"state": "running"}, [("spec", "required")]),
    ("container-state", "Container", {"image": "b", "state": "paused"}, [("spec.state", "enum")]),
    ("container-command-empty-list", "Container", {"image": "b", "command": []}, [("spec.command", "minItems")]),
    ("container-command-number", "Container", {"image": "b", "command": 5}, [("spec.command", "type")]),
    (
        "container-entrypoint-items",
        "Container",
        {"image": "b", "entrypoint": ["sh", 1]},
        [("spec.entrypoint.1", "type")],
    ),
    ("container-env-number", "Container", {"image": "b", "env": {"PORT": 80}}, [("spec.env.PORT", "type")]),
    ("container-env-bad-name", "Container", {"image": "b", "env": {"A=B": "x"}}, [("spec.env", "pattern")]),
    (
        "container-sensitive-env-dup",
        "Container",
        {"image": "b", "sensitiveEnv": ["A", "A"]},
        [("spec.sensitiveEnv", "uniqueItems")],
    ),
    (
        "container-port-missing-container-port",
        "Container",
        {"image": "b", "ports": [{"hostPort": 80}]},
        [("spec.ports.0", "required")],
    ),
    (
        "container-port-zero",
        "Container",
        {"image": "b", "ports": [{"containerPort": 0}]},
        [("spec.ports.0.containerPort", "minimum")],
    ),
    (
        "container-port-too-big",
        "Container",
        {"image": "b", "ports": [{"containerPort": 80, "hostPort": 65536}]},
        [("spec.ports.0.hostPort", "maximum")],
    ),
    (
        "container-port-protocol",
        "Container",
        {"image": "b", "ports": [{"containerPort": 80, "protocol": "TCP"}]},
        [("spec.ports.0.protocol", "enum")],
    ),
    (
        "container-port-host-ip",
        "Container",
        {"image": "b", "ports": [{"containerPort": 80, "hostIP": "localhost"}]},
        [("spec.ports.0.hostIP", "pattern")],
    ),
    (
        "container-mount-no-type",
        "Container",
        {"image": "b", "mounts": [{"source": "d", "target": "/d"}]},
        [("spec.mounts.0", "required")],
    ),
    (
        "container-mount-npipe",
        "Container",
        {"image": "b", "mounts": [{"type": "npipe", "source": "//./pipe/x", "target": "/p"}]},
        [("spec.mounts.0.type", "not")],  # a dedicated branch whose description says why
    ),
    (
        "container-volume-no-source",
        "Container",
        {"image": "b", "mounts": [{"type": "volume", "target": "/d"}]},
        [("spec.mounts.0", "required")],
    ),
    (
        "container-volume-no-target",
        "Container",
        {"image": "b", "mounts": [{"type": "volume", "source": "data"}]},
        [("spec.mounts.0", "required")],
    ),
    (
        "container-volume-path-source",
        "Container",
        {"image": "b", "mounts": [{"type": "volume", "source": "/data", "target": "/d"}]},
        [("spec.mounts.0.source", "pattern")],
    ),
    (
        "container-volume-size",
        "Container",
        {"image": "b", "mounts": [{"type": "volume", "source": "data", "target": "/d", "size": "1m"}]},
        [("spec.mounts.0", "additionalProperties")],
    ),
    (
        "container-mount-relative-target",
        "Container",
        {"image": "b", "mounts": [{"type": "volume", "source": "data", "target": "d"}]},
        [("spec.mounts.0.target", "pattern")],
    ),
    (
        "container-bind-bare-relative",
        "Container",
        {"image": "b", "mounts": [{"type": "bind", "source": "conf", "target": "/c"}]},
        [("spec.mounts.0.source", "pattern")],
    ),
    (
        "container-bind-create-source",
        "Container",
        {"image": "b", "mounts": [{"type": "bind", "source": "/srv/x", "target": "/c", "createSource": True}]},
        [("spec.mounts.0", "additionalProperties")],
    ),
    (
        "container-tmpfs-source",
        "Container",
        {"image": "b", "mounts": [{"type": "tmpfs", "source": "x", "target": "/t"}]},
        [("spec.mounts.0", "additionalProperties")],
    ),
    (
        "container-tmpfs-mode-int",
        "Container",
        {"image": "b", "mounts": [{"type": "tmpfs", "target": "/t", "mode": 1777}]},
        [("spec.mounts.0.mode", "type")],
    ),
    (
        "container-tmpfs-size",
        "Container",
        {"image": "b", "mounts": [{"type": "tmpfs", "target": "/t", "size": "64 megs"}]},
        [("spec.mounts.0.size", "pattern")],
    ),
    (
        "container-readonly-string",
        "Container",
        {"image": "b", "mounts": [{"type": "volume", "source": "data", "target": "/d", "readOnly": "yes"}]},
        [("spec.mounts.0.readOnly", "type")],
    ),
    (
        "container-networks-bridge",
        "Container",
        {"image": "b", "networks": [{"name": "bridge"}]},
        [("spec.networks.0.name", "not")],
    ),
    (
        "container-network-no-name",
        "Container",
        {"image": "b", "networks": [{"aliases": ["a"]}]},
        [("spec.networks.0", "required")],
    ),
    (
        "container-network-ipv6-static",
        "Container",
        {"image": "b", "networks": [{"name": "n1", "ipv4Address": "fd00::1"}]},
        [("spec.networks.0.ipv4Address", "pattern")],
    ),
    (
        "container-network-mode-bad",
        "Container",
        {"image": "b", "networkMode": "container:"},
        [("spec.networkMode", "pattern")],
    ),
    (
        "container-ipc-pid-container-bad",
        "Container",
        {"image": "b", "ipc": "container:", "pid": "private"},
        [("spec.ipc", "pattern"), ("spec.pid", "pattern")],
    ),
    (
        "container-network-mode-default",
        "Container",
        {"image": "b", "networkMode": "default"},
        [("spec.networkMode", "pattern")],
    ),
    (
        "container-restart-unknown",
        "Container",
        {"image": "b", "restartPolicy": {"name": "sometimes"}},
        [("spec.restartPolicy.name", "enum")],
    ),
    (
        "container-restart-yaml-no",
        "Container",
        {"image": "b", "restartPolicy": {"name": False}},
        [("spec.restartPolicy.name", "enum")],
    ),
    (
        "container-restart-no-name",
        "Container",
        {"image": "b", "restartPolicy": {"maximumRetryCount": 1}},
        [("spec.restartPolicy", "required")],
    ),
    (
        "container-restart-retries-negative",
        "Container",
        {"image": "b", "restartPolicy": {"name": "on-failure", "maximumRetryCount": -1}},
        [("spec.restartPolicy.maximumRetryCount", "minimum")],
    ),
    (
        "container-health-no-test",
        "Container",
        {"image": "b", "healthcheck": {"interval": "5s"}},
        [("spec.healthcheck", "required")],
    ),
    (
        "container-health-disable-false",
        "Container",
        {"image": "b", "healthcheck": {"disable": False}},
        [("spec.healthcheck.disable", "const")],
    ),
    (
        "container-health-none",
        "Container",
        {"image": "b", "healthcheck": {"test": ["NONE"]}},
        [("spec.healthcheck.test", "minItems"), ("spec.healthcheck.test.0", "enum")],
    ),
    (
        "container-health-bare-list",
        "Container",
        {"image": "b", "healthcheck": {"test": ["true", "x"]}},
        [("spec.healthcheck.test.0", "enum")],
    ),
    (
        "container-health-interval",
        "Container",
        {"image": "b", "healthcheck": {"test": "true", "interval": "10 seconds"}},
        [("spec.healthcheck.interval", "pattern")],
    ),
    (
        "container-health-negative",
        "Container",
        {"image": "b", "healthcheck": {"test": "true", "timeout": -1}},
        [("spec.healthcheck.timeout", "minimum")],
    ),
    (
        "container-health-retries-zero",
        "Container",
        {"image": "b", "healthcheck": {"test": "true", "retries": 0}},
        [("spec.healthcheck.retries", "minimum")],
    ),
    (
        "container-cpus-zero",
        "Container",
        {"image": "b", "resources": {"cpus": 0}},
        [("spec.resources.cpus", "minimum")],
    ),
    (
        "container-cpu-shares",
        "Container",
        {"image": "b", "resources": {"cpuShares": 1}},
        [("spec.resources.cpuShares", "minimum")],
    ),
    (
        "container-pids-zero",
        "Container",
        {"image": "b", "resources": {"pidsLimit": 0}},
        [("spec.resources.pidsLimit", "minimum")],
    ),
    (
        "container-memory-unit",
        "Container",
        {"image": "b", "resources": {"memory": "1x"}},
        [("spec.resources.memory", "pattern")],
    ),
    (
        "container-memory-zero",
        "Container",
        {"image": "b", "resources": {"memory": 0}},
        [("spec.resources.memory", "minimum")],
    ),
    (
        "container-swap-alone",
        "Container",
        {"image": "b", "resources": {"memorySwap": "1g"}},
        [("spec.resources", "dependentRequired")],
    ),
    ("container-user-int", "Container", {"image": "b", "user": 1000}, [("spec.user", "type")]),
    (
        "container-working-dir-relative",
        "Container",
        {"image": "b", "workingDir": "app"},
        [("spec.workingDir", "pattern")],
    ),
    ("container-hostname", "Container", {"image": "b", "hostname": "web_1"}, [("spec.hostname", "pattern")]),
    ("container-cap-dup", "Container", {"image": "b", "capDrop": ["ALL", "ALL"]}, [("spec.capDrop", "uniqueItems")]),
    ("container-stop-timeout", "Container", {"image": "b", "stopTimeout": "10s"}, [("spec.stopTimeout", "type")]),
    (
        "container-depends-condition",
        "Container",
        {"image": "b", "dependsOn": [{"name": "db", "condition": "ready"}]},
        [("spec.dependsOn.0.condition", "enum")],
    ),
    (
        "container-depends-no-name",
        "Container",
        {"image": "b", "dependsOn": [{"condition": "healthy"}]},
        [("spec.dependsOn.0", "required")],
    ),
    ("container-depends-string", "Container", {"image": "b", "dependsOn": ["db"]}, [("spec.dependsOn.0", "type")]),
    # FirewallAllowList
    ("fw-no-interfaces", "FirewallAllowList", {"sources": []}, [("spec", "required")]),
    ("fw-empty-interfaces", "FirewallAllowList", {"interfaces": []}, [("spec.interfaces", "minItems")]),
    ("fw-interface-too-long", "FirewallAllowList", {"interfaces": ["a" * 16]}, [("spec.interfaces.0", "pattern")]),
    ("fw-interface-slash", "FirewallAllowList", {"interfaces": ["eth/0"]}, [("spec.interfaces.0", "pattern")]),
    ("fw-interface-quote", "FirewallAllowList", {"interfaces": ['e"th9']}, [("spec.interfaces.0", "pattern")]),
    ("fw-interface-space", "FirewallAllowList", {"interfaces": ["eth 0"]}, [("spec.interfaces.0", "pattern")]),
    ("fw-interface-dot", "FirewallAllowList", {"interfaces": [".."]}, [("spec.interfaces.0", "not")]),
    (
        "fw-source-name",
        "FirewallAllowList",
        {"interfaces": ["eth0"], "sources": ["example.org"]},
        [("spec.sources.0", "pattern")],
    ),
    (
        "fw-destination-name",
        "FirewallAllowList",
        {"interfaces": ["eth0"], "destinations": ["host"]},
        [("spec.destinations.0", "pattern")],
    ),
    (
        "fw-port-missing",
        "FirewallAllowList",
        {"interfaces": ["eth0"], "ports": [{"protocol": "tcp"}]},
        [("spec.ports.0", "required")],
    ),
    (
        "fw-port-range",
        "FirewallAllowList",
        {"interfaces": ["eth0"], "ports": [{"port": 70000}]},
        [("spec.ports.0.port", "maximum")],
    ),
    (
        "fw-port-protocol",
        "FirewallAllowList",
        {"interfaces": ["eth0"], "ports": [{"port": 80, "protocol": "icmp"}]},
        [("spec.ports.0.protocol", "enum")],
    ),
]


@pytest.mark.parametrize(("kind", "spec", "expected"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_documents(kind: str, spec: Any, expected: list[tuple[str, str]]) -> None:
    """Each mistake is reported at its own field by the keyword that catches it, and nothing else is reported."""
    assert errors(document(kind, spec)) == sorted(expected)


# ------------------------------------------------------------------------- mutual exclusions, opt-ins

EXCLUSIONS: list[tuple[str, dict[str, Any], list[tuple[str, str]]]] = [
    ("networks-with-host", {"networkMode": "host", "networks": [{"name": "backend"}]}, [("spec.networks", "maxItems")]),
    (
        "networks-with-bridge",
        {"networkMode": "bridge", "networks": [{"name": "backend"}]},
        [("spec.networks", "maxItems")],
    ),
    (
        "networks-with-container",
        {"networkMode": "container:db", "networks": [{"name": "b2"}]},
        [("spec.networks", "maxItems")],
    ),
    ("ports-with-host", {"networkMode": "host", "ports": [{"containerPort": 80}]}, [("spec.ports", "maxItems")]),
    ("ports-with-none", {"networkMode": "none", "ports": [{"containerPort": 80}]}, [("spec.ports", "maxItems")]),
    (
        "ports-with-container",
        {"networkMode": "container:db", "ports": [{"containerPort": 80}]},
        [("spec.ports", "maxItems")],
    ),
    ("hostname-with-container", {"networkMode": "container:db", "hostname": "web"}, [("spec.hostname", "not")]),
    ("privileged-without-opt-in", {"privileged": True}, [("spec", "required")]),
    ("privileged-opt-in-false", {"privileged": True, "allowPrivileged": False}, [("spec.allowPrivileged", "const")]),
    (
        "retry-count-with-always",
        {"restartPolicy": {"name": "always", "maximumRetryCount": 3}},
        [("spec.restartPolicy.maximumRetryCount", "const")],
    ),
    (
        "health-disable-with-test",
        {"healthcheck": {"disable": True, "test": "true"}},
        [("spec.healthcheck", "additionalProperties")],
    ),
]


@pytest.mark.parametrize(("spec", "expected"), [c[1:] for c in EXCLUSIONS], ids=[c[0] for c in EXCLUSIONS])
def test_container_exclusions(spec: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    """Fields that cannot go together on a container are refused, at the field that conflicts."""
    assert errors(document("Container", {"image": "busybox", **spec})) == sorted(expected)


SENSITIVE_SOURCES = [
    "/",
    "//",
    "/etc",
    "/etc/",
    "/etc/ssl/private",
    "/proc",
    "/proc/sys",
    "/sys",
    "/dev",
    "/dev/sda",
    "/boot",
    "/root",
    "/root/.ssh",
    "/var/run/docker.sock",
    "/run/docker.sock",
    "/var/lib/docker",
    "/var/lib/docker/volumes",
    "/var",
    "/var/lib",
    "/var/run",
    "/run",
]


@pytest.mark.parametrize("source", SENSITIVE_SOURCES)
def test_sensitive_bind_source_needs_opt_in(source: str) -> None:
    """A bind of a sensitive host path (or a parent that exposes one) needs allowSensitive: true."""
    mount = {"type": "bind", "source": source, "target": "/host"}
    assert errors(document("Container", {"image": "b", "mounts": [mount]})) == [("spec.mounts.0", "required")]
    refused = {**mount, "allowSensitive": False}
    assert errors(document("Container", {"image": "b", "mounts": [refused]})) == [
        ("spec.mounts.0.allowSensitive", "const")
    ]
    allowed = {**mount, "allowSensitive": True}
    assert errors(document("Container", {"image": "b", "mounts": [allowed]})) == []


@pytest.mark.parametrize(
    "source", ["/srv/app", "/var/log", "/var/lib/docker2", "/etcetera", "/devices", "/rootfs", "/run/user/1000"]
)
def test_ordinary_bind_source_needs_no_opt_in(source: str) -> None:
    """Paths that only look like sensitive ones are ordinary bind sources."""
    mount = {"type": "bind", "source": source, "target": "/host"}
    assert errors(document("Container", {"image": "b", "mounts": [mount]})) == []


# ----------------------------------------------------------------------------------- the envelope

ENVELOPE_CASES: list[tuple[str, dict[str, Any], list[tuple[str, str]]]] = [
    ("api-version", {"apiVersion": "reconciler/v2"}, [("apiVersion", "const")]),
    ("kind-mismatch", {"kind": "Volume"}, [("kind", "const")]),
    ("no-metadata", {"metadata": None}, [("", "required")]),
    ("metadata-string", {"metadata": "web"}, [("metadata", "type")]),
    ("no-name", {"metadata": {"labels": {}}}, [("metadata", "required")]),
    ("name-pattern", {"metadata": {"name": "-web"}}, [("metadata.name", "pattern")]),
    ("name-too-long", {"metadata": {"name": "a" * 64}}, [("metadata.name", "pattern")]),
    ("name-one-char", {"metadata": {"name": "w"}}, [("metadata.name", "minLength")]),
    (
        "reserved-label",
        {"metadata": {"name": "web", "labels": {"io.reconciler.project": "x"}}},
        [("metadata.labels", "not")],
    ),
    ("label-number", {"metadata": {"name": "web", "labels": {"tier": 1}}}, [("metadata.labels.tier", "type")]),
    ("metadata-extra", {"metadata": {"name": "web", "annotations": {}}}, [("metadata", "additionalProperties")]),
    ("document-extra", {"status": {}}, [("", "additionalProperties")]),
]


@pytest.mark.parametrize(("change", "expected"), [c[1:] for c in ENVELOPE_CASES], ids=[c[0] for c in ENVELOPE_CASES])
def test_envelope_errors(change: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    """apiVersion, kind and metadata are checked the same way for every kind (shown on Container)."""
    doc = document("Container", {"image": "busybox"})
    doc.update(change)
    doc = {k: v for k, v in doc.items() if v is not None}  # None: the key is left out
    assert errors(doc, kind="Container") == sorted(expected)


@pytest.mark.parametrize("kind", KINDS)
def test_label_rules_are_the_same_for_every_kind(kind: str) -> None:
    """Every kind refuses reserved label keys and accepts a 63-character name."""
    spec = {
        "Image": {"reference": "b"},
        "Volume": {},
        "Network": {},
        "Container": {"image": "b"},
        "FirewallAllowList": {"interfaces": ["eth0"]},
        "Host": {"engine": "unix:///run/docker.sock"},
        "Service": {"image": "b"},
        "Secret": {"file": "./s"},
        "Config": {"file": "./c"},
    }[kind]
    good = document(kind, spec, name="a" * 63)
    assert errors(good) == []
    bad = document(kind, spec)
    bad["metadata"]["labels"] = {"io.reconciler.kind": "x", "ok": "y"}
    assert errors(bad) == [("metadata.labels", "not")]


@pytest.mark.parametrize("name", ["bridge", "host", "none"])
def test_builtin_network_names_cannot_be_declared(name: str) -> None:
    """The engine's built-in networks are never declared as Network manifests."""
    assert errors(document("Network", {}, name=name)) == [("metadata.name", "not")]


# -------------------------------------------------------------- additionalProperties at every level

# One document per kind using every field; free-form maps (labels, env, args, options) are skipped below.
FULL: dict[str, dict[str, Any]] = {
    "Image": {
        "reference": "127.0.0.1:5000/web:1",
        "pullPolicy": "Always",
        "build": {"context": ".", "dockerfile": "Dockerfile", "args": {"A": "1"}, "target": "t"},
        "push": True,
    },
    "Volume": {"driver": "local", "driverOpts": {"type": "tmpfs"}, "reclaimPolicy": "Delete"},
    "Network": {
        "driver": "overlay",
        "internal": True,
        "attachable": True,
        "enableIPv6": False,
        "ipam": {
            "driver": "default",
            "config": [{"subnet": "10.1.0.0/24", "gateway": "10.1.0.1", "ipRange": "10.1.0.0/25"}],
        },
        "options": {"a": "b"},
    },
    "Container": {
        **yaml.safe_load(CONTRACT_CONTAINER)["spec"],
        "sensitiveEnv": ["LOG_LEVEL"],
        "resources": {
            "memory": "1g",
            "memorySwap": "2g",
            "memoryReservation": "512m",
            "cpus": 1,
            "cpuShares": 512,
            "pidsLimit": 9,
        },
        "restartPolicy": {"name": "on-failure", "maximumRetryCount": 2},
        "dependsOn": [{"name": "db", "condition": "healthy", "timeout": "30s"}],
        "mounts": [
            {"type": "volume", "source": "data", "target": "/data", "readOnly": False},
            {"type": "bind", "source": "/srv", "target": "/srv", "readOnly": True, "allowSensitive": False},
            {"type": "tmpfs", "target": "/tmp", "size": "64m", "mode": "1777"},
        ],
    },
    "FirewallAllowList": yaml.safe_load(CONTRACT_FIREWALL)["spec"],
}
FREE_FORM = {"env", "args", "driverOpts", "options", "labels"}


def _object_paths(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(node, dict):
        if not path or path[-1] not in FREE_FORM:
            yield path
        for key, value in node.items():
            yield from _object_paths(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _object_paths(value, (*path, i))


def _unknown_field_cases() -> list[tuple[str, tuple[Any, ...]]]:
    cases = []
    for kind, spec in FULL.items():
        doc = document(kind, spec)
        doc["metadata"]["labels"] = {"tier": "front"}
        cases.extend((kind, path) for path in _object_paths(doc))
    return cases


UNKNOWN_FIELD_CASES = _unknown_field_cases()


def test_full_documents_are_valid() -> None:
    """The all-fields documents used for the unknown-field cases are valid as written."""
    for kind, spec in FULL.items():
        assert errors(document(kind, spec)) == [], kind


@pytest.mark.parametrize(
    ("kind", "path"), UNKNOWN_FIELD_CASES, ids=[f"{k}:{'.'.join(map(str, p)) or '/'}" for k, p in UNKNOWN_FIELD_CASES]
)
def test_unknown_field_is_refused_at_every_level(kind: str, path: tuple[Any, ...]) -> None:
    """A misspelt or unknown key is an error at every nesting level, never silently ignored."""
    doc = document(kind, copy.deepcopy(FULL[kind]))
    doc["metadata"]["labels"] = {"tier": "front"}
    target: Any = doc
    for part in path:
        target = target[part]
    target["bogusField"] = 1
    assert errors(doc) == [(".".join(map(str, path)), "additionalProperties")]


def test_unknown_field_cases_cover_every_nested_object() -> None:
    """The generated cases reach the deepest objects (mount items, ipam pools, dependsOn items)."""
    paths = {(k, ".".join(map(str, p))) for k, p in UNKNOWN_FIELD_CASES}
    for expected in [
        ("Container", "spec.mounts.2"),
        ("Container", "spec.healthcheck"),
        ("Container", "spec.resources"),
        ("Container", "spec.restartPolicy"),
        ("Container", "spec.dependsOn.0"),
        ("Container", "spec.networks.0"),
        ("Container", "spec.ports.0"),
        ("Network", "spec.ipam.config.0"),
        ("Image", "spec.build"),
        ("FirewallAllowList", "spec.ports.0"),
        ("Volume", "metadata"),
        ("Volume", ""),
    ]:
        assert expected in paths


# ------------------------------------------------------------------------------------ the reference docs

DOCS = Path(__file__).resolve().parents[2] / "docs" / "manifests.md"


def _property_names(node: Any) -> Iterator[str]:
    for _, sub in _subschemas(node):
        yield from sub.get("properties", {})


@pytest.mark.parametrize("kind", KINDS)
def test_reference_docs_name_every_field(kind: str) -> None:
    """docs/manifests.md has a section for each kind that names every field its schema declares."""
    text = DOCS.read_text()
    assert f"\n## {kind}\n" in text
    section = text.split(f"\n## {kind}\n", 1)[1].split("\n## ", 1)[0]
    names = set(_property_names(SCHEMAS[f"{kind}.schema.json"]["properties"]["spec"]))
    if kind == "Container":
        names |= set(_property_names(SCHEMAS["Container.schema.json"]["$defs"]))
    forms = ("`{}`", "`{}.", ".{}`", "`{}[")  # the name alone, or as the head or tail of a dotted path
    missing = sorted(n for n in names if not any(f.format(n) in section for f in forms))
    assert missing == []
