"""Reading user input safely: each defect a hostile user found (issue 12), through `reconcile validate` in a child
process bounded in time and memory (so a regression hangs or eats nothing but that child), plus the safe reader
and the lock's canonical engine names."""

from __future__ import annotations

import os
import resource
import stat
import subprocess
import sys
import time
from pathlib import Path
from textwrap import dedent

import pytest

from reconciler.core.lock import ProjectLock, lock_path
from reconciler.core.safeio import UnsafeFile, read_bytes
from reconciler.errors import LockHeld

TIMEOUT = 60
MEMORY = 1536 * 1024 * 1024
IMAGE = "127.0.0.1:5000/reconciler/busybox:1.35"


def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


def validate(directory: Path) -> subprocess.CompletedProcess[str]:
    """`reconcile validate DIR` with at most TIMEOUT seconds and MEMORY bytes (validate touches no engine)."""
    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    return subprocess.run(
        [sys.executable, "-m", "reconciler.cli", "validate", str(directory)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        preexec_fn=_limits,
        env=env,
        check=False,
    )


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dedent(text))
    return path


def container(spec: str, name: str = "web") -> str:
    body = "\n".join("  " + line for line in dedent(spec).strip().splitlines())
    return f"apiVersion: reconciler/v1\nkind: Container\nmetadata: {{name: {name}}}\nspec:\n  image: {IMAGE}\n{body}\n"


def one_error(proc: subprocess.CompletedProcess[str]) -> str:
    """The single problem line of a failed validate: no traceback, exit 1."""
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[-1].endswith("problem(s) found; nothing was changed."), lines
    assert len(lines) == 2, lines
    return lines[0]


# ---- env files -------------------------------------------------------------------------------------------


def test_env_file_dev_zero_is_refused_at_once(tmp_path: Path) -> None:
    """`envFiles: [/dev/zero]` ran validate until killed (and plan out of memory): now one line, at once."""
    write(tmp_path, "c.yaml", container("envFiles: [/dev/zero]"))
    line = one_error(validate(tmp_path))
    assert line.startswith("c.yaml:6: Container/web: spec.envFiles[0]: env file /dev/zero: ")
    # the same device under another name, outside /dev: refused as not a regular file
    try:
        os.mknod(tmp_path / "zero.env", stat.S_IFCHR | 0o600, os.makedev(1, 5))
    except PermissionError:
        pytest.skip("creating a device node needs root")
    write(tmp_path, "c.yaml", container("envFiles: [./zero.env]"))
    line = one_error(validate(tmp_path))
    assert line.endswith(f"spec.envFiles[0]: env file {tmp_path}/zero.env: not a regular file")


def test_env_file_fifo_never_blocks(tmp_path: Path) -> None:
    """An env file that is a FIFO blocked every command for ever."""
    os.mkfifo(tmp_path / "web.env")
    write(tmp_path, "c.yaml", container("envFiles: [./web.env]"))
    start = time.monotonic()
    line = one_error(validate(tmp_path))
    assert "not a regular file" in line and time.monotonic() - start < TIMEOUT / 2


@pytest.mark.parametrize(
    "path", ["/proc/self/environ", "/proc/1/environ", "/sys/kernel/mm/transparent_hugepage/enabled"]
)
def test_env_file_in_a_pseudo_file_system_is_refused(tmp_path: Path, path: str) -> None:
    """/proc/self/environ is a "regular" file: it would hand reconcile's own environment to the container."""
    write(tmp_path, "c.yaml", container(f"envFiles: [{path}]"))
    line = one_error(validate(tmp_path))
    assert "spec.envFiles[0]" in line and "kernel pseudo file system" in line


def test_env_file_over_the_limit_names_the_limit(tmp_path: Path) -> None:
    with (tmp_path / "big.env").open("wb") as fh:
        fh.truncate(1024 * 1024 + 1)
    write(tmp_path, "c.yaml", container("envFiles: [./big.env]"))
    line = one_error(validate(tmp_path))
    assert "spec.envFiles[0]" in line and "the limit is 1 MiB" in line


