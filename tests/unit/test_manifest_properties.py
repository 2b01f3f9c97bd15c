"""Property-based tests (hypothesis) of validation: for generated manifests, and for mutations of valid ones
(random keys, wrong types, huge numbers, NaN, unicode, deep nesting, references to nothing), the result is
either valid or a list of one-line `file:line` problems: never an exception, never a hang (a deadline per example),
never a use of the engine; and what validation accepts is within what the engine accepts.

Deterministic by default (`derandomize`, so CI sees the same examples every run); set HYPOTHESIS_PROFILE=thorough
for a longer random search.
"""

from __future__ import annotations

import copy
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.core.manifests import validators
from reconciler.core.project import ProjectRunner

settings.register_profile(
    "ci",
    max_examples=120,
    deadline=10_000,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "thorough",
    max_examples=2_000,
    deadline=10_000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

IMAGE = "127.0.0.1:5000/reconciler/busybox:1.35"
INT64 = 2**63
LINE = re.compile(r"^[^\n]+:\d+: \S")

BASE: list[dict[str, Any]] = [
    {
        "apiVersion": "reconciler/v1",
        "kind": "Container",
        "metadata": {"name": "web", "labels": {"tier": "front"}},
        "spec": {
            "image": IMAGE,
            "command": ["httpd", "-f"],
            "env": {"LOG_LEVEL": "info"},
            "envFiles": ["./web.env"],
            "ports": [{"containerPort": 80, "hostPort": 8080, "protocol": "tcp"}],
            "mounts": [
                {"type": "volume", "source": "data", "target": "/data"},
                {"type": "tmpfs", "target": "/tmp", "size": "64m"},
            ],
            "networks": [{"name": "backend", "aliases": ["api"], "ipv4Address": "10.10.0.10"}],
            "restartPolicy": {"name": "on-failure", "maximumRetryCount": 3},
            "healthcheck": {"test": ["CMD", "true"], "interval": "10s", "timeout": "5s", "retries": 3},
            "resources": {"memory": "256m", "cpus": 0.5, "pidsLimit": 200},
            "capAdd": ["NET_ADMIN"],
            "stopTimeout": 10,
            "dependsOn": [{"name": "db", "condition": "started"}],
        },
    },
    {
        "apiVersion": "reconciler/v1",
        "kind": "Container",
        "metadata": {"name": "db"},
        "spec": {"image": IMAGE, "networks": [{"name": "backend"}], "mounts": []},
    },
    {
        "apiVersion": "reconciler/v1",
        "kind": "Network",
        "metadata": {"name": "backend"},
        "spec": {"ipam": {"config": [{"subnet": "10.10.0.0/24", "gateway": "10.10.0.1"}]}},
    },
    {
        "apiVersion": "reconciler/v1",
        "kind": "Volume",
        "metadata": {"name": "data"},
        "spec": {"reclaimPolicy": "Retain"},
    },
    {
        "apiVersion": "reconciler/v1",
        "kind": "Image",
        "metadata": {"name": "app"},
        "spec": {"reference": "127.0.0.1:5000/app:1", "build": {"context": "./ctx", "args": {"V": "1"}}},
    },
    {
        "apiVersion": "reconciler/v1",
        "kind": "Service",
        "metadata": {"name": "api"},
        "spec": {
            "image": IMAGE,
            "replicas": 2,
            "env": {"A": "1"},
            "resources": {"memory": "64m", "cpus": 0.5},
            "secrets": [{"name": "token"}],
            "update": {"parallelism": 1, "delay": "5s"},
            "stopGracePeriod": "10s",
        },
    },
    {"apiVersion": "reconciler/v1", "kind": "Secret", "metadata": {"name": "token"}, "spec": {"file": "./web.env"}},
    {
        "apiVersion": "reconciler/v1",
        "kind": "FirewallAllowList",
        "metadata": {"name": "office"},
        "spec": {"interfaces": ["eth0"], "sources": ["192.168.1.0/24"], "ports": [{"port": 8080}]},
    },
]

NASTY_STRINGS = [
    "",
    "0",
    "-1",
    "1e400",
    "99999999p",
    "9999999999999h",
    "100000000000000000000",
    ".nan",
    "../../../../etc",
    "/dev/zero",
    "/proc/self/mem",
    "/",
    "ALL",
    "SYS_ADMIN",
    "bridge",
    "host",
    "none",
    "container:nope",
    "container:web",
    "nope",
    "web",
    "10.0.0.0/33",
    "10.10.0.0/24",
    "256.1.1.1",
    "::1",
    "we\x00b",
    "a\nb",
    "\u202e",
    "x" * 300,
    "io.reconciler.project",
]
NASTY_NUMBERS = [0, -1, 1, 2, 65535, 65536, 2**31, 2**63 - 1, 2**63, 2**64, 10**20, -(10**20), 0.5, 1e308]

text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from(NASTY_NUMBERS),
    st.floats(allow_nan=True, allow_infinity=True),
    text,
    st.sampled_from(NASTY_STRINGS),
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.one_of(text, st.sampled_from(["name", "type", "source"])), children, max_size=4)
    ),
    max_leaves=15,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path to a mapping entry or list item of `node`."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*prefix, key)
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield (*prefix, i)
            yield from _paths(value, (*prefix, i))


