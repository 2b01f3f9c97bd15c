"""Git repositories the tests commit to and serve (file://, or through git http-backend under their parent)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

# The test's own git runs see neither the user's nor the system's configuration either.
GIT_ENV = {
    **{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "Dev",
    "GIT_AUTHOR_EMAIL": "dev@example.org",
    "GIT_COMMITTER_NAME": "Dev",
    "GIT_COMMITTER_EMAIL": "dev@example.org",
}


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@dataclass(frozen=True)
class GpgKey:
    """A GPG signing key made by a test, in a GnuPG home of its own."""

    home: Path
    fingerprint: str

    @classmethod
    def make(cls, name: str) -> GpgKey:
        # a short path: gpg-agent's socket lives in the home, and a socket path has a length limit
        home = Path(tempfile.mkdtemp(prefix="gpg-", dir="/tmp"))
        gpg = ["gpg", "--batch", "--homedir", str(home), "--passphrase", ""]
        subprocess.run(
            [*gpg, "--quick-gen-key", f"{name} <{name}@example.org>", "ed25519", "sign", "never"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        listed = subprocess.run(
            [*gpg, "--with-colons", "--list-secret-keys"], check=True, capture_output=True, text=True, timeout=60
        ).stdout
        fingerprint = next(line.split(":")[9] for line in listed.splitlines() if line.startswith("fpr:"))
        return cls(home, fingerprint)

    def export(self, target: Path) -> Path:
        """Write the public key, ASCII-armoured, to `target`."""
        done = subprocess.run(
            ["gpg", "--batch", "--homedir", str(self.home), "--armor", "--export", self.fingerprint],
            check=True,
            capture_output=True,
            timeout=60,
        )
        target.write_bytes(done.stdout)
        return target

    def remove(self) -> None:
        subprocess.run(["gpgconf", "--homedir", str(self.home), "--kill", "gpg-agent"], capture_output=True, timeout=60)
        shutil.rmtree(self.home, ignore_errors=True)


class Upstream:
    """A work repository the test commits to; served as it is (file://, or http-backend under its parent)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True)
        git(path, "init", "-q", "-b", "main")

    @property
    def url(self) -> str:
        return f"file://{self.path}"

    def commit(self, files: dict[str, str | bytes | None], message: str, key: Path | GpgKey | None = None) -> str:
        for name, content in files.items():
            target = self.path / name
            if content is None:
                target.unlink()
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content)
        git(self.path, "add", "-A")
        if isinstance(key, GpgKey):
            sign = ["-c", "gpg.program=gpg", "-c", f"user.signingkey={key.fingerprint}"]
            done = subprocess.run(
                ["git", *sign, "commit", "-q", "--allow-empty", "-S", "-m", message],
                cwd=self.path,
                env={**GIT_ENV, "GNUPGHOME": str(key.home)},
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0, done.stderr
            return git(self.path, "rev-parse", "HEAD")
        sign = ["-c", "gpg.format=ssh", "-c", f"user.signingkey={key}"] if key else []
        git(self.path, *sign, "commit", "-q", "--allow-empty", *(["-S"] if key else []), "-m", message)
        return git(self.path, "rev-parse", "HEAD")