def test_env_file_link_out_of_the_manifest_directory_is_not_followed(tmp_path: Path) -> None:
    """A link inside the manifest directory to a host file (here: a stand-in for /etc/shadow) is not followed."""
    secret = write(tmp_path, "host/shadow", "ROOT=secret\n")
    manifests = tmp_path / "manifests"
    write(manifests, "c.yaml", container("envFiles: [./web.env]"))
    (manifests / "web.env").symlink_to(secret)
    line = one_error(validate(manifests))
    assert "spec.envFiles[0]" in line and "symbolic link leads out of" in line
    # a link that stays inside the tree is fine
    (manifests / "web.env").unlink()
    write(manifests, "conf/real.env", "A=1\n")
    (manifests / "web.env").symlink_to(manifests / "conf" / "real.env")
    assert validate(manifests).returncode == 0


# ---- manifests -------------------------------------------------------------------------------------------


def test_link_to_a_directory_outside_is_reported_not_walked(tmp_path: Path) -> None:
    """`ln -s /etc DIR/lnk` made validate parse /etc/**/*.yml."""
    outside = tmp_path / "outside"
    write(outside, "x.yaml", "apiVersion: reconciler/v1\nkind: Volume\nmetadata: {name: stolen}\n")
    manifests = tmp_path / "manifests"
    write(manifests, "v.yaml", "apiVersion: reconciler/v1\nkind: Volume\nmetadata: {name: mine}\n")
    (manifests / "lnk").symlink_to(outside)
    (manifests / "etc").symlink_to("/etc")
    proc = validate(manifests)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    problems = proc.stderr.splitlines()[:-1]
    assert problems == [
        "etc:0: symbolic link out of the manifest directory (to /etc); not followed",
        f"lnk:0: symbolic link out of the manifest directory (to {outside}); not followed",
    ]


def test_manifest_file_link_out_of_the_directory_is_refused(tmp_path: Path) -> None:
    outside = write(tmp_path, "outside.yaml", "apiVersion: reconciler/v1\nkind: Volume\nmetadata: {name: x}\n")
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "x.yaml").symlink_to(outside)
    line = one_error(validate(manifests))
    assert line.startswith("x.yaml:0: a symbolic link leads out of")


# ---- build contexts --------------------------------------------------------------------------------------


def image(build: str) -> str:
    head = "apiVersion: reconciler/v1\nkind: Image\nmetadata: {name: app}\n"
    return f"{head}spec:\n  reference: {IMAGE}\n  build: {build}\n"


def test_build_context_outside_the_manifest_directory_needs_the_opt_in(tmp_path: Path) -> None:
    """A context like `../../../../etc` was built with only a warning: host secrets in a pushable image."""
    write(tmp_path, "outside/Dockerfile", "FROM scratch\nCOPY shadow /shadow\n")
    write(tmp_path, "outside/shadow", "root:x\n")
    manifests = tmp_path / "manifests"
    write(manifests, "img.yaml", image("{context: ../outside}"))
    line = one_error(validate(manifests))
    assert line.startswith("img.yaml:6: Image/app: spec.build.context: build context '../outside' is outside")
    assert "allowExternalContext: true" in line
    write(manifests, "img.yaml", image("{context: ../outside, allowExternalContext: true}"))
    assert validate(manifests).returncode == 0


def test_build_context_link_out_of_the_directory_needs_the_opt_in(tmp_path: Path) -> None:
    write(tmp_path, "outside/Dockerfile", "FROM scratch\n")
    manifests = tmp_path / "manifests"
    write(manifests, "img.yaml", image("{context: ./ctx}"))
    (manifests / "ctx").symlink_to(tmp_path / "outside")
    proc = validate(manifests)
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert lines[0] == f"ctx:0: symbolic link out of the manifest directory (to {tmp_path}/outside); not followed"
    assert lines[1].startswith("img.yaml:6: Image/app: spec.build.context: ") and "allowExternalContext" in lines[1]


def test_sensitive_build_context_needs_allow_sensitive_too(tmp_path: Path) -> None:
    """`/etc` as a context: outside the manifest directory and sensitive: both opt-ins."""
    write(tmp_path, "img.yaml", image("{context: /etc, dockerfile: /etc/hostname, allowExternalContext: true}"))
    line = one_error(validate(tmp_path))
    assert "sensitive host path /etc" in line and "allowSensitive: true" in line