def _parent(doc: Any, path: tuple[Any, ...]) -> Any:
    for part in path[:-1]:
        doc = doc[part]
    return doc


@st.composite
def mutated_documents(draw: st.DrawFn) -> list[dict[str, Any]]:
    """The valid base documents with one to three mutations: a value replaced, a key removed or added."""
    docs = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        target = draw(st.sampled_from(range(len(docs))))
        paths = list(_paths(docs[target]))
        if not paths:
            continue
        path = draw(st.sampled_from(paths))
        parent = _parent(docs[target], path)
        action = draw(st.sampled_from(["replace", "replace", "remove", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(values)
        elif action == "remove":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.one_of(text, st.sampled_from(["allowPrivileged", "privileged", "build", "spec"])))] = draw(
                values
            )
        else:
            parent.append(draw(values))
    return docs


class NoEngine:
    """An engine handle that fails the test on any use: validation must never reach an engine."""

    url = "unix:///nonexistent/docker.sock"
    used: list[str] = []

    def client(self) -> Any:
        NoEngine.used.append("client")
        raise AssertionError("validation used the engine")

    def __getattr__(self, name: str) -> Any:
        NoEngine.used.append(name)
        raise AssertionError(f"validation used the engine ({name})")


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="props-"))
    (path / "m").mkdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _runner(directory: Path) -> ProjectRunner:
    return ProjectRunner(project="props", manifest_dir=directory, engine=NoEngine())  # type: ignore[arg-type]


def _write_tree(directory: Path, body: str) -> None:
    for old in directory.iterdir():
        if old.is_dir():
            shutil.rmtree(old)
        else:
            old.unlink()
    (directory / "web.env").write_text("A=1\n")
    (directory / "ctx").mkdir()
    (directory / "ctx" / "Dockerfile").write_text("FROM scratch\n")
    (directory / "m.yaml").write_text(body, encoding="utf-8")


def _check_bounded(node: Any, where: str) -> None:
    """What validation accepted fits the engine: integers in int64, floats finite."""
    if isinstance(node, bool):
        return
    if isinstance(node, int):
        assert -INT64 <= node < INT64, where
    elif isinstance(node, float):
        assert math.isfinite(node), where
    elif isinstance(node, dict):
        for key, value in node.items():
            _check_bounded(value, f"{where}.{key}")
    elif isinstance(node, list | tuple):
        for i, value in enumerate(node):
            _check_bounded(value, f"{where}.{i}")


def _assert_valid_or_one_line_problems(directory: Path) -> None:
    loaded = _runner(directory).load()  # never raises for bad input
    assert NoEngine.used == []
    for problem in loaded.problems:
        line = str(problem)
        assert "\n" not in line and line.isprintable(), repr(line)
        assert LINE.match(line), line
        assert problem.file == "m.yaml" or problem.file.endswith(".yaml") or problem.line == 0, line
    if not loaded.problems:
        for key, desired in loaded.catalog.desired.items():
            _check_bounded(dict(desired.spec), f"{key[0]}/{key[1]}")
            for port in desired.spec.get("ports") or []:
                for name in ("containerPort", "hostPort", "port"):
                    if isinstance(port, dict) and port.get(name) is not None:
                        assert 1 <= port[name] <= 65535


