"""Bind mounts of `.age` files (issue 22, item 6), the pure parts and the run directory: the source becomes the
plaintext's path (stable, keyed by the plaintext), written 0600 on a tmpfs and removed with its container; a run
directory that is no tmpfs, a missing identity, an engine of another machine and a Service are refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reconciler.core.agefiles import AgeOptions
from reconciler.core.plugins import engine_class
from reconciler.core.project import ProjectRunner
from reconciler.drivers.container import agemounts
from reconciler.drivers.container.agemounts import AgeMounts, PlaintextDir, file_system_type, write_private
from reconciler.drivers.container.spec import normalize_container
from reconciler.errors import PermanentError, SpecError
from reconciler.model import Action, Change, FieldChange, Observed, Resource, Source, mask
from tests.agekeys import encrypt, keygen

MOUNTINFO = """\
22 1 253:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
25 22 0:23 / /run rw,nosuid shared:5 - tmpfs tmpfs rw,size=1024k
26 25 0:24 / /run/user/1000 rw - tmpfs tmpfs rw
27 22 0:25 / /srv/my\\040data rw - xfs /dev/vdb rw
28 22 0:26 / /srv/my\\040data/ram rw - ramfs ramfs rw
"""


def test_the_file_system_of_a_path_is_its_longest_mount_point() -> None:
    assert file_system_type("/run/reconciler/mounts/p", MOUNTINFO) == "tmpfs"
    assert file_system_type("/run", MOUNTINFO) == "tmpfs"
    assert file_system_type("/runner/x", MOUNTINFO) == "ext4"  # a prefix of the name is not a parent
    assert file_system_type("/srv/my data/x", MOUNTINFO) == "xfs"  # mountinfo escapes spaces as \040
    assert file_system_type("/srv/my data/ram/x", MOUNTINFO) == "ramfs"
    stacked = MOUNTINFO + "29 25 0:27 / /run rw - ext4 /dev/vdc rw\n"
    assert file_system_type("/run/x", stacked) == "ext4"  # the last mount on a point hides the earlier ones


def test_a_run_directory_that_is_no_tmpfs_is_refused(tmp_path: Path) -> None:
    fake = f"1 0 253:0 / / rw - ext4 /dev/vda rw\n2 1 0:5 / {tmp_path} rw - tmpfs tmpfs rw\n"
    assert agemounts.memory_backed_problem(tmp_path / "not" / "made" / "yet", fake) is None
    problem = agemounts.memory_backed_problem(Path("/var/lib/x"), fake)
    assert problem is not None and "not a tmpfs (ext4)" in problem and agemounts.RUN_DIR_ENV in problem


@pytest.fixture
def on_tmpfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A run directory under tmp_path that the mount table calls a tmpfs."""
    table = tmp_path / "mountinfo"
    table.write_text(f"1 0 253:0 / / rw - ext4 /dev/vda rw\n2 1 0:5 / {tmp_path / 'run'} rw - tmpfs tmpfs rw\n")
    monkeypatch.setattr(agemounts, "MOUNTINFO", str(table))
    (tmp_path / "run").mkdir()
    return tmp_path / "run"


@pytest.fixture
def key(tmp_path: Path) -> tuple[Path, str]:
    ident = tmp_path / "key.txt"
    return ident, keygen(ident)


def container(directory: Path, mounts: str) -> Resource:
    manifest = directory / "app.yaml"
    spec = {"image": "busybox:1", "mounts": mounts}
    return Resource("Container", "app", spec, {}, Source("app.yaml", 1, manifest))


def age_mount(read_only: bool | None = None) -> list[dict[str, object]]:
    extra = {} if read_only is None else {"readOnly": read_only}
    return [{"type": "bind", "source": "./token.age", "target": "/run/secrets/token", **extra}]


