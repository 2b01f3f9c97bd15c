"""Several -f files merged as docker compose merges them."""

from __future__ import annotations

from reconciler.compose.merging import merge_files, normalize_file, settle
from reconciler.compose.source import parse_compose


def merged(*texts: str):
    return settle(merge_files([normalize_file(parse_compose(t, f"f{i}.yml")) for i, t in enumerate(texts)]))


def test_mappings_merge_and_list_forms_are_normalized_first():
    """environment as a list in one file and a mapping in the other merge key by key."""
    top = merged(
        "services:\n  a:\n    image: x\n    environment: [A=1, B=2]\n",
        "services:\n  a:\n    environment: {B: '3', C: '4'}\n",
    )
    env = top["services"]["a"]["environment"]
    assert env == {"A": "1", "B": "3", "C": "4"}
    assert env.at("B").file == "f1.yml"


def test_command_entrypoint_and_healthcheck_test_are_replaced():
    """Shell commands are overridden, not appended."""
    top = merged(
        "services:\n  a:\n    command: [a, b]\n    healthcheck: {test: [CMD, x], interval: 1s}\n",
        "services:\n  a:\n    command: [c]\n    healthcheck: {test: [CMD, y]}\n",
    )
    service = top["services"]["a"]
    assert service["command"] == ["c"]
    assert service["healthcheck"] == {"test": ["CMD", "y"], "interval": "1s"}


def test_unique_resources_merge_by_their_key():
    """ports by (ip, target, published, protocol), volumes by target; other lists append without duplicates."""
    top = merged(
        "services:\n  a:\n    ports: ['80:80', '443']\n    volumes: ['d:/data', '/x:/etc/x']\n    dns: [a, b]\n",
        "services:\n  a:\n    ports: ['80:80', '81:81']\n    volumes: ['e:/data']\n    dns: [b, c]\n",
    )
    service = top["services"]["a"]
    assert [(p.get("published"), p["target"]) for p in service["ports"]] == [(None, "443"), ("80", "80"), ("81", "81")]
    assert [(v["source"], v["target"]) for v in service["volumes"]] == [("/x", "/etc/x"), ("e", "/data")]
    assert service["dns"] == ["a", "b", "c"]


def test_reset_removes_and_override_replaces():
    """`!reset` drops what earlier files said; `!override` replaces instead of merging."""
    top = merged(
        "services:\n  a:\n    labels: {x: '1'}\n    environment: {A: '1', B: '2'}\n",
        "services:\n  a:\n    labels: !reset {}\n    environment: !override {C: '3'}\n",
    )
    assert "labels" not in top["services"]["a"]
    assert top["services"]["a"]["environment"] == {"C": "3"}


def test_new_services_and_sections_are_added():
    """An override may add services and top-level objects."""
    top = merged("services:\n  a: {image: x}\n", "services:\n  b: {image: y}\nvolumes:\n  v: {}\n")
    assert set(top["services"]) == {"a", "b"} and "v" in top["volumes"]


def test_tags_in_a_single_file_settle():
    """`!reset` with nothing to reset removes the key; `!override` with nothing to override is the value."""
    top = merged("services:\n  a:\n    image: x\n    labels: !reset {}\n    environment: !override {A: '1'}\n")
    assert "labels" not in top["services"]["a"]
    assert top["services"]["a"]["environment"] == {"A": "1"}
