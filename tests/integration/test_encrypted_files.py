"""Encrypted env files on the real engine (issue 22, item 6): `envFiles: [./secret.env.age]`, encrypted by Debian's
`age`, decrypted by reconcile with `--age-identity`; the plaintext reaches the container and nothing else; a changed
plaintext replaces the container; without the identity one line names the file and nothing changes."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import SLEEPER

pytestmark = pytest.mark.engine


def keygen(path: Path) -> str:
    out = subprocess.run(["age-keygen", "-o", str(path)], check=True, capture_output=True, text=True)
    return out.stderr.strip().rsplit(" ", 1)[-1]


def encrypt(recipient: str, text: str, out: Path) -> None:
    subprocess.run(["age", "-r", recipient, "-o", str(out)], input=text.encode(), check=True)


def test_an_encrypted_env_file_end_to_end(
    reconcile: Any, project_name: str, tmp_manifests: Any, base_image: str, api: Any, tmp_path: Path
) -> None:
    """apply, plan, status with an age-encrypted env file: the value reaches only the container; a new one replaces
    it; without the identity nothing changes."""
    assert shutil.which("age") and shutil.which("age-keygen"), "scripts/testenv.sh installs Debian's age"
    ident = tmp_path / "key.txt"
    recipient = keygen(ident)
    name = f"{project_name}-app"
    manifest = tmp_manifests(
        "app.yaml",
        "apiVersion: reconciler/v1\nkind: Container\n"
        f"metadata:\n  name: {name}\n"
        f"spec:\n  image: {base_image}\n  command: [sh, -c, {json.dumps(SLEEPER)}]\n  stopTimeout: 1\n"
        "  envFiles: [./secret.env.age]\n",
    )
    directory = manifest.parent
    secret_file = directory / "secret.env.age"
    encrypt(recipient, "TOKEN=first-secret-value\n", secret_file)

    def run(*args: object) -> Any:
        return reconcile(*args, "--age-identity", ident)

    outputs: list[str] = []
    proc = reconcile("apply", directory)  # no identity
    assert proc.returncode == 1
    assert f"{secret_file}: encrypted (.age) but no identity" in proc.stdout + proc.stderr
    assert not api.containers(all=True, filters={"name": f"^/{name}$"}), "nothing changes"

    proc = run("apply", directory)
    outputs += [proc.stdout, proc.stderr]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    info = api.inspect_container(name)
    assert "TOKEN=first-secret-value" in info["Config"]["Env"]
    first_id = info["Id"]
    assert "first-secret-value" not in json.dumps(info["Config"]["Labels"])

    encrypt(recipient, "TOKEN=first-secret-value\n", secret_file)  # new ciphertext, same plaintext: in sync
    proc = run("plan", directory, "--output", "json")
    outputs += [proc.stdout, proc.stderr]
    assert proc.returncode == 0, proc.stdout + proc.stderr

    encrypt(recipient, "TOKEN=second-secret-value\n", secret_file)
    text = run("plan", directory)
    outputs += [text.stdout, text.stderr]
    assert text.returncode == 2 and "(sensitive)" in text.stdout
    proc = run("apply", directory)
    outputs += [proc.stdout, proc.stderr]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    info = api.inspect_container(name)
    assert info["Id"] != first_id and "TOKEN=second-secret-value" in info["Config"]["Env"]
    status = run("status", directory, "--output", "json")
    outputs += [status.stdout, status.stderr]
    assert status.returncode == 0, status.stdout + status.stderr
    for output in outputs:
        assert "secret-value" not in output

    # plan without the identity again: one line naming the file, exit 1, the container untouched
    proc = reconcile("plan", directory)
    assert proc.returncode == 1 and f"{secret_file}: encrypted (.age) but no identity" in proc.stdout + proc.stderr
    assert api.inspect_container(name)["Id"] == info["Id"]
