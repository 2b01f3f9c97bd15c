"""The field tables (Container: reconciler/drivers/container/fields.py, Service: reconciler/drivers/swarm/fields.py)
against their JSON Schemas: every manifest key of the schema (below `spec` and `metadata`) is made into a row or
listed in the table's NOT_FIELDS with why, and every row names only keys the schema has. The fields both kinds
share are built from the same rows (reconciler/drivers/engine/fields.py).

The Container table's own columns are checked in test_container_fields.py; the Service table's here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from reconciler.core.manifests import load_directory
from reconciler.drivers.container import fields as container_fields
from reconciler.drivers.engine import fields as engine_fields
from reconciler.drivers.engine.fields import Shared
from reconciler.drivers.swarm import fields as service_fields
from reconciler.drivers.swarm.apply import endpoint_spec, service_spec, task_template
from reconciler.drivers.swarm.observe import observed_service
from reconciler.drivers.swarm.spec import normalize_service

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
SWARM_FIXTURES = Path(__file__).resolve().parent / "swarm_fixtures"

# the rows both kinds share (every Shared of engine/fields.py)
SHARED = [value for value in vars(engine_fields).values() if isinstance(value, Shared)]
TABLES = {
    "Container": (container_fields.FIELDS, container_fields.NOT_FIELDS),
    "Service": (service_fields.FIELDS, service_fields.NOT_FIELDS),
}


def schema_keys(kind: str) -> set[str]:
    """Every manifest key of a `kind` document below `spec` and `metadata` (common's metadata, and any the kind
    adds or narrows)."""
    schema = json.loads((SCHEMAS / f"{kind}.schema.json").read_text())
    common = json.loads((SCHEMAS / "common.schema.json").read_text())
    spec = {f"spec.{k}" for k in schema["properties"]["spec"]["properties"]}
    metadata = schema["properties"]["metadata"]
    assert metadata["$ref"] == "common.schema.json#/$defs/metadata"
    names = set(common["$defs"]["metadata"]["properties"]) | set(metadata.get("properties") or {})
    return spec | {f"metadata.{k}" for k in names}


def manifest_keys(rows: Any) -> set[str]:
    return {key for row in rows for key in row.manifest}


@pytest.mark.parametrize("kind", TABLES)
def test_every_manifest_key_is_a_field_or_said_not_to_be(kind: str) -> None:
    rows, not_fields = TABLES[kind]
    missing = schema_keys(kind) - manifest_keys(rows) - set(not_fields)
    assert not missing, f"{kind}: manifest keys no row is made from (add a row, or to NOT_FIELDS with why): {missing}"


@pytest.mark.parametrize("kind", TABLES)
def test_no_row_names_a_key_the_schema_does_not_have(kind: str) -> None:
    rows, not_fields = TABLES[kind]
    assert not manifest_keys(rows) - schema_keys(kind)
    assert not set(not_fields) - schema_keys(kind)
    assert not set(not_fields) & manifest_keys(rows), "a key is either made into a row or not a field"
    assert all(not_fields.values()), "say why each one is not a field"


@pytest.mark.parametrize("kind", TABLES)
def test_keys_are_unique(kind: str) -> None:
    rows, _ = TABLES[kind]
    assert len({row.key for row in rows}) == len(rows)


def test_the_shared_rows() -> None:
    assert {shared.key for shared in SHARED} == {
        "image",
        "command",
        "entrypoint",
        "env",
        "user",
        "workingDir",
        "hostname",
    }


@pytest.mark.parametrize("shared", SHARED, ids=lambda shared: shared.key)
def test_shared_fields_are_the_same_rows_in_both_tables(shared: Shared) -> None:
    """A field both kinds have with one meaning is made the same way in both (one normalizer)."""
    for kind, (rows, _) in TABLES.items():
        [row] = [row for row in rows if row.key == shared.key]
        assert (row.manifest, row.normalize, row.normalize_first) == (
            shared.manifest,
            shared.normalize,
            shared.normalize_first,
        ), kind


# --- the Service table's columns --------------------------------------------------------------------------------


@pytest.mark.parametrize("row", service_fields.FIELDS, ids=lambda row: row.key)
def test_service_row_is_complete(row: service_fields.ServiceField) -> None:
    assert row.manifest, "name the manifest keys the field is made from"
    assert row.part in ("task", "endpoint", "service")
    assert row.write is not None or row.doc, "a field no writer writes says which row writes it"


def full_service() -> Any:
    resources, problems = load_directory(SWARM_FIXTURES / "full")
    assert problems == []
    [service] = [r for r in resources if r.kind == "Service"]
    return normalize_service(service)


def test_the_walkers_cover_the_table() -> None:
    """normalize keeps one key per row with a normalizer, in table order; observe reads every row; what apply
    writes reads back as the spec (each row's writer and reader agree)."""
    desired = full_service()
    assert list(desired.spec) == [row.key for row in service_fields.FIELDS if row.normalize is not None]
    ids = {ref["name"]: (f"id-{ref['name']}", ref["name"]) for ref in desired.spec["secrets"] + desired.spec["configs"]}
    template = task_template(desired.spec, desired.spec["image"], ids, ids)
    labels = dict(desired.resource.labels)
    body = service_spec(desired.name, desired.spec, labels, template, endpoint_spec(desired.spec))
    spec, _ = observed_service({"ID": "x", "Spec": body}, {}, {}, {})
    assert list(spec) == [row.key for row in service_fields.FIELDS]
    assert spec == {**desired.spec, "labels": labels}


def test_rolling_is_the_part_a_field_lives_in() -> None:
    """Fields of the task template or the endpoint roll tasks; the service's own (replicas, labels, update and
    rollback config, mode) do not."""
    service_only = {row.key for row in service_fields.FIELDS if not row.rolls}
    assert service_only == {"mode", "replicas", "update", "rollback", "labels"}
    assert service_fields.rolls_tasks("env.A") and service_fields.rolls_tasks("secrets.db")
    assert not service_fields.rolls_tasks("update.delay") and not service_fields.rolls_tasks("nonsense")
