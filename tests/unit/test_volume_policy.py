"""Recorded reclaim policies: bound to the volume they were made for; unreadable means Retain."""

from __future__ import annotations

from reconciler.drivers.volume.policy import VolumePolicies
from reconciler.drivers.volume.spec import LABEL_INSTANCE


def test_record_applies_to_the_same_volume_only(tmp_path, monkeypatch) -> None:
    """A recorded policy wins over the label for that volume, not for a later volume of the same name."""
    monkeypatch.setenv("RECONCILER_STATE_DIR", str(tmp_path))
    policies = VolumePolicies("p")
    policies.record("data", {"CreatedAt": "2026-01-01T00:00:00Z"}, "Retain")
    records = policies.load()
    assert policies.effective({"Name": "data", "CreatedAt": "2026-01-01T00:00:00Z"}, records, "Delete") == "Retain"
    assert policies.effective({"Name": "data", "CreatedAt": "2026-02-02T00:00:00Z"}, records, "Delete") == "Retain"
    policies.record("data", {"CreatedAt": "2026-02-02T00:00:00Z"}, "Delete")
    records = policies.load()
    assert policies.effective({"Name": "data", "CreatedAt": "2026-02-02T00:00:00Z"}, records, "Delete") == "Delete"
    policies.forget("data")
    assert policies.load() == {}


def test_unreadable_record_means_retain(tmp_path, monkeypatch) -> None:
    """When the record cannot be read, every volume counts as Retain, and recording refuses to overwrite it."""
    monkeypatch.setenv("RECONCILER_STATE_DIR", str(tmp_path))
    policies = VolumePolicies("p")
    policies.path.parent.mkdir(parents=True)
    policies.path.write_text("{not json")
    assert policies.load() is None
    assert policies.effective({"Name": "x", "CreatedAt": "t"}, None, "Delete") == "Retain"
    try:
        policies.record("x", {"CreatedAt": "t"}, "Delete")
    except OSError as exc:
        assert "cannot be read" in str(exc)
    else:
        raise AssertionError("record overwrote an unreadable file")


def test_a_delete_label_without_its_record_means_retain(tmp_path, monkeypatch) -> None:
    """The record file gone (another state dir, a wiped disk): a Delete label alone never lets a volume go."""
    monkeypatch.setenv("RECONCILER_STATE_DIR", str(tmp_path))
    policies = VolumePolicies("p")
    assert policies.load() == {}
    assert policies.effective({"Name": "x", "CreatedAt": "t"}, {}, "Delete") == "Retain"
    assert policies.effective({"Name": "x", "CreatedAt": "t"}, {}, "Retain") == "Retain"


def test_a_volume_reconcile_created_is_known_by_its_instance_label_not_its_creation_time(tmp_path, monkeypatch) -> None:
    """The local driver's CreatedAt is a stat of the data directory: a tmpfs mount or a copy-up changes it. A
    volume reconcile created keeps its record however CreatedAt moves, and a new volume of the name does not."""
    monkeypatch.setenv("RECONCILER_STATE_DIR", str(tmp_path))
    policies = VolumePolicies("p")
    created = {"Name": "data", "CreatedAt": "2026-01-01T00:00:00Z", "Labels": {LABEL_INSTANCE: "a1"}}
    policies.record("data", created, "Delete")
    records = policies.load()
    mounted = {**created, "CreatedAt": "2026-01-01T00:00:05Z"}
    assert policies.effective(mounted, records, "Retain") == "Delete"
    recreated = {**created, "Labels": {LABEL_INSTANCE: "b2"}}
    assert policies.effective(recreated, records, "Retain") == "Retain"
    unlabelled = {"Name": "data", "CreatedAt": "2026-01-01T00:00:00Z"}
    assert policies.effective(unlabelled, records, "Retain") == "Retain"
