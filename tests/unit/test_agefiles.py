"""Encrypted files (issue 22, item 6): files encrypted by Debian's `age` command (or pyrage where it is missing)
decrypt in memory with the identity; a missing identity or a wrong one is one line naming the file; the keyed hash
depends on the identity and reveals nothing a plain hash would."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.core.agefiles import AgeOptions, Identities, is_encrypted, read_decrypted, read_maybe_encrypted_text
from reconciler.core.safeio import UnsafeFile
from reconciler.drivers.container.spec import normalize_container
from reconciler.errors import SpecError
from reconciler.model import Resource, Source

AGE = shutil.which("age")
PLAIN = b"DB_PASSWORD=hunter2-correct-horse\nAPI_TOKEN='tok-123'\n"


def keygen(path: Path) -> str:
    """An identity file at `path`; returns its recipient (public key)."""
    if shutil.which("age-keygen"):
        out = subprocess.run(["age-keygen", "-o", str(path)], check=True, capture_output=True, text=True)
        return out.stderr.strip().rsplit(" ", 1)[-1]
    import pyrage

    ident = pyrage.x25519.Identity.generate()
    path.write_text(f"# created by the test\n# public key: {ident.to_public()}\n{ident}\n")
    return str(ident.to_public())


def encrypt(recipient: str, plaintext: bytes, out: Path, armor: bool = False) -> None:
    if AGE:
        subprocess.run([AGE, "-r", recipient, *(["-a"] if armor else []), "-o", str(out)], input=plaintext, check=True)
        return
    import pyrage

    out.write_bytes(pyrage.encrypt(plaintext, [pyrage.x25519.Recipient.from_str(recipient)]))


@pytest.fixture
def key(tmp_path: Path) -> tuple[Path, str]:
    ident = tmp_path / "key.txt"
    return ident, keygen(ident)


@pytest.mark.parametrize("armor", [False, True])
def test_a_file_encrypted_by_age_decrypts_in_memory(tmp_path: Path, key: tuple[Path, str], armor: bool) -> None:
    """Binary and armored files made by age decrypt with the identity; the ciphertext holds no plaintext."""
    ident, recipient = key
    f = tmp_path / "web.env.age"
    encrypt(recipient, PLAIN, f, armor=armor)
    assert PLAIN not in f.read_bytes()
    ids = Identities.load(ident)
    assert read_decrypted(f, ids, tree=tmp_path) == PLAIN
    assert read_maybe_encrypted_text(f, ids, 1 << 20) == PLAIN.decode()


def test_age_is_used_when_installed() -> None:
    """CI installs Debian's age (scripts/testenv.sh): the files above come from the real tool there."""
    if not AGE:
        pytest.skip("age is not installed here; pyrage encrypted the files")
    assert subprocess.run([AGE, "--version"], capture_output=True, check=True).returncode == 0


def test_no_identity_is_one_line_naming_the_file(tmp_path: Path, key: tuple[Path, str]) -> None:
    """No identity: one line naming the file and both ways to give one."""
    f = tmp_path / "web.env.age"
    encrypt(key[1], PLAIN, f)
    with pytest.raises(UnsafeFile) as exc:
        read_decrypted(f, None)
    assert str(exc.value).startswith(f"{f}: encrypted (.age) but no identity") and "\n" not in str(exc.value)
    assert "--age-identity" in str(exc.value) and "RECONCILER_AGE_IDENTITY" in str(exc.value)


def test_a_wrong_identity_or_a_damaged_file_is_one_line_naming_the_file(tmp_path: Path, key: tuple[Path, str]) -> None:
    """Another identity, a truncated file, or a plain file named .age: one line naming the file."""
    other = tmp_path / "other.txt"
    keygen(other)
    f = tmp_path / "web.env.age"
    encrypt(key[1], PLAIN, f)
    with pytest.raises(UnsafeFile) as exc:
        read_decrypted(f, Identities.load(other))
    assert str(exc.value).startswith(f"{f}: does not decrypt with the identity in {other}") and "\n" not in str(
        exc.value
    )
    f.write_bytes(f.read_bytes()[:-5])
    with pytest.raises(UnsafeFile, match="does not decrypt"):
        read_decrypted(f, Identities.load(key[0]))
    plain = tmp_path / "plain.env.age"
    plain.write_bytes(PLAIN)
    with pytest.raises(UnsafeFile, match=r"plain\.env\.age: does not decrypt"):
        read_decrypted(plain, Identities.load(key[0]))


