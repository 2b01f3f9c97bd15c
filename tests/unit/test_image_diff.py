"""Image normalization and diff without an engine: every pull policy and build case -> its one change."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.contract import DriverContext
from reconciler.drivers.image.driver import ABSENT, BUILT, FOREIGN, PULLED, ImageDriver
from reconciler.drivers.image.spec import LABEL_BUILD_INPUTS, LABEL_INPUT_HASH, build_labels
from reconciler.errors import SpecError
from reconciler.model import LABEL_PROJECT, LABEL_SPEC_HASH, Action, Observed, Resource, Source

REF = "127.0.0.1:5000/t/app:1"
LOCAL = "sha256:" + "1" * 64
REMOTE = "sha256:" + "2" * 64


def image_resource(tmp_path: Path, spec: dict, labels: dict | None = None, file: str = "m/app.yaml") -> Resource:
    path = tmp_path / file
    path.parent.mkdir(parents=True, exist_ok=True)
    return Resource("Image", "app", spec, labels or {}, Source(file, 1, path), {})


@pytest.fixture
def driver(tmp_path: Path) -> ImageDriver:
    return ImageDriver(DriverContext("p", tmp_path))


@pytest.fixture
def context(tmp_path: Path) -> Path:
    ctx = tmp_path / "m" / "ctx"
    ctx.mkdir(parents=True)
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY a /a\n")
    (ctx / "a").write_text("a\n")
    return ctx


def observed(owner: str, labels: dict | None = None, **spec: object) -> Observed:
    full = {
        "reference": REF,
        "owner": owner,
        "localDigest": LOCAL,
        "remoteDigest": None,
        "registryError": None,
        "previous": {},
        **spec,
    }
    return Observed("Image", "app", "sha256:" + "9" * 64, labels or {}, full, raw={"imageLabels": labels or {}})


def test_defaults_and_canonical_reference(driver: ImageDriver, tmp_path: Path) -> None:
    """Omitted defaults equal explicit ones (same spec hash); pullPolicy does not feed the hash."""
    bare = driver.normalize(image_resource(tmp_path, {"reference": "127.0.0.1:5000/t/app"}))
    explicit = driver.normalize(
        image_resource(tmp_path, {"reference": "127.0.0.1:5000/t/app:latest", "pullPolicy": "IfNotPresent"})
    )
    always = driver.normalize(image_resource(tmp_path, {"reference": "127.0.0.1:5000/t/app", "pullPolicy": "Always"}))
    assert bare.spec == explicit.spec and bare.spec_hash == explicit.spec_hash == always.spec_hash
    assert bare.spec["reference"] == "127.0.0.1:5000/t/app:latest" and bare.spec["build"] is None


def test_build_context_is_resolved_and_hashed(driver: ImageDriver, tmp_path: Path, context: Path) -> None:
    """The context is relative to the manifest file; its input hash is part of the spec and of the spec hash."""
    res = image_resource(tmp_path, {"reference": REF, "build": {"context": "./ctx"}})
    first = driver.normalize(res)
    assert first.spec["build"]["context"] == str(context)
    assert first.spec["build"]["inputHash"].startswith("sha256:")
    (context / "a").write_text("b\n")
    second = driver.normalize(res)
    assert second.spec["build"]["inputHash"] != first.spec["build"]["inputHash"]
    assert second.spec_hash != first.spec_hash


@pytest.mark.parametrize(
    ("build", "field", "message"),
    [
        ({"context": "./nope"}, "spec.build.context", "does not exist"),
        ({"context": "./ctx", "dockerfile": "Other.Dockerfile"}, "spec.build.dockerfile", "not found"),
    ],
)
def test_bad_build_inputs_are_spec_errors(
    driver: ImageDriver, tmp_path: Path, context: Path, build: dict, field: str, message: str
) -> None:
    """A missing context or Dockerfile is a validation problem on its field."""
    with pytest.raises(SpecError) as err:
        driver.normalize(image_resource(tmp_path, {"reference": REF, "build": build}))
    assert err.value.field == field and message in err.value.message


def test_context_outside_the_manifest_directory_needs_the_opt_in(tmp_path: Path) -> None:
    """A context reached through `..` outside the manifest directory is refused unless
    `build.allowExternalContext: true`; with it, the change carries a note."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "Dockerfile").write_text("FROM scratch\n")
    driver = ImageDriver(DriverContext("p", tmp_path / "m"))
    with pytest.raises(SpecError) as err:
        driver.normalize(image_resource(tmp_path, {"reference": REF, "build": {"context": "../outside"}}))
    assert err.value.field == "spec.build.context" and "allowExternalContext" in err.value.message
    build = {"context": "../outside", "allowExternalContext": True}
    desired = driver.normalize(image_resource(tmp_path, {"reference": REF, "build": build}))
    change = driver.diff(desired, None)
    assert change.action is Action.CREATE
    assert any("outside the manifest directory" in n for n in change.notes)