def test_sensitive_dockerfile_needs_allow_sensitive(tmp_path: Path) -> None:
    write(tmp_path, "ctx/a", "a\n")
    write(tmp_path, "img.yaml", image("{context: ./ctx, dockerfile: /etc/hostname, allowExternalContext: true}"))
    line = one_error(validate(tmp_path))
    assert "spec.build.dockerfile" in line and "allowSensitive: true" in line


def test_dockerfile_that_is_a_fifo_or_a_link_out_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "ctx/a", "a\n")
    os.mkfifo(tmp_path / "ctx" / "Dockerfile")
    write(tmp_path, "img.yaml", image("{context: ./ctx}"))
    line = one_error(validate(tmp_path))
    assert "not a regular file" in line
    (tmp_path / "ctx" / "Dockerfile").unlink()
    write(tmp_path.parent / f"{tmp_path.name}-host", "Dockerfile", "FROM scratch\n")
    (tmp_path / "ctx" / "Dockerfile").symlink_to(tmp_path.parent / f"{tmp_path.name}-host" / "Dockerfile")
    assert "allowExternalContext" in one_error(validate(tmp_path))


# ---- numbers, capabilities, names ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "where", "words"),
    [
        ("resources: {cpus: .nan}", "spec.resources.cpus", "not a finite number"),
        ("resources: {cpus: .inf}", "spec.resources.cpus", "not a finite number"),
        ("resources: {cpus: -.inf}", "spec.resources.cpus", "not a finite number"),
        ("resources: {memory: 99999999p}", "spec.resources.memory", "too large"),
        ("resources: {memory: 9223372036854775808}", "spec.resources.memory", "maximum"),
        ("stopTimeout: 100000000000000000000", "spec.stopTimeout", "maximum"),
        ("healthcheck: {test: [CMD, 'true'], interval: 9999999999999h}", "spec.healthcheck.interval", "too long"),
        ("healthcheck: {test: [CMD, 'true'], timeout: 9223372037}", "spec.healthcheck.timeout", "maximum"),
        ("resources: {pidsLimit: 9223372036854775808}", "spec.resources.pidsLimit", "maximum"),
        ("restartPolicy: {name: on-failure, maximumRetryCount: 99999999999}", "maximumRetryCount", "maximum"),
    ],
)
def test_numbers_out_of_the_engine_range_are_one_line(tmp_path: Path, spec: str, where: str, words: str) -> None:
    """NaN/inf printed a traceback; sizes and durations beyond int64 passed validation and failed at the engine."""
    write(tmp_path, "c.yaml", container(spec))
    line = one_error(validate(tmp_path))
    assert line.startswith("c.yaml:6: Container/web: ") and where in line and words in line, line


def _many(template: str, count: int) -> str:
    return "[" + ", ".join(template.format(i=i + 1) for i in range(count)) + "]"


@pytest.mark.parametrize(
    ("spec", "where", "words"),
    [
        ("env: {A: " + "y" * 200_000 + "}", "spec.env.A", "200,000 characters; at most 130,000"),
        ("env: {" + ", ".join(f"V{i}: x" for i in range(1001)) + "}", "spec.env", "1,001 entries; at most 1,000"),
        ("env:\n  ? " + "N" * 1025 + "\n  : x", "spec.env", "1,025 characters; at most 1,024"),  # a long key: `? `
        ("ports: " + _many("{{containerPort: {i}}}", 1025), "spec.ports", "1,025 items; at most 1,024"),
        ("mounts: " + _many("{{type: tmpfs, target: /t{i}}}", 257), "spec.mounts", "257 items; at most 256"),
        ("resources: {cpus: 1e-12}", "spec.resources.cpus", "YAML reads 1e-12 as text; write a number with a dot"),
        ("resources: {cpus: 1.0e-12}", "spec.resources.cpus", "less than the minimum of 0.01"),
    ],
    # short ids: the id is in PYTEST_CURRENT_TEST, which the validate subprocess inherits
    ids=["env-value", "env-count", "env-name", "ports", "mounts", "cpus-text", "cpus-tiny"],
)
def test_counts_and_sizes_are_bounded_at_validation(tmp_path: Path, spec: str, where: str, words: str) -> None:
    """Issue 24, defect 8 (and 10's `cpus: 1e-12`, which said only "must be a number, not a string"; written
    1.0e-12 it passed and became no CPU limit at all): one short line each, never the value itself."""
    write(tmp_path, "c.yaml", container(spec))
    line = one_error(validate(tmp_path))
    assert line.startswith(f"c.yaml:6: Container/web: {where}") and words in line, line
    assert len(line) < 300, line


