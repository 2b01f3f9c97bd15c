"""A bind mount of an `.age` file on the real engine (issue 22, item 6): encrypted by Debian's `age`, decrypted by
reconcile into a 0600 file on a tmpfs that the container reads; in sync after apply; a changed plaintext replaces
the container; a plaintext lost to a reboot is written again before the container starts; the file goes with its
container; a wrong identity changes nothing; no output holds the plaintext."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.agekeys import encrypt, keygen, memory_run_dir
from tests.helpers import SLEEPER

pytestmark = pytest.mark.engine

TARGET = "/run/secrets/token"


def read_in(api: Any, name: str, path: str) -> str:
    exec_id = api.exec_create(name, ["cat", path])["Id"]
    return api.exec_start(exec_id).decode()


def only_file(directory: Path) -> Path:
    files = [p for p in directory.rglob("*") if p.is_file()]
    assert len(files) == 1, files
    return files[0]


def test_an_encrypted_bind_source_end_to_end(
    reconcile: Any, project_name: str, tmp_manifests: Any, base_image: str, api: Any, tmp_path: Path
) -> None:
    ident = tmp_path / "key.txt"
    recipient = keygen(ident)
    wrong = tmp_path / "wrong.txt"
    keygen(wrong)
    name = f"{project_name}-app"
    manifest = tmp_manifests(
        "app.yaml",
        "apiVersion: reconciler/v1\nkind: Container\n"
        f"metadata:\n  name: {name}\n"
        f"spec:\n  image: {base_image}\n  command: [sh, -c, {json.dumps(SLEEPER)}]\n  stopTimeout: 1\n"
        f"  mounts:\n    - {{type: bind, source: ./token.age, target: {TARGET}}}\n",
    )
    directory = manifest.parent
    secret = directory / "token.age"
    encrypt(recipient, "first-mounted-secret", secret)
    outputs: list[str] = []

    with memory_run_dir() as run:

        def cli(*args: object, identity: Path | None = ident) -> Any:
            extra = ("--age-identity", identity) if identity else ()
            proc = reconcile(*args, directory, *extra, env={"RECONCILER_RUN_DIR": str(run)})
            outputs.extend((proc.stdout, proc.stderr))
            return proc

        def containers() -> list[Any]:
            return api.containers(all=True, filters={"name": f"^/{name}$"})

        # no identity, a wrong one: one line naming the file, exit 1, nothing created or written
        proc = cli("apply", identity=None)
        assert proc.returncode == 1 and f"{secret}: encrypted (.age) but no identity" in proc.stdout + proc.stderr
        proc = cli("apply", identity=wrong)
        assert proc.returncode == 1 and f"{secret}: does not decrypt" in proc.stdout + proc.stderr
        assert not containers() and not any(run.iterdir())

        proc = cli("apply")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert read_in(api, name, TARGET) == "first-mounted-secret"
        info = api.inspect_container(name)
        (mount,) = info["Mounts"]
        plaintext = Path(mount["Source"])
        assert mount["Type"] == "bind" and mount["RW"] is False and plaintext.is_relative_to(run)
        assert only_file(run) == plaintext
        stat = os.stat(plaintext)
        assert (stat.st_mode & 0o777, stat.st_uid) == (0o600, 0)
        fs = subprocess.run(["stat", "-f", "-c", "%T", str(plaintext)], capture_output=True, text=True, check=True)
        assert fs.stdout.strip() == "tmpfs"
        first_id = info["Id"]

        encrypt(recipient, "first-mounted-secret", secret)  # a new ciphertext of the same plaintext: in sync
        proc = cli("plan")
        assert proc.returncode == 0, proc.stdout + proc.stderr

        # a wrong identity against the running container: exit 1, the container and its file untouched
        proc = cli("apply", identity=wrong)
        assert proc.returncode == 1 and str(secret) in proc.stdout + proc.stderr
        assert api.inspect_container(name)["Id"] == first_id and plaintext.read_text() == "first-mounted-secret"

        # a changed plaintext replaces the container; the earlier file goes with the old one
        encrypt(recipient, "second-mounted-secret", secret)
        proc = cli("plan")
        assert proc.returncode == 2 and "forces replace" in proc.stdout
        assert f"the decrypted content of {TARGET} changed" in proc.stdout
        proc = cli("apply")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        info = api.inspect_container(name)
        assert info["Id"] != first_id and read_in(api, name, TARGET) == "second-mounted-secret"
        plaintext = Path(info["Mounts"][0]["Source"])
        assert only_file(run) == plaintext and cli("plan").returncode == 0

        # a reboot clears /run: the engine cannot start the container (and makes no directory in the file's
        # place); the next plan says the file is written again, the apply writes it before starting it
        api.stop(name, timeout=1)
        shutil.rmtree(run / "mounts")
        with pytest.raises(Exception, match="bind source path does not exist"):
            api.start(name)
        assert not plaintext.exists()
        proc = cli("plan")
        assert proc.returncode == 2 and f"write the decrypted file of {TARGET}" in proc.stdout
        proc = cli("apply")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert read_in(api, name, TARGET) == "second-mounted-secret" and plaintext.is_file()

        # files of a container removed by hand are collected by the next apply that changes a container
        api.remove_container(name, force=True)
        ghost = plaintext.parent.parent / f"{project_name}-ghost"
        ghost.mkdir()
        (ghost / "token").write_text("left by a container that is gone")
        proc = cli("apply")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert not ghost.exists() and plaintext.is_file()

        # removed with its container
        manifest.unlink()
        proc = cli("apply", "--allow-empty")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert not containers() and not [p for p in run.rglob("*") if p.is_file()]
        assert not plaintext.parent.exists()

    for output in outputs:
        assert "mounted-secret" not in output


def test_a_container_printing_its_mounted_secret_as_it_crashes_is_masked(
    reconcile: Any, project_name: str, tmp_manifests: Any, base_image: str, api: Any, tmp_path: Path
) -> None:
    """The output tail kept with the failure (apply's error, `status`) masks the plaintext of the mount."""
    ident = tmp_path / "key.txt"
    recipient = keygen(ident)
    manifest = tmp_manifests(
        "app.yaml",
        "apiVersion: reconciler/v1\nkind: Container\n"
        f"metadata:\n  name: {project_name}-crash\n"
        f"spec:\n  image: {base_image}\n  command: [sh, -c, 'echo key=$(cat {TARGET}); exit 3']\n"
        f"  stopTimeout: 1\n  mounts:\n    - {{type: bind, source: ./token.age, target: {TARGET}}}\n",
    )
    encrypt(recipient, "crash-printed-secret", manifest.parent / "token.age")
    with memory_run_dir() as run:
        env = {"RECONCILER_RUN_DIR": str(run)}
        proc = reconcile("apply", manifest.parent, "--age-identity", ident, env=env)
        status = reconcile("status", manifest.parent, "--age-identity", ident, "--output", "json", env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "key=(sensitive)" in proc.stdout + proc.stderr + status.stdout
    for output in (proc.stdout, proc.stderr, status.stdout, status.stderr):
        assert "crash-printed-secret" not in output