def pull_desired(driver: ImageDriver, tmp_path: Path, policy: str, reference: str = REF):
    return driver.normalize(image_resource(tmp_path, {"reference": reference, "pullPolicy": policy}))


@pytest.mark.parametrize(
    ("policy", "obs", "action", "blocked"),
    [
        ("IfNotPresent", observed(ABSENT), Action.CREATE, None),
        ("IfNotPresent", observed(FOREIGN, remoteDigest=REMOTE), Action.NONE, None),
        ("Always", observed(PULLED, remoteDigest=LOCAL), Action.NONE, None),
        ("Always", observed(PULLED, remoteDigest=REMOTE), Action.REPLACE, None),
        ("Never", observed(ABSENT), Action.CREATE, "pullPolicy is Never"),
        ("Never", observed(FOREIGN), Action.NONE, None),
        ("IfNotPresent", observed(ABSENT, registryError="tag '1' not found"), Action.CREATE, "not found"),
        ("Always", observed(PULLED, registryError="registry x is unreachable"), Action.NONE, "unreachable"),
    ],
)
def test_pull_policies(
    driver: ImageDriver, tmp_path: Path, policy: str, obs: Observed, action: Action, blocked: str | None
) -> None:
    """IfNotPresent pulls only when absent, Always when the registry digest moved, Never never (absent = error)."""
    change = driver.diff(pull_desired(driver, tmp_path, policy), obs)
    assert change.action is action
    if blocked is None:
        assert change.blocked is None
    else:
        assert change.blocked is not None and blocked in change.blocked
    if action is Action.REPLACE:
        assert [f.path for f in change.fields] == ["digest"] and change.pending  # containers follow a re-pull


def test_digest_reference_is_never_rechecked(driver: ImageDriver, tmp_path: Path) -> None:
    """A reference pinned by digest cannot move: Always does not ask the registry again."""
    desired = pull_desired(driver, tmp_path, "Always", "127.0.0.1:5000/t/app@" + LOCAL)
    assert driver.diff(desired, observed(PULLED, remoteDigest=REMOTE)).action is Action.NONE


def built_labels(desired, project: str = "p") -> dict:
    return {LABEL_PROJECT: project, "io.reconciler.kind": "Image", LABEL_SPEC_HASH: desired.spec_hash,
            **build_labels(desired)}  # fmt: skip


def test_build_in_sync_rebuild_and_fields(driver: ImageDriver, tmp_path: Path, context: Path) -> None:
    """Same inputs: in sync. Changed context/args: one REPLACE naming each changed input."""
    res = image_resource(tmp_path, {"reference": REF, "build": {"context": "./ctx", "args": {"V": "1"}}})
    desired = driver.normalize(res)
    labels = built_labels(desired)
    assert driver.diff(desired, observed(BUILT, labels)).action is Action.NONE
    (context / "a").write_text("changed\n")
    res2 = image_resource(tmp_path, {"reference": REF, "build": {"context": "./ctx", "args": {"V": "2"}}})
    change = driver.diff(driver.normalize(res2), observed(BUILT, labels))
    assert change.action is Action.REPLACE and change.pending
    assert [f.path for f in change.fields] == ["build.context", "build.args"]
    assert change.steps == (f"build {REF}",)