def test_labels_and_replicas_are_bounded_at_validation(tmp_path: Path) -> None:
    """Issue 24, defect 8: `replicas: 1000000000` planned as a create; a 2 MB label value and 20,000 labels
    were accepted."""
    labels = "\n".join(f"    k{i}: v" for i in range(20_000))
    write(
        tmp_path,
        "many.yaml",
        f"apiVersion: reconciler/v1\nkind: Volume\nmetadata:\n  name: many\n  labels:\n{labels}\n",
    )
    write(
        tmp_path,
        "big.yaml",
        f"apiVersion: reconciler/v1\nkind: Volume\nmetadata: {{name: big, labels: {{b: {'x' * 2_000_000}}}}}\n",
    )
    write(
        tmp_path,
        "key.yaml",
        f"apiVersion: reconciler/v1\nkind: Volume\nmetadata:\n  name: key\n  labels:\n    ? {'k' * 1025}\n    : v\n",
    )
    write(
        tmp_path,
        "svc.yaml",
        "apiVersion: reconciler/v1\nkind: Service\nmetadata: {name: svc}\n"
        f"spec: {{image: {IMAGE}, replicas: 1000000000}}\n",
    )
    proc = validate(tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    lines = sorted(proc.stderr.splitlines()[:-1])
    assert lines == [
        "big.yaml:3: Volume/big: metadata.labels.b: 2,000,000 characters; at most 65,536",
        "key.yaml:5: Volume/key: metadata.labels: 1,025 characters; at most 1,024",
        "many.yaml:5: Volume/many: metadata.labels: 20,000 entries; at most 1,000",
        "svc.yaml:4: Service/svc: spec.replicas: 1000000000 is greater than the maximum of 10000",
    ], lines


@pytest.mark.parametrize("cap", ["ALL", "all", "SYS_ADMIN", "cap_sys_module", "SYS_PTRACE"])
def test_dangerous_capabilities_need_allow_privileged(tmp_path: Path, cap: str) -> None:
    """`capAdd: [ALL]` was accepted without the privileged opt-in."""
    write(tmp_path, "c.yaml", container(f"capAdd: [NET_ADMIN, {cap}]"))
    line = one_error(validate(tmp_path))
    assert line.startswith("c.yaml:6: Container/web: spec.capAdd[1]: capAdd ") and "allowPrivileged: true" in line
    write(tmp_path, "c.yaml", container(f"capAdd: [NET_ADMIN, {cap}]\nallowPrivileged: true"))
    assert validate(tmp_path).returncode == 0
    write(tmp_path, "c.yaml", container("capAdd: [NET_ADMIN, NET_RAW]"))
    assert validate(tmp_path).returncode == 0


def test_nul_in_a_name_is_escaped_in_the_error_line(tmp_path: Path) -> None:
    """A NUL (or a newline) in a name was echoed raw, cutting or hiding the error line."""
    write(tmp_path, "c.yaml", container("command: [x]", name='"we\\0b\\nx"'))
    proc = validate(tmp_path)
    line = one_error(proc)
    assert "\0" not in proc.stderr
    assert line.startswith("c.yaml:3: Container/we\\x00b\\nx: metadata.name: ")


# ---- the single-writer lock ------------------------------------------------------------------------------


@pytest.fixture
def lock_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RECONCILER_LOCK_DIR", str(tmp_path / "locks"))
    return tmp_path / "locks"


def test_two_spellings_of_one_socket_take_one_lock(lock_dir: Path, tmp_path: Path) -> None:
    """`unix:///run/x/docker.sock` and `unix:///run/x/./docker.sock` both ran at once."""
    (tmp_path / "run" / "x").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "run")
    sock = f"{tmp_path}/run/x/docker.sock"
    with ProjectLock("p", f"unix://{sock}"):
        for other in (f"unix://{tmp_path}/run/x/./docker.sock", f"unix://{tmp_path}//run/../run/x/docker.sock"):
            with pytest.raises(LockHeld):
                ProjectLock("p", other).acquire()
        with pytest.raises(LockHeld):
            ProjectLock("p", f"unix://{tmp_path}/link/x/docker.sock").acquire()
    with ProjectLock("p", f"unix://{tmp_path}/run/x/./docker.sock"):
        pass