def test_a_bad_identity_file_is_named(tmp_path: Path) -> None:
    """An identity file without keys, with junk, or missing is an error naming it."""
    bad = tmp_path / "id.txt"
    bad.write_text("not a key\n")
    with pytest.raises(UnsafeFile, match=r"id\.txt: not an age identity file"):
        Identities.load(bad)
    bad.write_text("# only a comment\n")
    with pytest.raises(UnsafeFile, match="no AGE-SECRET-KEY"):
        Identities.load(bad)
    bad.write_text("AGE-SECRET-KEY-1NOTAKEY\n")
    with pytest.raises(UnsafeFile, match="not an age identity file"):
        Identities.load(bad)
    with pytest.raises(UnsafeFile, match=r"missing\.txt: does not exist"):
        Identities.load(tmp_path / "missing.txt")


def test_the_option_names_the_identity_file_or_the_environment_does(tmp_path: Path, key: tuple[Path, str]) -> None:
    """AgeOptions: no file, no identities; loaded once while unchanged; the flag defaults from the environment."""
    ident, _ = key
    assert AgeOptions().identities() is None
    first = AgeOptions(str(ident)).identities()
    assert first is not None and AgeOptions(str(ident)).identities() is first  # read once while unchanged
    (flag,) = [f.metadata["cli"] for f in dataclasses.fields(AgeOptions)]
    assert flag.flag == "--age-identity" and flag.env == "RECONCILER_AGE_IDENTITY"
    with pytest.raises(UnsafeFile, match=r"nothere\.txt: does not exist"):
        AgeOptions(str(tmp_path / "nothere.txt")).identities()


def test_the_keyed_hash_needs_the_identity(tmp_path: Path, key: tuple[Path, str]) -> None:
    """The keyed hash is stable, follows the plaintext, differs per identity and is not the plain SHA-256."""
    other = tmp_path / "other.txt"
    keygen(other)
    a, b = Identities.load(key[0]), Identities.load(other)
    h = a.keyed_hash(PLAIN)
    assert h == Identities.load(key[0]).keyed_hash(PLAIN)  # stable across runs
    assert h != a.keyed_hash(PLAIN + b"x")  # a changed plaintext changes it
    assert h != b.keyed_hash(PLAIN)  # keyed: another identity hashes differently
    assert hashlib.sha256(PLAIN).hexdigest() not in h
    assert h.startswith("hmac-sha256:")


def test_plain_files_are_read_as_they_are(tmp_path: Path) -> None:
    """Files not ending .age are read as before, without an identity."""
    f = tmp_path / "web.env"
    f.write_bytes(PLAIN)
    assert not is_encrypted(f) and is_encrypted("x/web.env.age")
    assert read_maybe_encrypted_text(f, None, 1 << 20) == PLAIN.decode()


# --- envFiles: [./web.env.age] through the Container driver --------------------------------------------------


def age_container(directory: Path, env: dict[str, str] | None = None) -> Resource:
    spec = {"image": "127.0.0.1:5000/reconciler/busybox:1.35", "envFiles": ["./web.env.age"], "env": env or {}}
    return Resource("Container", "web", spec, {}, Source("c.yaml", 1, directory / "c.yaml"))


def test_an_encrypted_env_file_feeds_the_container_env_as_sensitive(tmp_path: Path, key: tuple[Path, str]) -> None:
    """envFiles: [./web.env.age] gives the container its values, all sensitive."""
    ident, recipient = key
    encrypt(recipient, PLAIN, tmp_path / "web.env.age")
    desired = normalize_container(age_container(tmp_path), AgeOptions(str(ident)))
    assert desired.spec["env"] == {"API_TOKEN": "tok-123", "DB_PASSWORD": "hunter2-correct-horse"}
    assert desired.sensitive == {"env.API_TOKEN", "env.DB_PASSWORD"}