def test_the_base_documents_are_valid(workdir: Path) -> None:
    _write_tree(workdir / "m", yaml.safe_dump_all(BASE))
    loaded = _runner(workdir / "m").load()
    assert [str(p) for p in loaded.problems] == []
    assert len(loaded.resources) == len(BASE)


@given(docs=mutated_documents())
def test_mutations_of_valid_manifests_are_valid_or_one_line_errors(workdir: Path, docs: list[dict[str, Any]]) -> None:
    _write_tree(workdir / "m", yaml.safe_dump_all(docs, allow_unicode=True))
    _assert_valid_or_one_line_problems(workdir / "m")


@given(doc=st.dictionaries(st.sampled_from(["apiVersion", "kind", "metadata", "spec", "x"]), values, max_size=5))
def test_generated_documents_are_valid_or_one_line_errors(workdir: Path, doc: dict[str, Any]) -> None:
    doc.setdefault("apiVersion", "reconciler/v1")
    _write_tree(workdir / "m", yaml.safe_dump(doc, allow_unicode=True))
    _assert_valid_or_one_line_problems(workdir / "m")


YAML_PIECES = ["a", ":", " ", "\n", "-", "[", "]", "{", "}", "&x", "*x", "<<", "!!python/object:os.system", "'", '"']
YAML_PIECES += ["---", "kind: Container", "apiVersion: reconciler/v1", "\t", "#", "?", "|", ">", "%YAML 1.1", "\x00"]


@given(body=st.lists(st.sampled_from(YAML_PIECES) | text, max_size=40).map("".join))
def test_arbitrary_text_is_valid_or_one_line_errors(workdir: Path, body: str) -> None:
    _write_tree(workdir / "m", body)
    _assert_valid_or_one_line_problems(workdir / "m")


@given(depth=st.integers(min_value=1, max_value=20_000), kind=st.sampled_from(["[", "{a: ", "- "]))
def test_deep_nesting_is_refused_quickly(workdir: Path, depth: int, kind: str) -> None:
    close = {"[": "]", "{a: ": "}", "- ": ""}[kind]
    body = "apiVersion: reconciler/v1\nkind: Volume\nmetadata: {name: deep}\nspec:\n  driverOpts: "
    if kind == "- ":
        body += "\n" + "".join("  " * (i + 2) + "- \n" for i in range(min(depth, 3000)))
    else:
        body += kind * depth + close * depth + "\n"
    _write_tree(workdir / "m", body)
    _assert_valid_or_one_line_problems(workdir / "m")


def test_the_fast_validator_never_accepts_what_the_reference_refuses() -> None:
    """jsonschema-rs only says "valid" quickly; it must never call valid what jsonschema refuses.

    A document the accelerator cannot take (it raises) counts as not accepted, as in `_fast_valid`; the tallies
    make sure the property was tested on documents it did take, both accepted and refused ones, and not passed
    because every document raised or was skipped."""
    from reconciler.core.manifests import fast_validators

    fast = fast_validators()
    # jsonschema-rs is a dependency (pyproject.toml): no compiled validators means a broken install or schema.
    assert set(fast) >= {d["kind"] for d in BASE}, sorted(fast)
    tally = {"raised": 0, "accepted": 0, "refused": 0}

    @given(docs=mutated_documents())
    def check(docs: list[dict[str, Any]]) -> None:
        for doc in docs:
            value = yaml.safe_load(yaml.safe_dump(doc, allow_unicode=True))  # as the loader would see it
            kind = value.get("kind") if isinstance(value, dict) else None
            if not isinstance(kind, str) or kind not in fast:
                continue
            try:
                quick = fast[kind].is_valid(value)
            except Exception:
                tally["raised"] += 1
                continue
            tally["accepted" if quick else "refused"] += 1
            if quick:
                assert list(validators()[kind].iter_errors(value)) == [], doc

    check()
    judged = tally["accepted"] + tally["refused"]
    assert tally["accepted"] > 0 and tally["refused"] > 0 and judged >= 4 * tally["raised"], tally
