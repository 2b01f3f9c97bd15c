"""The engine misbehaving through tests/faultproxy.py: transient 500s, dropped connections, stalls and slow
answers at 10 % and 30 % of requests. One `apply` converges at 10 %; at 30 % a failed apply leaves nothing that
the next one does not converge, and nothing is ever duplicated or leaked; `watch` stays converged at 10 %."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest

from tests.faultproxy import FaultProxy
from tests.helpers import LABEL_PROJECT, START_TIMEOUT, configured_docker_host, remove_project_objects, wait_for

pytestmark = pytest.mark.engine

SLEEPER = 'trap "exit 0" TERM; while :; do sleep 1; done'
APPS = ("a", "b", "c")


def engine_socket() -> str:
    host = configured_docker_host() or ""
    if not host.startswith("unix://"):
        pytest.fail("the fault proxy needs the test engine on a unix socket (DOCKER_HOST=unix://...)")
    return host


@pytest.fixture
def proxy_factory() -> Iterator[Callable[..., FaultProxy]]:
    started: list[FaultProxy] = []

    def make(**kwargs: float) -> FaultProxy:
        proxy = FaultProxy(engine_socket(), **kwargs).start()
        started.append(proxy)
        return proxy

    yield make
    for proxy in started:
        proxy.stop()


def faults(rate: float, seed: int, reset_after: float = 0.0) -> dict[str, float]:
    """`rate` of requests meet a fault: mostly 500s and dropped connections, some stalls and slow answers."""
    return {
        "seed": seed,
        "error": rate * 0.4,
        "reset": rate * 0.3 - reset_after,
        "reset_after": reset_after,
        "stall": rate * 0.15,
        "slow": rate * 0.15,
        "stall_seconds": 1.0,
        "slow_seconds": 0.5,
    }


def write_stack(write, p: str, image: str, version: str = "1", apps: Iterable[str] = APPS) -> None:
    docs = [
        f"""
        apiVersion: reconciler/v1
        kind: Volume
        metadata: {{name: {p}-data}}
        spec: {{reclaimPolicy: Delete}}
        """,
        f"""
        apiVersion: reconciler/v1
        kind: Network
        metadata: {{name: {p}-net}}
        spec: {{}}
        """,
    ]
    for app in apps:
        docs.append(
            f"""
            apiVersion: reconciler/v1
            kind: Container
            metadata: {{name: {p}-{app}}}
            spec:
              image: {image}
              command: ["sh", "-c", {json.dumps(SLEEPER)}]
              env: {{VERSION: "{version}"}}
              mounts: [{{type: volume, source: {p}-data, target: /data}}]
              networks: [{{name: {p}-net}}]
              stopTimeout: 1
            """
        )
    write("stack.yaml", "\n---\n".join(d.strip("\n") for d in docs))


def owned(api, project: str) -> dict[str, list[str]]:
    label = {"label": [f"{LABEL_PROJECT}={project}"]}
    return {
        "containers": sorted(c["Names"][0].lstrip("/") for c in api.containers(all=True, filters=label)),
        "running": sorted(c["Names"][0].lstrip("/") for c in api.containers(filters=label)),
        "networks": sorted(n["Name"] for n in api.networks(filters=label)),
        "volumes": sorted(v["Name"] for v in api.volumes(filters=label).get("Volumes") or []),
    }


def expected(p: str, apps: Iterable[str] = APPS) -> dict[str, list[str]]:
    names = sorted(f"{p}-{a}" for a in apps)
    return {"containers": names, "running": names, "networks": [f"{p}-net"], "volumes": [f"{p}-data"]}


def in_sync(reconcile, directory: Path) -> bool:
    """`plan` straight to the engine (no proxy) says nothing is pending."""
    return reconcile("plan", directory).returncode == 0


def test_one_apply_converges_at_a_10_percent_fault_rate(
    api, project_name, tmp_manifests, reconcile, base_image, proxy_factory
) -> None:
    write_stack(tmp_manifests, project_name, base_image)
    proxy = proxy_factory(**faults(0.10, seed=11))
    # --debug: repeated requests are logged at debug level
    done = reconcile("--debug", "apply", tmp_manifests.dir, env={"DOCKER_HOST": proxy.url})
    assert done.returncode == 0, done.stderr[-3000:]
    assert sum(proxy.faults.values()) >= 3, proxy.faults  # faults did happen
    assert "engine.request_retried" in done.stdout + done.stderr
    assert owned(api, project_name) == expected(project_name)
    assert in_sync(reconcile, tmp_manifests.dir)

    # an edit (a replace of every container) under the same faults converges in one apply as well
    write_stack(tmp_manifests, project_name, base_image, version="2")
    proxy.random.seed(12)
    done = reconcile("apply", tmp_manifests.dir, env={"DOCKER_HOST": proxy.url})
    assert done.returncode == 0, done.stderr[-3000:]
    assert owned(api, project_name) == expected(project_name)
    assert in_sync(reconcile, tmp_manifests.dir)


def test_at_30_percent_the_next_apply_converges_and_nothing_is_duplicated(
    api, project_name, tmp_manifests, reconcile, base_image, proxy_factory
) -> None:
    p = project_name
    proxy = proxy_factory(**faults(0.30, seed=3, reset_after=0.03))
    outcomes = []
    for version in ("1", "2"):  # creates, then replaces of every container
        write_stack(tmp_manifests, p, base_image, version=version)
        for attempt in range(6):
            proxy.random.seed(100 * int(version) + attempt)
            done = reconcile("apply", tmp_manifests.dir, env={"DOCKER_HOST": proxy.url})
            outcomes.append(done.returncode)
            seen = owned(api, p)
            # never more than declared, and never an aside container left once an apply succeeded
            assert len(seen["containers"]) <= 2 * len(APPS), seen
            assert len(seen["networks"]) <= 1 and len(seen["volumes"]) <= 1, seen
            if done.returncode == 0:
                break
            assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
        assert done.returncode == 0, f"no convergence after {attempt + 1} applies: {done.stderr[-3000:]}"
        assert owned(api, p) == expected(p)
        assert in_sync(reconcile, tmp_manifests.dir)
    assert sum(proxy.faults.values()) >= 10, proxy.faults


def test_one_apply_of_ten_containers_converges_at_30_percent_in_nine_runs_of_ten(
    api, project_name, tmp_manifests, reconcile, base_image, proxy_factory
) -> None:
    """Issue 24, defect 9 and outcome 6: at 30 % faults no apply converged (0 of 10): a read failing four times in
    a row ended the run, and every step that may not be repeated blindly failed it. Reads are now repeated more,
    and `apply` observes and plans again what an engine fault failed (never an outcome). Each run starts from
    nothing; a run that exits 0 must have converged (no false success)."""
    p = project_name
    apps = [f"app{i}" for i in range(10)]
    write_stack(tmp_manifests, p, base_image, apps=apps)
    proxy = proxy_factory(**faults(0.30, seed=1, reset_after=0.03))
    converged = []
    for run in range(10):
        proxy.random.seed(1000 + run)
        done = reconcile("apply", tmp_manifests.dir, env={"DOCKER_HOST": proxy.url})
        assert "Traceback" not in done.stderr, done.stderr[-3000:]
        seen = owned(api, p)
        assert len(seen["containers"]) <= 2 * len(apps) and len(seen["networks"]) <= 1, seen  # never duplicated
        ok = seen == expected(p, apps) and in_sync(reconcile, tmp_manifests.dir)
        assert ok or done.returncode != 0, f"exit 0 without converging: {seen}"
        converged.append((done.returncode == 0 and ok) or done.stdout[-1500:] + done.stderr[-1500:])
        remove_project_objects(api, p)
    print(f"converged in {sum(1 for c in converged if c is True)} of 10 runs")
    assert sum(1 for c in converged if c is True) >= 9, [c for c in converged if c is not True]
    assert sum(proxy.faults.values()) >= 100, proxy.faults


def test_watch_stays_converged_at_a_10_percent_fault_rate(
    api,
    project_name,
    tmp_manifests,
    base_image,
    proxy_factory,
    watch,
    reconcile,
) -> None:
    p = project_name
    write_stack(tmp_manifests, p, base_image)
    proxy = proxy_factory(**faults(0.10, seed=5))
    w = watch(tmp_manifests.dir, "--resync", "600", docker_host=proxy.url)
    wait_for(lambda: owned(api, p) == expected(p), 60, "the stack to converge under faults")
    w.wait_log("engine.events_connected", timeout=START_TIMEOUT)
    w.wait_log("pass.done", timeout=START_TIMEOUT)
    for round_ in range(3):
        victim = f"{p}-{APPS[round_]}"
        before = {c["Id"] for c in api.containers(all=True, filters={"name": [f"^{victim}$"]})}
        api.remove_container(victim, force=True)  # external drift, repaired through events under faults
        wait_for(
            lambda victim=victim, before=before: (
                owned(api, p) == expected(p)
                and {c["Id"] for c in api.containers(filters={"name": [f"^{victim}$"]})} - before
            ),
            60,
            f"{victim} to be repaired under faults",
            interval=0.3,
        )
    wait_for(lambda: in_sync(reconcile, tmp_manifests.dir), 30, "plan to say in sync", interval=1)
    assert w.proc.poll() is None
    assert w.stop() == 0
    assert sum(proxy.faults.values()) >= 3, proxy.faults