def test_the_source_is_the_plaintext_path_stable_and_keyed_by_the_plaintext(
    tmp_path: Path, key: tuple[Path, str], on_tmpfs: Path
) -> None:
    ident, recipient = key
    where = PlaintextDir.of("p", "unix:///run/docker.sock", on_tmpfs)
    encrypt(recipient, "first-plaintext-value", tmp_path / "token.age")
    first = normalize_container(container(tmp_path, age_mount()), AgeOptions(str(ident)), where)
    (mount,) = first.spec["mounts"]
    assert mount["readOnly"] is True  # read-only unless the mount says otherwise
    assert Path(mount["source"]).parent == where.container_dir("app") and str(on_tmpfs) in mount["source"]
    assert "first-plaintext-value" not in repr(first.spec) + first.spec_hash
    encrypt(recipient, "first-plaintext-value", tmp_path / "token.age")  # a new ciphertext, the same plaintext
    again = normalize_container(container(tmp_path, age_mount()), AgeOptions(str(ident)), where)
    assert again.spec["mounts"] == first.spec["mounts"] and again.spec_hash == first.spec_hash
    encrypt(recipient, "second-plaintext-value", tmp_path / "token.age")
    changed = normalize_container(container(tmp_path, age_mount()), AgeOptions(str(ident)), where)
    assert changed.spec["mounts"][0]["source"] != mount["source"] and changed.spec_hash != first.spec_hash
    writable = normalize_container(container(tmp_path, age_mount(False)), AgeOptions(str(ident)), where)
    assert writable.spec["mounts"][0]["readOnly"] is False
    other_engine = PlaintextDir.of("p", "unix:///run/other.sock", on_tmpfs)
    assert other_engine.root != where.root  # two local engines of one project do not share files


def test_decrypt_problems_name_the_file_and_the_field(tmp_path: Path, key: tuple[Path, str], on_tmpfs: Path) -> None:
    _, recipient = key
    where = PlaintextDir.of("p", None, on_tmpfs)
    encrypt(recipient, "x", tmp_path / "token.age")
    with pytest.raises(SpecError) as missing:
        normalize_container(container(tmp_path, age_mount()), AgeOptions(), where)
    assert missing.value.field == "spec.mounts.0.source"
    assert f"{tmp_path / 'token.age'}: encrypted (.age) but no identity" in missing.value.message
    other = tmp_path / "other.txt"
    keygen(other)
    with pytest.raises(SpecError) as wrong:
        normalize_container(container(tmp_path, age_mount()), AgeOptions(str(other)), where)
    assert "does not decrypt" in wrong.value.message and str(tmp_path / "token.age") in wrong.value.message


def test_a_run_directory_on_a_disk_is_a_spec_error(tmp_path: Path, key: tuple[Path, str]) -> None:
    ident, recipient = key
    encrypt(recipient, "x", tmp_path / "token.age")
    disk = PlaintextDir("app-0123456789", Path("/var/lib/reconciler-not-tmpfs"))
    if agemounts.memory_backed_problem(disk.root) is None:
        pytest.fail("/var/lib is a tmpfs here: the test needs a directory on a disk")
    with pytest.raises(SpecError) as refused:
        normalize_container(container(tmp_path, age_mount()), AgeOptions(str(ident)), disk)
    assert refused.value.field == "spec.mounts.0.source" and "not a tmpfs" in refused.value.message


def test_the_plaintext_is_written_0600_and_goes_with_its_container(
    tmp_path: Path, key: tuple[Path, str], on_tmpfs: Path
) -> None:
    ident, recipient = key
    age = AgeOptions(str(ident))
    where = PlaintextDir.of("p", None, on_tmpfs)
    encrypt(recipient, "the-plaintext", tmp_path / "token.age")
    desired = normalize_container(container(tmp_path, age_mount()), age, where)
    path = Path(desired.spec["mounts"][0]["source"])
    mounts = AgeMounts(where, age)
    mounts.write(desired)
    assert path.read_bytes() == b"the-plaintext" and os.stat(path).st_mode & 0o777 == 0o600
    assert os.stat(path.parent).st_mode & 0o777 == 0o700
    (path.parent / "token-old.0123").write_text("an earlier plaintext")
    mounts.keep_only(desired)
    assert os.listdir(path.parent) == [path.name]
    encrypt(recipient, "changed-since-the-plan", tmp_path / "token.age")
    with pytest.raises(PermanentError, match="changed since the plan"):
        mounts.write(desired)
    mounts.removed("app")
    assert not path.parent.exists()


def test_an_empty_directory_in_place_of_the_file_is_replaced(tmp_path: Path) -> None:
    target = tmp_path / "d" / "token"
    target.mkdir(parents=True)
    write_private(target, b"x")
    assert target.is_file() and target.read_bytes() == b"x"


def test_directories_of_containers_that_are_gone_are_collected_once(tmp_path: Path, on_tmpfs: Path) -> None:
    where = PlaintextDir.of("p", None, on_tmpfs)
    for name in ("declared", "existing", "gone"):
        write_private(where.container_dir(name) / "f", b"x")
    mounts = AgeMounts(where, AgeOptions())
    mounts.collect()  # before observe nothing is known: nothing is collected
    assert sorted(os.listdir(where.root)) == ["declared", "existing", "gone"]
    mounts.observed([], {n: Observed("Container", n, "id", {}, {"mounts": []}) for n in ("declared", "existing")})
    mounts.collect()
    assert sorted(os.listdir(where.root)) == ["declared", "existing"]
    write_private(where.container_dir("gone") / "f", b"x")
    mounts.collect()  # once per pass
    assert (where.container_dir("gone") / "f").exists()