def test_every_url_spelling_of_one_socket_takes_one_lock(lock_dir: Path, tmp_path: Path) -> None:
    """Issue 24, defect 3: with `watch` on `unix:///run/x.sock`, an `apply` on `unix:/run/x.sock` or
    `unix://run/x.sock` (docker-py's legacy spelling of the same socket) took its own lock and ran at once."""
    sock = f"{tmp_path}/docker.sock"
    relative = sock.lstrip("/")
    spellings = (f"unix:{sock}", f"unix://{relative}", f"unix:{relative}", f"http+unix://{relative}", sock)
    with ProjectLock("p", f"unix://{sock}"):
        for other in spellings:
            with pytest.raises(LockHeld):
                ProjectLock("p", other).acquire()
    for other in spellings:
        assert lock_path("p", other) == lock_path("p", f"unix://{sock}"), other


def test_the_unix_socket_path_is_the_one_docker_py_connects_to() -> None:
    from reconciler.drivers.engine.policy import unix_socket_path

    assert unix_socket_path("unix://run/x.sock") == "/run/x.sock"
    assert unix_socket_path("unix://Run/x.sock") == "/run/x.sock"  # docker-py's URL parser lowers the host part
    assert unix_socket_path("unix:/run/x.sock") == "/run/x.sock"
    assert unix_socket_path("unix://") == "/var/run/docker.sock"
    assert unix_socket_path("tcp://run:2375") is None


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("tcp://LOCALHOST:2375", "tcp://localhost"),
        ("tcp://127.0.0.1:2375/", "http://127.0.0.1:2375"),
        ("tcp://[::1]:2376", "tcp://[0:0::1]:2376"),
        ("ssh://u@Host", "ssh://u@host:22"),
    ],
)
def test_tcp_and_ssh_spellings_are_one_engine(a: str, b: str) -> None:
    from reconciler.core.lock import canonical_engine

    assert canonical_engine(a) == canonical_engine(b)
    assert lock_path("p", a) == lock_path("p", b)


def test_different_engines_stay_apart() -> None:
    from reconciler.core.lock import canonical_engine

    assert canonical_engine("tcp://h:2375") != canonical_engine("tcp://h:2376")
    assert canonical_engine("ssh://a@h") != canonical_engine("ssh://b@h")
    assert canonical_engine("unix:///a.sock") != canonical_engine("unix:///b.sock")


