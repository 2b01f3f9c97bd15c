"""Git repositories the tests commit to and serve (file://, or through git http-backend under their parent)."""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

BACKEND = Path("/usr/lib/git-core/git-http-backend")

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


Edit = str | bytes | None | Callable[[str], str]


class Served:
    """A bare repository as a forge holds it (pushes land there; served over file://, or over http by GitHTTP
    under its parent, pushes included) and the work clone of a user who pushes to it."""

    def __init__(self, root: Path, name: str = "ops.git") -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.path = root / name
        git(root, "init", "-q", "--bare", "-b", "main", str(self.path))
        git(self.path, "config", "http.receivepack", "true")
        self.user = root / "user"
        git(root, "clone", "-q", str(self.path), str(self.user))
        git(self.user, "checkout", "-q", "-B", "main")

    @property
    def url(self) -> str:
        return f"file://{self.path}"

    def push(self, files: dict[str, Edit], message: str, key: Path | None = None, branch: str = "main") -> str:
        """Commit on top of `branch`'s newest commit as the user, and push; a callable edits the file's text."""
        if self.head(branch):
            git(self.user, "fetch", "-q", "origin")
            git(self.user, "checkout", "-q", "-B", branch, f"origin/{branch}")
        for name, content in files.items():
            target = self.user / name
            if content is None:
                target.unlink()
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if callable(content):
                target.write_bytes(content(target.read_bytes().decode()).encode())
            elif isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_bytes(content.encode())
        git(self.user, "add", "-A")
        sign = ["-c", "gpg.format=ssh", "-c", f"user.signingkey={key}"] if key else []
        git(self.user, *sign, "commit", "-q", "--allow-empty", *(["-S"] if key else []), "-m", message)
        git(self.user, "push", "-q", "origin", f"HEAD:refs/heads/{branch}")
        return git(self.user, "rev-parse", "HEAD")

    def head(self, branch: str = "main") -> str:
        """The branch's commit on the server ("" when there is no such branch)."""
        done = subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"],
            cwd=self.path,
            env=GIT_ENV,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return done.stdout.strip()

    def read(self, name: str, branch: str = "main") -> bytes:
        done = subprocess.run(
            ["git", "show", f"refs/heads/{branch}:{name}"], cwd=self.path, env=GIT_ENV, capture_output=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def subjects(self, branch: str = "main") -> list[str]:
        """The commit subjects of `branch`, newest first."""
        return git(self.path, "log", "--format=%s", f"refs/heads/{branch}").splitlines()


ACCEPT_TIMEOUT = 2.0


class GitHTTP:
    """git http-backend behind a threaded CGI server on 127.0.0.1. With `token`, every request needs HTTP basic auth
    with that password (401 otherwise). With `stall_after` bytes, a pack response stops after that many bytes
    until `release` is set (a fetch in progress that can be killed or timed out). `after_fetch`, when set, runs
    once each upload-pack answer (a client's fetch) is made and before it is sent: what another user does
    between that client's fetch and its push."""

    def __init__(self, root: Path, token: str | None = None) -> None:
        self.root = root
        self.token = token
        self.stall_after: int | None = None
        self.stalled = threading.Event()
        self.release = threading.Event()
        self.authorizations: list[str | None] = []
        self.after_fetch: Callable[[], None] | None = None
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                outer.serve(self)

            def do_POST(self) -> None:
                outer.serve(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        # serve_forever checks for shutdown between accepts; an accept that blocked after the socket polled ready
        # (seen once in CI) held close() for ever. With a timeout it gives up and the loop goes on.
        self.server.socket.settimeout(ACCEPT_TIMEOUT)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def serve(self, handler: BaseHTTPRequestHandler) -> None:
        auth = handler.headers.get("Authorization")
        self.authorizations.append(auth)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        if self.token is not None:
            given = ""
            if auth and auth.startswith("Basic "):
                given = base64.b64decode(auth[6:]).decode().partition(":")[2]
            if not secrets.compare_digest(given, self.token):
                handler.send_response(401)
                handler.send_header("WWW-Authenticate", 'Basic realm="git"')
                handler.send_header("Content-Length", "0")
                handler.end_headers()
                return
        parts = urlsplit(handler.path)
        env = {
            "PATH": os.environ["PATH"],
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": parts.path,
            "QUERY_STRING": parts.query,
            "REQUEST_METHOD": handler.command,
            "CONTENT_TYPE": handler.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": "127.0.0.1",
            "REMOTE_USER": "tester",  # pushes over http-backend need an authenticated user
            "GIT_PROTOCOL": handler.headers.get("Git-Protocol", ""),
            "HTTP_CONTENT_ENCODING": handler.headers.get("Content-Encoding", ""),
        }
        out = subprocess.run([str(BACKEND)], input=body, env=env, capture_output=True, timeout=60).stdout
        is_fetch = parts.path.endswith("/git-upload-pack") and b"command=ls-refs" not in body
        if is_fetch and self.after_fetch is not None:
            self.after_fetch()  # the answer is made (the old head): the branch moves before the client has it
        head, _, payload = out.partition(b"\r\n\r\n")
        status, headers = 200, []
        for line in head.decode().split("\r\n"):
            name, _, value = line.partition(": ")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name.lower() not in ("content-length", "transfer-encoding"):
                headers.append((name, value))
        handler.send_response(status)
        for name, value in headers:
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        stall = self.stall_after
        if stall is not None and len(payload) > stall:
            handler.wfile.write(payload[:stall])
            handler.wfile.flush()
            self.stalled.set()
            self.release.wait(60)
            handler.close_connection = True
            return  # the rest never comes: the client sees the connection close short
        handler.wfile.write(payload)
