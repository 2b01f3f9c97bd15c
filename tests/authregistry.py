"""A registry of a test's own that requires basic auth: Debian's docker-registry (distribution 2.8, installed by
scripts/testenv.sh) on a free loopback port, with an htpasswd file (bcrypt, as distribution requires) and its
storage in the test's directory; stopped and its files gone afterwards. Plain HTTP on 127.0.0.1, which the engine
treats as an insecure registry by default (InsecureRegistryCIDRs 127.0.0.0/8), as it does the shared :5000."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import bcrypt

from tests.helpers import free_port, wait_for

USER = "updater"
PASSWORD = "s3cret-registry-pw"


class AuthRegistry:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("docker-registry")
        assert binary, "docker-registry is missing: scripts/testenv.sh installs it"
        self.root.mkdir(parents=True, exist_ok=True)
        htpasswd = self.root / "htpasswd"
        htpasswd.write_text(f"{USER}:{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=5)).decode()}\n")
        config = self.root / "config.yml"
        config.write_text(
            "version: 0.1\nlog: {level: warn}\n"
            f"storage: {{filesystem: {{rootdirectory: {self.root / 'data'}}}}}\n"
            f"http: {{addr: {self.address}}}\n"
            f"auth: {{htpasswd: {{realm: test, path: {htpasswd}}}}}\n"
        )
        log = (self.root / "registry.log").open("ab")
        self.proc = subprocess.Popen([binary, "serve", str(config)], stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        wait_for(self.answers, 30, f"the basic-auth registry on {self.address}", interval=0.1)

    def answers(self) -> bool:
        """The API answers, asking for credentials (401) when none are given."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"docker-registry exited: {(self.root / 'registry.log').read_text()[-2000:]}")
        try:
            urllib.request.urlopen(f"http://{self.address}/v2/", timeout=2)
        except urllib.error.HTTPError as exc:
            return exc.code == 401
        except OSError:
            return False
        return False

    def docker_config(self, directory: Path) -> Path:
        """A Docker client config directory (for DOCKER_CONFIG) holding this registry's credentials."""
        directory.mkdir(parents=True, exist_ok=True)
        auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        (directory / "config.json").write_text(json.dumps({"auths": {self.address: {"auth": auth}}}))
        return directory

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.root / "data", ignore_errors=True)
