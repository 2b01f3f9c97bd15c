"""Git repositories the tests commit to and serve (file://, or through git http-backend under their parent)."""

from __future__ import annotations

import os
import subprocess
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


class Upstream:
    """A work repository the test commits to; served as it is (file://, or http-backend under its parent)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True)
        git(path, "init", "-q", "-b", "main")

    @property
    def url(self) -> str:
        return f"file://{self.path}"

    def commit(self, files: dict[str, str | bytes | None], message: str, key: Path | None = None) -> str:
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
        sign = ["-c", "gpg.format=ssh", "-c", f"user.signingkey={key}"] if key else []
        git(self.path, *sign, "commit", "-q", "--allow-empty", *(["-S"] if key else []), "-m", message)
        return git(self.path, "rev-parse", "HEAD")
