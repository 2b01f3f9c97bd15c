"""Identities and files of the age format made with Debian's `age-keygen` and `age` (what users run), and a run
directory on a memory file system for the plaintext of `.age` bind sources; shared by the tests of encrypted
files."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from reconciler.drivers.container.agemounts import memory_backed_problem


def keygen(path: Path) -> str:
    """An identity file at `path`; returns its recipient (public key)."""
    assert shutil.which("age-keygen"), "scripts/testenv.sh installs Debian's age"
    out = subprocess.run(["age-keygen", "-o", str(path)], check=True, capture_output=True, text=True)
    return out.stderr.strip().rsplit(" ", 1)[-1]


def encrypt(recipient: str, plaintext: str | bytes, out: Path) -> None:
    data = plaintext.encode() if isinstance(plaintext, str) else plaintext
    subprocess.run(["age", "-r", recipient, "-o", str(out)], input=data, check=True)


@contextmanager
def memory_run_dir() -> Iterator[Path]:
    """A fresh directory on /dev/shm (a tmpfs the test engine, in this mount namespace, can bind from), removed
    afterwards with what reconcile wrote there."""
    directory = Path(tempfile.mkdtemp(prefix="reconciler-run-", dir="/dev/shm"))
    try:
        assert memory_backed_problem(directory) is None, f"{directory} must be on a tmpfs"
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)