def test_a_writer_of_an_earlier_release_still_excludes_this_one(lock_dir: Path, tmp_path: Path) -> None:
    """Earlier releases hashed the URL as spelled: that lock file is taken as well, so an old writer and a new
    one never run at once during an upgrade."""
    import fcntl
    import hashlib

    spelled = f"unix://{tmp_path}/./docker.sock"
    legacy = lock_dir / f"p-{hashlib.sha256(spelled.encode()).hexdigest()[:10]}.lock"
    assert legacy != lock_path("p", spelled)
    lock_dir.mkdir(parents=True)
    fd = os.open(legacy, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(LockHeld):
            ProjectLock("p", spelled).acquire()
        # the canonical lock was released again when the legacy one was refused
        with ProjectLock("p", f"unix://{tmp_path}/docker.sock"):
            pass
    finally:
        os.close(fd)


# ---- the safe reader -------------------------------------------------------------------------------------


def test_safe_reader_rules(tmp_path: Path) -> None:
    from reconciler.core.safeio import UnsafeFile, read_bytes, read_text

    tree = tmp_path / "tree"
    ok = write(tree, "a.txt", "hello\n")
    assert read_text(ok, 100, tree=tree) == "hello\n"
    with pytest.raises(UnsafeFile, match="the limit is 5 bytes"):
        read_bytes(ok, 5, tree=tree)
    with pytest.raises(UnsafeFile, match="does not exist"):
        read_bytes(tree / "nope", 5)
    with pytest.raises(UnsafeFile, match="not a regular file"):
        read_bytes(tree, 5)
    with pytest.raises(UnsafeFile, match="not a regular file"):
        read_bytes("/dev/zero", 5)
    outside = write(tmp_path, "secret", "x\n")
    (tree / "lnk").symlink_to(outside)
    with pytest.raises(UnsafeFile, match="symbolic link leads out of"):
        read_bytes(tree / "lnk", 100, tree=tree)
    assert read_bytes(tree / "lnk", 100, tree=tree, follow_out=True) == b"x\n"
    (tmp_path / "bad.txt").write_bytes(b"\xff")
    with pytest.raises(UnsafeFile, match="not UTF-8"):
        read_text(tmp_path / "bad.txt", 10)


# ---- watch: the last-valid reader ------------------------------------------------------------------------


def test_watch_reads_manifests_safely_too(tmp_path: Path) -> None:
    """watch keeps the last valid version of each file: its reader refuses a link out of DIR and never blocks on
    a FIFO that replaced a manifest (the blank-file check read it whole)."""
    from reconciler.watch.lastgood import LastValid

    manifests = tmp_path / "m"
    write(manifests, "v.yaml", "apiVersion: reconciler/v1\nkind: Volume\nmetadata: {name: vol}\n")
    write(tmp_path, "outside.yaml", "apiVersion: reconciler/v1\nkind: Volume\nmetadata: {name: stolen}\n")
    (manifests / "x.yaml").symlink_to(tmp_path / "outside.yaml")
    last = LastValid(manifests)
    first = last.assemble(lambda resources: [])
    assert sorted(r.name for r in first.resources) == ["vol"]
    assert any("symbolic link leads out of" in p.message for p in first.problems)
    (manifests / "v.yaml").unlink()
    os.mkfifo(manifests / "v.yaml")
    start = time.monotonic()
    again = last.assemble(lambda resources: [])
    assert time.monotonic() - start < 10
    assert [r.name for r in again.resources] == ["vol"]  # the last valid version is kept
    assert any(p.message == "not a regular file" for p in again.problems)


# ---- compose import --------------------------------------------------------------------------------------


def test_compose_env_file_that_never_ends_is_reported_not_read(tmp_path: Path) -> None:
    """`reconcile import compose` checks each env_file: /dev/zero or a FIFO there hung the import (checked in a
    bounded child process, so a regression cannot eat this one's memory)."""
    os.mkfifo(tmp_path / "fifo.env")
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from reconciler.compose.envfiles import env_file_problem\n"
        "print(env_file_problem(Path('/dev/zero')))\n"
        "print(env_file_problem(Path(sys.argv[1])))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "fifo.env")],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        preexec_fn=_limits,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == [
        "/dev/zero is in a kernel pseudo file system, not an env file",
        "not a regular file",
    ]


# ---- swarm secrets and configs ---------------------------------------------------------------------------


def test_secret_and_config_files_are_read_safely(tmp_path: Path) -> None:
    """A Secret/Config `file` that is a FIFO, a device or a link out of the manifest directory is one error."""
    from reconciler.drivers.swarm.spec import normalize_data
    from reconciler.errors import SpecError
    from reconciler.model import Resource, Source

    manifests = tmp_path / "m"
    manifests.mkdir()
    write(tmp_path, "host-secret", "s3cret\n")
    os.mkfifo(manifests / "fifo.txt")
    (manifests / "lnk.txt").symlink_to(tmp_path / "host-secret")
    write(manifests, "ok.txt", "fine\n")

    def normalize(kind: str, file: str):
        source = Source("s.yaml", 1, manifests / "s.yaml")
        return normalize_data(Resource(kind, "data", {"file": file}, {}, source))

    assert normalize("Secret", "./ok.txt").spec["hash"]
    for kind, file, words in [
        ("Secret", "./fifo.txt", "not a regular file"),
        ("Config", "/dev/zero", "not a regular file"),
        ("Secret", "./lnk.txt", "symbolic link leads out of"),
    ]:
        with pytest.raises(SpecError) as err:
            normalize(kind, file)
        assert err.value.field == "spec.file" and words in err.value.message, err.value.message