def test_a_missing_plaintext_of_an_unchanged_container_is_an_update(
    tmp_path: Path, key: tuple[Path, str], on_tmpfs: Path
) -> None:
    ident, recipient = key
    age = AgeOptions(str(ident))
    where = PlaintextDir.of("p", None, on_tmpfs)
    encrypt(recipient, "x", tmp_path / "token.age")
    desired = normalize_container(container(tmp_path, age_mount()), age, where)
    observed = Observed("Container", "app", "id", {}, {"mounts": desired.spec["mounts"]})
    mounts = AgeMounts(where, age)
    mounts.observed([desired], {"app": observed})
    unchanged = Change("Container", "app", Action.NONE, (), desired, observed)
    change = mounts.diff(unchanged)
    assert change.action is Action.UPDATE and change.fields[0].path == "mounts./run/secrets/token"
    assert list(change.steps) == ["write the decrypted file of /run/secrets/token"]
    mounts.write(desired)
    mounts.observed([desired], {"app": observed})
    assert mounts.diff(unchanged) is unchanged


def test_a_replace_for_a_changed_plaintext_says_so(tmp_path: Path, key: tuple[Path, str], on_tmpfs: Path) -> None:
    ident, recipient = key
    age = AgeOptions(str(ident))
    where = PlaintextDir.of("p", None, on_tmpfs)
    encrypt(recipient, "before", tmp_path / "token.age")
    before = normalize_container(container(tmp_path, age_mount()), age, where).spec["mounts"]
    encrypt(recipient, "after", tmp_path / "token.age")
    desired = normalize_container(container(tmp_path, age_mount()), age, where)
    field = FieldChange("mounts", before, desired.spec["mounts"], Action.REPLACE)
    change = AgeMounts(where, age).diff(Change("Container", "app", Action.REPLACE, (field,), desired))
    assert change.fields[0].note == "the decrypted content of /run/secrets/token changed"


FLEET = """\
apiVersion: reconciler/v1
kind: Host
metadata: {{name: {name}}}
spec: {{engine: "{engine}", default: true}}
"""


def age_manifest(directory: Path, kind: str = "Container") -> None:
    (directory / "app.yaml").write_text(
        f"apiVersion: reconciler/v1\nkind: {kind}\nmetadata: {{name: app}}\nspec:\n  image: busybox:1\n"
        "  mounts:\n    - {type: bind, source: ./token.age, target: /run/secrets/token}\n"
    )


@pytest.mark.parametrize("engine", ["tcp://10.0.0.5:2376", "ssh://root@edge.example"])
def test_a_host_of_another_machine_is_refused_at_validate(
    tmp_path: Path, key: tuple[Path, str], on_tmpfs: Path, monkeypatch: pytest.MonkeyPatch, engine: str
) -> None:
    ident, recipient = key
    monkeypatch.setenv(agemounts.RUN_DIR_ENV, str(on_tmpfs))
    tree = tmp_path / "tree"
    tree.mkdir()
    encrypt(recipient, "x", tree / "token.age")
    age_manifest(tree)
    (tree / "hosts.yaml").write_text(FLEET.format(name="edge", engine=engine))
    loaded = ProjectRunner("p", tree, options=[AgeOptions(str(ident))]).load()
    problems = [f"{p.file}:{p.line}: {p.field}: {p.message}" for p in loaded.problems]
    assert any(
        p.startswith("app.yaml:7: spec.mounts[0].source: the bind source ./token.age is decrypted")
        and "the engine of edge" in p
        for p in problems
    ), problems
    (tree / "hosts.yaml").write_text(FLEET.format(name="here", engine="unix:///run/docker.sock"))
    assert ProjectRunner("p", tree, options=[AgeOptions(str(ident))]).load().problems == []


def test_a_service_bind_mount_of_an_age_file_is_refused(tmp_path: Path) -> None:
    age_manifest(tmp_path, "Service")
    (tmp_path / "token.age").write_text("not decrypted for a service")
    problems = ProjectRunner("p", tmp_path).load().problems
    assert [(p.line, p.field) for p in problems] == [(7, "spec.mounts[0].source")]
    assert "a Service cannot bind-mount an .age file" in problems[0].message