def test_build_over_an_unlabelled_image_and_over_another_project(driver: ImageDriver, tmp_path: Path, context: Path):
    """An image nobody labelled is rebuilt over (it keeps its ID); another project's build blocks the change."""
    desired = driver.normalize(image_resource(tmp_path, {"reference": REF, "build": {"context": "./ctx"}}))
    foreign = driver.diff(desired, observed(FOREIGN, {"maintainer": "x"}))
    assert foreign.action is Action.REPLACE and foreign.blocked is None
    assert any("never removed" in n for n in foreign.notes)
    other = driver.diff(desired, observed(FOREIGN, built_labels(desired, project="other")))
    assert other.blocked is not None and "project 'other'" in other.blocked


def test_push_only_when_the_registry_lacks_the_build(driver: ImageDriver, tmp_path: Path, context: Path) -> None:
    """push: an UPDATE (no new image, so containers need not follow) when the registry digest differs."""
    desired = driver.normalize(
        image_resource(tmp_path, {"reference": REF, "push": True, "build": {"context": "./ctx"}})
    )
    labels = built_labels(desired)
    pushed = driver.diff(desired, observed(BUILT, labels, remoteDigest=LOCAL))
    assert pushed.action is Action.NONE
    missing = driver.diff(desired, observed(BUILT, labels, registryError="tag '1' not found in repository"))
    assert missing.action is Action.UPDATE and missing.steps == (f"push {REF}",)


def test_label_change_rebuilds(driver: ImageDriver, tmp_path: Path, context: Path) -> None:
    """metadata.labels are baked into a built image: a new label means a rebuild."""
    desired = driver.normalize(image_resource(tmp_path, {"reference": REF, "build": {"context": "./ctx"}}))
    labels = built_labels(desired)
    relabelled = driver.normalize(
        image_resource(tmp_path, {"reference": REF, "build": {"context": "./ctx"}}, labels={"tier": "web"})
    )
    change = driver.diff(relabelled, observed(BUILT, labels))
    assert change.action is Action.REPLACE and [f.path for f in change.fields] == ["labels"]


def test_old_reference_of_the_same_manifest_is_removed(driver: ImageDriver, tmp_path: Path) -> None:
    """A changed reference removes the old owned tag as a step, also when the new one is already in sync."""
    desired = pull_desired(driver, tmp_path, "IfNotPresent")
    change = driver.diff(desired, observed(FOREIGN, previous={"127.0.0.1:5000/t/app:0": PULLED}))
    assert change.action is Action.UPDATE
    assert change.steps == ("remove tag 127.0.0.1:5000/t/app:0",)


def test_unreadable_label_json_falls_back_to_the_total_hash(driver: ImageDriver, tmp_path: Path, context: Path):
    """An image whose input labels are damaged still compares by the total input hash."""
    desired = driver.normalize(image_resource(tmp_path, {"reference": REF, "build": {"context": "./ctx"}}))
    labels = {**built_labels(desired), LABEL_BUILD_INPUTS: "{bad", LABEL_INPUT_HASH: "sha256:old"}
    change = driver.diff(desired, observed(BUILT, labels))
    assert [f.path for f in change.fields] == ["build.inputHash"]


def test_planner_lets_a_foreign_image_be_used(driver: ImageDriver, tmp_path: Path) -> None:
    """An image of the declared reference that the project does not own is not a name clash (claims_names)."""
    from reconciler.core.catalog import build_catalog
    from reconciler.core.planner import plan_changes

    res = image_resource(tmp_path, {"reference": REF})
    catalog, problems = build_catalog([res], {"Image": driver})
    assert problems == []
    plan = plan_changes(catalog, {"Image": driver}, "p", {"Image": {"app": observed(FOREIGN, {"x": "y"})}})
    [change] = plan.changes
    assert change.blocked is None and change.action is Action.NONE and plan.in_sync
