"""The example git-sync unit's script: switches `current` to the fetched commit, also back to a kept one."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "examples" / "systemd" / "reconcile-git-sync.service"


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def sync_script(srv: Path) -> str:
    body = re.search(r"ExecStart=/bin/sh -eu -c '(.*?)'\n", UNIT.read_text(), re.S)
    assert body is not None
    return body.group(1).replace("\\\n", "\n").replace("/srv/reconciler", str(srv))


@pytest.mark.skipif(shutil.which("git") is None, reason="the unit runs git; this machine has none")
def test_sync_follows_a_rollback_and_a_roll_forward(tmp_path: Path) -> None:
    """c1 -> c2 -> back to c1 -> c2 again: `current` always holds exactly the commit's files."""
    src, srv = tmp_path / "src", tmp_path / "srv"
    src.mkdir()
    git(src, "init", "-q", "-b", "main")
    commits = []
    for text in ("one", "two"):
        (src / "m.yaml").write_text(text)
        git(src, "add", ".")
        git(src, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", text)
        commits.append(git(src, "rev-parse", "HEAD"))
    srv.mkdir()
    git(srv, "clone", "-q", "--bare", str(src), "repo.git")
    git(srv / "repo.git", "remote", "set-url", "origin", str(src))
    script = sync_script(srv)
    for sha, text in [(commits[1], "two"), (commits[0], "one"), (commits[1], "two")]:
        git(src, "reset", "-q", "--hard", sha)
        subprocess.run(["sh", "-eu", "-c", script], check=True, capture_output=True)
        current = srv / "current"
        assert current.readlink() == Path(f"rev-{sha}")
        assert sorted(p.name for p in current.iterdir()) == ["m.yaml"]
        assert (current / "m.yaml").read_text() == text