@pytest.mark.parametrize(("engine", "refused"), [("tcp://10.0.0.5:2376", True), ("unix:///run/x.sock", False)])
def test_an_engine_of_another_machine_is_refused_at_validate(
    tmp_path: Path, key: tuple[Path, str], on_tmpfs: Path, monkeypatch: pytest.MonkeyPatch, engine: str, refused: bool
) -> None:
    """A tree without Hosts whose one engine (DOCKER_HOST, --docker-host) is not reached through this machine."""
    ident, recipient = key
    monkeypatch.setenv(agemounts.RUN_DIR_ENV, str(on_tmpfs))
    tree = tmp_path / "tree"
    tree.mkdir()
    encrypt(recipient, "x", tree / "token.age")
    age_manifest(tree)
    runner = ProjectRunner("p", tree, options=[AgeOptions(str(ident))], engine=engine_class().for_host(engine, None))
    problems = [(p.line, p.field, p.message) for p in runner.load().problems]
    if not refused:
        assert problems == []
        return
    ((line, field, message),) = problems
    assert (line, field) == (7, "spec.mounts[0].source")
    assert f"the engine of {engine} (reached over tcp) cannot see" in message


def test_a_crashed_container_printing_its_mounted_secret_is_masked(
    tmp_path: Path, key: tuple[Path, str], on_tmpfs: Path
) -> None:
    """The plaintext written this pass is among the values masked in the container's output tail."""
    ident, recipient = key
    age = AgeOptions(str(ident))
    where = PlaintextDir.of("p", None, on_tmpfs)
    encrypt(recipient, "-----BEGIN KEY-----\nc2VjcmV0LWtleS1ieXRlcw==\n}\n", tmp_path / "token.age")
    desired = normalize_container(container(tmp_path, age_mount()), age, where)
    mounts = AgeMounts(where, age)
    assert mounts.secret_values("app") == []
    mounts.write(desired)
    printed = "loading -----BEGIN KEY-----\nkey c2VjcmV0LWtleS1ieXRlcw== is bad }"
    shown = mask(printed, mounts.secret_values("app"))
    assert "c2VjcmV0LWtleS1ieXRlcw==" not in shown and "BEGIN KEY" not in shown and shown.endswith("is bad }")


def test_without_a_configured_run_dir_a_host_whose_run_is_on_disk_uses_dev_shm(tmp_path, monkeypatch) -> None:
    """Some hosts keep /run on disk: the default falls back to /dev/shm when that is a tmpfs, and stays /run
    (refused with the reason) when neither is."""
    from reconciler.drivers.container import agemounts

    monkeypatch.delenv(agemounts.RUN_DIR_ENV, raising=False)
    mountinfo = tmp_path / "mountinfo"
    monkeypatch.setattr(agemounts, "MOUNTINFO", str(mountinfo))
    cases = {
        "tmpfs": ("/run/reconciler", "25 1 0:23 / /run rw - tmpfs tmpfs rw\n"),
        "ext4": ("/dev/shm/reconciler", "30 1 0:27 / /dev/shm rw - tmpfs tmpfs rw\n"),
        "neither": ("/run/reconciler", ""),
    }
    for run_fs, (expected, extra) in cases.items():
        root = "1 0 8:1 / / rw - ext4 /dev/vda rw\n"
        mountinfo.write_text(root + extra)
        agemounts._default_run_dir.cache_clear()
        assert str(agemounts.run_dir()) == expected, run_fs
    agemounts._default_run_dir.cache_clear()


def test_in_pull_mode_the_host_is_this_machine_whatever_its_engine(
    tmp_path: Path, key: tuple[Path, str], on_tmpfs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--as-host edge`: Host edge is this machine (its spec.engine is not used), so its decrypted bind sources
    are written here and allowed; the same tree is refused when a controller reaches edge over ssh."""
    ident, recipient = key
    monkeypatch.setenv(agemounts.RUN_DIR_ENV, str(on_tmpfs))
    tree = tmp_path / "tree"
    tree.mkdir()
    encrypt(recipient, "x", tree / "token.age")
    age_manifest(tree)
    (tree / "hosts.yaml").write_text(FLEET.format(name="edge", engine="ssh://root@edge.example"))
    local = engine_class().for_host("unix:///run/docker.sock", None)
    options = [AgeOptions(str(ident))]
    pulled = ProjectRunner("p", tree, options=options, engine=local, host="edge", pull=True).load()
    assert pulled.problems == []
    pushed = ProjectRunner("p", tree, options=options, engine=local, host="edge").load()
    assert any("the engine of edge" in p.message for p in pushed.problems)