@pytest.mark.parametrize("kind", ["Secret", "Config"])
@pytest.mark.parametrize(
    "file", ["/proc/self/environ", "/proc/1/environ", "/sys/kernel/mm/transparent_hugepage/enabled"]
)
def test_secret_and_config_files_under_proc_and_sys_are_refused(tmp_path: Path, kind: str, file: str) -> None:
    """Issue 24, defect 2: `spec: {file: /proc/self/environ}` made a swarm secret of reconcile's own environment."""
    from reconciler.drivers.swarm.spec import normalize_data
    from reconciler.errors import SpecError
    from reconciler.model import Resource, Source

    (tmp_path / "link.txt").symlink_to(file)
    for spelled in (file, str(tmp_path / "link.txt")):
        with pytest.raises(SpecError) as err:
            normalize_data(Resource(kind, "data", {"file": spelled}, {}, Source("s.yaml", 1, tmp_path / "s.yaml")))
        assert err.value.field == "spec.file"
        assert "kernel pseudo file system" in err.value.message or "symbolic link leads out" in err.value.message


def test_the_reader_never_reads_a_pseudo_file_system(tmp_path: Path) -> None:
    """Every reader, not only env files': what was opened counts, whatever the path said."""
    (tmp_path / "environ").symlink_to("/proc/self/environ")
    for path in ("/proc/self/environ", tmp_path / "environ"):
        with pytest.raises(UnsafeFile, match="kernel pseudo file system"):
            read_bytes(path, 1 << 20)


def test_a_data_file_at_a_sensitive_host_path_needs_the_opt_in(tmp_path: Path) -> None:
    """Issue 24, defect 2: a direct `file: /etc/shadow` was read without the sensitive-path opt-in (a symlink to
    it was refused). The same list as a bind mount's (sensitive_host_paths), outside the manifest directory."""
    from reconciler.core.safeio import read_data_file

    manifests = tmp_path / "m"
    manifests.mkdir()
    write(manifests, "ok.txt", "fine\n")
    (tmp_path / "elsewhere").symlink_to("/etc/hostname")
    for path in ("/etc/hostname", "/etc/../etc/hostname", tmp_path / "elsewhere"):
        with pytest.raises(UnsafeFile, match="sensitive host path /etc; set allowSensitive"):
            read_data_file(path, 1 << 20, manifests)
    with pytest.raises(UnsafeFile, match="kernel pseudo file system"):
        read_data_file("/proc/self/environ", 1 << 20, manifests, allow_sensitive=True)
    assert read_data_file("/etc/hostname", 1 << 20, manifests, allow_sensitive=True)
    assert read_data_file(manifests / "ok.txt", 1 << 20, manifests) == b"fine\n"
    (manifests / "shadow").symlink_to("/etc/hostname")  # inside the manifest directory: a link out, as before
    with pytest.raises(UnsafeFile, match="symbolic link leads out"):
        read_data_file(manifests / "shadow", 1 << 20, manifests)


@pytest.mark.parametrize(
    ("spec", "where"),
    [
        ("replicas: 99999999999999999999", "spec.replicas"),
        ("resources: {cpus: 1e300}", "spec.resources.cpus"),
        ("resources: {memory: 99999999p}", "spec.resources.memory"),
        ("stopGracePeriod: 9999999999999h", "spec.stopGracePeriod"),
    ],
)
def test_service_numbers_are_bounded_too(tmp_path: Path, spec: str, where: str) -> None:
    write(
        tmp_path,
        "s.yaml",
        f"apiVersion: reconciler/v1\nkind: Service\nmetadata: {{name: web}}\nspec:\n  image: {IMAGE}\n  {spec}\n",
    )
    line = one_error(validate(tmp_path))
    assert line.startswith("s.yaml:6: Service/web: ") and where in line, line


@pytest.mark.parametrize("kind", ["Secret", "Config"])
def test_secret_and_config_at_a_sensitive_host_path_need_allow_sensitive(tmp_path: Path, kind: str) -> None:
    """Issue 24, defect 2: a direct `file: /etc/shadow` was accepted without the opt-in (a link to it was not)."""
    doc = f"apiVersion: reconciler/v1\nkind: {kind}\nmetadata: {{name: data}}\nspec: {{file: /etc/hostname"
    write(tmp_path, "s.yaml", doc + "}\n")
    line = one_error(validate(tmp_path))
    assert line.startswith(f"s.yaml:4: {kind}/data: spec.file: /etc/hostname: /etc/hostname is inside the sensitive")
    assert "set allowSensitive: true" in line
    write(tmp_path, "s.yaml", doc + ", allowSensitive: true}\n")
    assert validate(tmp_path).returncode == 0
