"""`reconcile watch` as a subprocess for the benchmarks: started, read from its log, measured, stopped."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from engine_address import REPO

TIMEOUT = 60.0
_PASS = re.compile(r"pass\.started\s.*?reasons=(\S+)")
_DONE_SECONDS = re.compile(r"pass\.done\s.*?seconds=([0-9.]+)")


@dataclass
class Watch:
    proc: subprocess.Popen[bytes]
    log_path: Path
    _log: IO[str]

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, text: str, count: int = 1, timeout: float = TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while self.text().count(text) < count:
            if self.proc.poll() is not None:
                raise RuntimeError(f"watch exited ({self.proc.returncode}): {self.text()[-2000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {count}x {text!r} in {self.log_path}")
            time.sleep(0.05)

    def wait_passes(self, count: int, timeout: float = TIMEOUT) -> None:
        self.wait_log("pass.done", count, timeout)

    def reasons(self) -> list[str]:
        """Each pass's reasons, in order (`resync`, `files`, `event:...`)."""
        return _PASS.findall(self.text())

    def pass_seconds(self) -> list[float]:
        """Each finished pass's duration as watch logs it."""
        return [float(s) for s in _DONE_SECONDS.findall(self.text())]

    def cpu_seconds(self) -> float:
        """User + system CPU time of the watch process so far (/proc/PID/stat)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_mib(self) -> float:
        """Peak resident set so far (VmHWM)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        """SIGTERM (as a user stops it), killed when it does not end in 30 s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


def start_watch(project: str, manifests: Path, env: dict[str, str], log_path: Path, *args: str) -> Watch:
    """`reconcile --project PROJECT watch MANIFESTS ARGS` from this checkout, its stderr (the log) to `log_path`;
    `env` is its whole environment (DOCKER_HOST, RECONCILER_LOCK_DIR...)."""
    log = log_path.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "reconciler.cli", "--project", project, "watch", str(manifests), *args],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    return Watch(proc, log_path, log)
