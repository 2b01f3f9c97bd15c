"""Container normalization: units, defaults, env files, sensitivity and what the spec hash covers."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.drivers.container.spec import aside_name, normalize_container
from reconciler.drivers.engine.values import canonical_reference, command_line, parse_bytes, parse_duration
from reconciler.errors import SpecError
from reconciler.model import Resource, Source

IMAGE = "127.0.0.1:5000/reconciler/busybox:1.35"


def container(spec: dict, directory: Path = Path("/tmp"), labels: dict | None = None, name: str = "web") -> Resource:
    return Resource(
        "Container", name, {"image": IMAGE, **spec}, labels or {}, Source("c.yaml", 1, directory / "c.yaml")
    )


@pytest.mark.parametrize(
    ("text", "ns"),
    [("10s", 10 * 10**9), ("500ms", 5 * 10**8), ("1m30s", 90 * 10**9), ("1h", 3600 * 10**9), (5, 5 * 10**9), ("0", 0)],
)
def test_durations(text: str | int, ns: int) -> None:
    """Go-style durations and plain seconds become nanoseconds."""
    assert parse_duration(text, "f") == ns


@pytest.mark.parametrize("bad", ["10", "1x", "s", "1s2"])
def test_bad_durations(bad: str) -> None:
    """Anything else is a SpecError naming the field."""
    with pytest.raises(SpecError) as err:
        parse_duration(bad, "spec.healthcheck.interval")
    assert err.value.field == "spec.healthcheck.interval"


@pytest.mark.parametrize(
    ("text", "size"),
    [("64m", 64 * 2**20), ("1g", 2**30), ("1.5g", 3 * 2**29), ("512k", 2**19), ("64MiB", 64 * 2**20), (4096, 4096)],
)
def test_byte_sizes(text: str | int, size: int) -> None:
    """Sizes use binary units as the engine reads them."""
    assert parse_bytes(text, "f") == size


@pytest.mark.parametrize(
    ("ref", "canonical"),
    [
        ("busybox", "busybox:latest"),
        ("docker.io/library/busybox:1.35", "busybox:1.35"),
        ("127.0.0.1:5000/x/y", "127.0.0.1:5000/x/y:latest"),
        ("127.0.0.1:5000/x/y:2", "127.0.0.1:5000/x/y:2"),
        ("busybox@sha256:" + "a" * 64, "busybox@sha256:" + "a" * 64),
        ("busybox:1.35@sha256:" + "a" * 64, "busybox@sha256:" + "a" * 64),  # as the Image spells it: linked
    ],
)
def test_canonical_reference(ref: str, canonical: str) -> None:
    """Equivalent spellings of a reference normalize to one form (no replace for a cosmetic edit)."""
    assert canonical_reference(ref) == canonical


def test_command_string_is_split_like_a_shell() -> None:
    """A command string is split with shell quoting rules; a list is kept."""
    assert command_line("sh -c 'echo a b'") == ["sh", "-c", "echo a b"]
    assert command_line(["a", "b c"]) == ["a", "b c"]


def test_defaults_are_filled_so_explicit_defaults_hash_the_same() -> None:
    """Writing a default out (or a string command vs its list) never changes the hash."""
    bare = normalize_container(container({"command": "httpd -f"}))
    explicit = normalize_container(
        container(
            {
                "command": ["httpd", "-f"],
                "state": "running",
                "restartPolicy": {"name": "no"},
                "stopTimeout": 10,
                "privileged": False,
                "env": {},
                "ports": [],
                "capAdd": [],
            }
        )
    )
    assert bare.spec_hash == explicit.spec_hash
    assert bare.spec == explicit.spec


def test_in_place_fields_are_left_out_of_the_hash() -> None:
    """resources, restartPolicy, networks, state and dependsOn never change the hash (so never recreate)."""
    base = normalize_container(container({"networks": [{"name": "a"}]}))
    changed = normalize_container(
        container(
            {
                "resources": {"memory": "64m"},
                "restartPolicy": {"name": "always"},
                "networks": [{"name": "backend", "aliases": ["x"], "ipv4Address": "10.0.0.2"}],
                "state": "stopped",
                "dependsOn": [{"name": "db"}],
            }
        )
    )
    assert base.spec_hash == changed.spec_hash


def test_replace_fields_change_the_hash() -> None:
    """An env value or a label change the hash."""
    base = normalize_container(container({}))
    assert normalize_container(container({"env": {"A": "1"}})).spec_hash != base.spec_hash
    assert normalize_container(container({}, labels={"tier": "x"})).spec_hash != base.spec_hash


def test_env_files_merge_under_env_and_are_sensitive(tmp_path: Path) -> None:
    """envFiles are read relative to the manifest; `env` wins; file values and sensitiveEnv are sensitive."""
    (tmp_path / "app.env").write_text("# comment\nA=from-file\nB='quoted'\n\nexport C=3\n")
    desired = normalize_container(
        container({"envFiles": ["./app.env"], "env": {"A": "inline", "D": "x"}, "sensitiveEnv": ["D"]}, tmp_path)
    )
    assert desired.spec["env"] == {"A": "inline", "B": "quoted", "C": "3", "D": "x"}
    assert desired.sensitive == {"env.A", "env.B", "env.C", "env.D"}


def test_env_file_content_is_hashed(tmp_path: Path) -> None:
    """The same path with new content is a change; the hash never contains the value in clear."""
    env = tmp_path / "app.env"
    env.write_text("SECRET=one\n")
    first = normalize_container(container({"envFiles": ["app.env"]}, tmp_path))
    env.write_text("SECRET=two\n")
    second = normalize_container(container({"envFiles": ["app.env"]}, tmp_path))
    assert first.spec_hash != second.spec_hash
    assert "two" not in second.spec_hash


def test_missing_env_file_is_a_spec_error(tmp_path: Path) -> None:
    """A missing env file names the field `spec.envFiles.<i>`."""
    with pytest.raises(SpecError) as err:
        normalize_container(container({"envFiles": ["nope.env"]}, tmp_path))
    assert err.value.field == "spec.envFiles.0"


def test_bad_env_line_never_echoes_the_line(tmp_path: Path) -> None:
    """A malformed env file line is reported by number, without its (maybe secret) text."""
    (tmp_path / "x.env").write_text("GOOD=1\nhunter2\n")
    with pytest.raises(SpecError) as err:
        normalize_container(container({"envFiles": ["x.env"]}, tmp_path))
    assert "line 2" in err.value.message and "hunter2" not in err.value.message


def test_units_and_forms_are_canonical(tmp_path: Path) -> None:
    """Memory to bytes, cpus to NanoCpus, durations to ns, caps without CAP_, relative bind sources absolute."""
    (tmp_path / "conf").mkdir()
    desired = normalize_container(
        container(
            {
                "resources": {"memory": "64m", "cpus": 0.5},
                "healthcheck": {"test": "true", "interval": "2s"},
                "capAdd": ["cap_net_admin"],
                "mounts": [
                    {"type": "bind", "source": "./conf", "target": "/c"},
                    {"type": "tmpfs", "target": "/t", "size": "1m", "mode": "1777"},
                ],
                "ports": [{"containerPort": 80}],
            },
            tmp_path,
        )
    )
    spec = desired.spec
    assert spec["resources"]["memory"] == 64 * 2**20 and spec["resources"]["cpus"] == 5 * 10**8
    assert spec["healthcheck"] == {
        "test": ["CMD-SHELL", "true"],
        "interval": 2 * 10**9,
        "timeout": 30 * 10**9,
        "startPeriod": 0,
        "retries": 3,
    }
    assert spec["capAdd"] == ["NET_ADMIN"]
    assert spec["mounts"][0]["source"] == str(tmp_path / "conf")
    assert spec["mounts"][1] == {"type": "tmpfs", "target": "/t", "size": 2**20, "mode": 0o1777}
    assert spec["ports"] == [{"containerPort": 80, "protocol": "tcp", "hostIP": "0.0.0.0", "hostPort": None}]
    assert spec["networkMode"] == "bridge"


@pytest.mark.parametrize(("spelled", "stored"), [("/tmp/", "/tmp"), ("//srv//x/../y", "/srv/y"), ("/a/./b", "/a/b")])
def test_working_dir_is_compared_as_the_engine_stores_it(spelled: str, stored: str) -> None:
    """workingDir is cleaned like the engine does, so its spelling never shows as a change."""
    assert normalize_container(container({"workingDir": spelled})).spec["workingDir"] == stored


def test_aside_name_never_stacks() -> None:
    """The aside name is deterministic and applying it twice gives the same name."""
    assert aside_name("web") == "web__reconciler_old"
    assert aside_name(aside_name("web")) == "web__reconciler_old"