def test_the_spec_hash_follows_the_plaintext_through_a_keyed_hash(tmp_path: Path, key: tuple[Path, str]) -> None:
    """A changed plaintext changes the hash (the container is replaced); the same plaintext under another identity
    hashes differently, so the label says nothing about the plaintext; a plain `env` override is hashed as usual."""
    ident, recipient = key
    f = tmp_path / "web.env.age"
    encrypt(recipient, PLAIN, f)
    first = normalize_container(age_container(tmp_path), AgeOptions(str(ident))).spec_hash
    encrypt(recipient, PLAIN, f)  # re-encrypted: other ciphertext, same plaintext
    assert normalize_container(age_container(tmp_path), AgeOptions(str(ident))).spec_hash == first
    encrypt(recipient, PLAIN.replace(b"tok-123", b"tok-124"), f)
    assert normalize_container(age_container(tmp_path), AgeOptions(str(ident))).spec_hash != first

    plain_dir = tmp_path / "plain"
    plain_dir.mkdir()
    (plain_dir / "web.env").write_bytes(PLAIN)
    plain = Resource(
        "Container",
        "web",
        {**age_container(plain_dir).spec, "envFiles": ["./web.env"]},
        {},
        Source("c.yaml", 1, plain_dir / "c.yaml"),
    )
    encrypt(recipient, PLAIN, f)
    assert (
        normalize_container(plain).spec_hash
        != normalize_container(age_container(tmp_path), AgeOptions(str(ident))).spec_hash
    )

    override = {"API_TOKEN": "visible"}
    a = normalize_container(age_container(tmp_path, override), AgeOptions(str(ident)))
    assert a.spec["env"]["API_TOKEN"] == "visible"


def test_a_missing_identity_is_a_spec_error_naming_the_file(tmp_path: Path, key: tuple[Path, str]) -> None:
    """Without an identity (or with a missing identity file) normalization fails on spec.envFiles.0, naming the file."""
    encrypt(key[1], PLAIN, tmp_path / "web.env.age")
    with pytest.raises(SpecError) as exc:
        normalize_container(age_container(tmp_path))
    assert exc.value.field == "spec.envFiles.0"
    assert f"{tmp_path / 'web.env.age'}: encrypted (.age) but no identity" in str(exc.value)
    with pytest.raises(SpecError, match=r"--age-identity .*nothere\.txt: does not exist"):
        normalize_container(age_container(tmp_path), AgeOptions(str(tmp_path / "nothere.txt")))


def test_validate_decrypts_with_the_flag_or_the_environment(tmp_path: Path, key: tuple[Path, str]) -> None:
    """`reconcile validate` (no engine): without an identity one line names the file; --age-identity or
    RECONCILER_AGE_IDENTITY makes it valid; the plaintext is printed nowhere."""
    ident, recipient = key
    d = tmp_path / "m"
    d.mkdir()
    encrypt(recipient, PLAIN, d / "web.env.age")
    (d / "web.yaml").write_text(
        "apiVersion: reconciler/v1\nkind: Container\nmetadata:\n  name: web\n"
        "spec:\n  image: 127.0.0.1:5000/reconciler/busybox:1.35\n  envFiles: [./web.env.age]\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "RECONCILER_AGE_IDENTITY"}

    def run(*args: str, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "reconciler.cli", *args],
            env={**env, **(extra or {})},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    bad = run("validate", str(d))
    assert bad.returncode == 1 and "web.env.age: encrypted (.age) but no identity" in bad.stdout + bad.stderr
    ok = run("validate", str(d), "--age-identity", str(ident))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    ok = run("validate", str(d), extra={"RECONCILER_AGE_IDENTITY": str(ident)})
    assert ok.returncode == 0, ok.stdout + ok.stderr
    for proc in (bad, ok):
        assert "hunter2" not in proc.stdout + proc.stderr
