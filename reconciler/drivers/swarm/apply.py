"""Service changes on the engine: the ServiceSpec built from the canonical spec (the inverse of observe.py), and
the steps that send it (ServiceSteps: create, update, remove, the waits and the rollback).

The ServiceSpec builders are pure. An update starts from the service's current document and overwrites only
what the manifest manages, so what someone else set (a log driver, platforms) survives, and a change that does not
touch the task template leaves it byte for byte as it was: swarm rolls no task for it.
"""

from __future__ import annotations

import copy
import datetime
import time
from collections.abc import Callable, Mapping
from typing import Any

from reconciler.drivers.engine import lazy
from reconciler.drivers.engine.errors import engine_errors, explain, registry_failure
from reconciler.drivers.swarm.converge import ServiceWaiter
from reconciler.drivers.swarm.diff import IMAGE_FOLLOW, MARKERS, ROLLOUT
from reconciler.drivers.swarm.fields import FIELDS, SECOND, Building, rolls_tasks
from reconciler.drivers.swarm.observe import ServiceFacts
from reconciler.errors import PermanentError, ReconcileError, TemporaryError
from reconciler.model import Action, Change, Desired

REMOVAL_WAIT_SECONDS = 60.0


def _built(part: str, building: Building) -> dict[str, Any]:
    """`building.doc` with every field of `part` written into it (each row of fields.FIELDS writes its own)."""
    for row in FIELDS:
        if row.part == part and row.write is not None:
            row.write(building.spec[row.key] if row.normalize is not None else None, building)
    return building.doc


def task_template(
    spec: Mapping[str, Any],
    image: str,
    secret_ids: Mapping[str, tuple[str, str]],
    config_ids: Mapping[str, tuple[str, str]],
    current: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """TaskTemplate for `spec`, over the `current` one (kept keys the manifest does not manage)."""
    task = copy.deepcopy(dict(current or {}))
    task.pop("Runtime", None)  # engine-filled; it fills it again
    task.setdefault("ContainerSpec", {})
    _built("task", Building(spec, task, image=image, secret_ids=secret_ids, config_ids=config_ids))
    task.setdefault("ForceUpdate", 0)
    return task


def endpoint_spec(spec: Mapping[str, Any], current: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return _built("endpoint", Building(spec, dict(current or {})))


def service_spec(
    name: str,
    spec: Mapping[str, Any],
    labels: Mapping[str, str],
    template: Mapping[str, Any],
    endpoint: Mapping[str, Any],
    current: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The whole ServiceSpec: `template`/`endpoint` as built above (or the current ones, kept untouched)."""
    out = copy.deepcopy(dict(current or {}))
    out["Name"] = name
    out["TaskTemplate"] = dict(template)
    _built("service", Building(spec, out, labels=labels))
    out["EndpointSpec"] = dict(endpoint)
    out.pop("Networks", None)  # deprecated top-level form; TaskTemplate.Networks is the one
    return out


def reworded(exc: ReconcileError, message: str) -> ReconcileError:
    """The same error (class, retry delay) saying `message`."""
    clone = copy.copy(exc)
    clone.args = (message,)
    return clone


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ServiceSteps:
    """The apply steps of one service change on the engine: create (then wait; removed again when its first tasks
    never run), update from the current spec with its version (then wait; a failed rolling update is rolled back),
    remove (then wait until its task containers are gone). `errors` names what failed (the driver's), `labels` gives
    a service's labels, `wanted` the Secret/Config versions the plan chose (service -> "secrets"/"configs" ->
    declared name -> engine name), `timeout` the seconds a wait may take (read only when waiting)."""

    def __init__(
        self,
        api: Any,
        log: Any,
        errors: Callable[[str, str], Any],
        labels: Callable[[Desired], dict[str, str]],
        wanted: Mapping[str, Mapping[str, Mapping[str, str]]],
        wait: bool,
        timeout: Callable[[], float],
    ) -> None:
        self.api = api
        self.log = log
        self.errors = errors
        self.labels = labels
        self.wanted = wanted
        self.wait = wait
        self.timeout = timeout

    def run(self, change: Change) -> None:
        name = change.name
        if change.action is Action.DELETE:
            assert change.observed is not None
            self._remove(name, change.observed.id)
            return
        desired = change.desired
        assert desired is not None
        if change.action is Action.CREATE or change.action is Action.REPLACE:
            if change.action is Action.REPLACE:
                assert change.observed is not None
                self._remove(name, change.observed.id)
            self._create(desired, change)
            return
        assert change.observed is not None
        self._update(desired, change)

    def _resolve(self, desired: Desired) -> str:
        """`ref@digest` for the declared reference, from its registry (the engine's distribution inspect)."""
        ref = desired.spec["image"]
        if "@" in ref:
            return ref
        where = f"service {desired.name}: image {ref} cannot be resolved to a digest"
        try:
            digest = self.api.inspect_distribution(ref)["Descriptor"]["digest"]
        except lazy.APIError as exc:
            raise registry_failure(where, explain(exc)) from None
        except Exception as exc:
            raise TemporaryError(f"{where}: {exc}") from None
        return f"{ref}@{digest}"

    def _data_ids(
        self, desired: Desired, change: Change
    ) -> tuple[dict[str, tuple[str, str]], dict[str, tuple[str, str]]]:
        """Declared name -> (ID, engine name) of the secret/config version each attachment uses."""
        wanted = self.wanted.get(desired.name, {})
        facts = change.observed.raw if change.observed is not None else None
        found: dict[str, dict[str, tuple[str, str]]] = {"secrets": {}, "configs": {}}
        for key, list_fn in (("secrets", self.api.secrets), ("configs", self.api.configs)):
            in_use = getattr(facts, f"{key[:-1]}_versions", {}) if isinstance(facts, ServiceFacts) else {}
            for ref in desired.spec[key]:
                # the version the plan chose, else the one in use, else an engine object of that very name
                engine = wanted.get(key, {}).get(ref["name"]) or in_use.get(ref["name"]) or ref["name"]
                with self.errors(desired.name, f"find {key[:-1]} {engine}"):
                    matches = [s for s in list_fn(filters={"name": engine}) if s["Spec"]["Name"] == engine]
                if not matches:
                    raise PermanentError(f"service {desired.name}: {key[:-1]} {ref['name']} ({engine}) does not exist")
                found[key][ref["name"]] = (matches[0]["ID"], engine)
        return found["secrets"], found["configs"]

    def _create(self, desired: Desired, change: Change) -> None:
        name = desired.name
        image = self._resolve(desired)
        secret_ids, config_ids = self._data_ids(desired, change)
        body = service_spec(
            name,
            desired.spec,
            self.labels(desired),
            task_template(desired.spec, image, secret_ids, config_ids),
            endpoint_spec(desired.spec),
        )
        since = _now()
        with self.errors(name, "create"):
            created = self.api._result(self.api._post_json(self.api._url("/services/create"), data=body), True)
        service_id = created["ID"]
        self.log.info("service.created", name=name, id=service_id[:12], image=image)
        if not self.wait:
            return
        try:
            with self.errors(name, "wait"):
                settle = desired.spec["update"]["monitor"] / SECOND  # how long swarm itself watches a new task
                ServiceWaiter(self.api, self.log, self.timeout()).wait(name, service_id, since, settle=settle)
        except ReconcileError as exc:
            # a service whose first tasks never run leaves nothing behind: the next apply creates it afresh
            with self.errors(name, "remove after a failed create"):
                self.api.remove_service(service_id)
            self.log.warning("service.create_failed", name=name, error=str(exc))
            raise reworded(exc, f"service {name}: created but did not converge ({exc}); removed again") from None
        self.log.info("service.converged", name=name)

    def _settle(self, name: str, service_id: str, change: Change) -> None:
        """Deal with where the plan found the service, under the rules of an update of our own: an update in
        flight (an interrupted apply's) is waited for and rolled back when it fails, a paused one rolled back, a
        rollback in flight waited for (each of those then fails: the declared spec did not converge), missing tasks
        waited for. The state is read again: it may have moved on since the plan."""
        more = any(f.path not in MARKERS for f in change.fields)
        hint = "; the next apply updates it to the declared spec" if more else ""
        found = any(f.path == ROLLOUT for f in change.fields)
        with self.errors(name, "inspect"):
            info = self.api.inspect_service(service_id)
        status = info.get("UpdateStatus") or {}
        state = status.get("State") or ""
        waiter = ServiceWaiter(self.api, self.log, self.timeout())
        started = status.get("StartedAt") or _now()
        if state == "updating":
            self.log.info("service.resuming", name=name, state=state, started=started)
            try:
                with self.errors(name, "wait"):
                    waiter.wait(name, service_id, started)
            except ReconcileError as exc:
                outcome = self._roll_back(name, service_id)
                raise PermanentError(
                    f"service {name}: the update in flight (found {state}) failed: {exc}; {outcome}{hint}"
                ) from None
            self.log.info("service.converged", name=name)
            return
        if state == "paused":
            with self.errors(name, "inspect tasks"):
                why = waiter.look(service_id, started)[0].failure or f"update paused: {status.get('Message', '')}"
            outcome = self._roll_back(name, service_id)
            raise PermanentError(f"service {name}: found its {why}; {outcome}{hint}")
        if state in ("rollback_started", "rollback_completed") and found:
            outcome = self._roll_back(name, service_id)  # waits for a rollback in flight; sends none
            raise PermanentError(
                f"service {name}: the update found in flight was rolled back ({state}); {outcome}{hint}"
            )
        if state == "rollback_paused":
            if more:
                return  # the declared spec is sent next: it may run where both others did not
            raise PermanentError(
                f"service {name}: its rollback is paused ({status.get('Message') or 'no message'}): neither the "
                "declared spec nor the previous one runs; change the manifest"
            )
        if more:
            return  # the update sent next is waited for
        try:
            with self.errors(name, "wait"):
                waiter.wait(name, service_id, _now())
        except ReconcileError as exc:
            raise reworded(exc, f"service {name}: {exc}") from None
        self.log.info("service.converged", name=name)

    def _update(self, desired: Desired, change: Change) -> None:
        name = desired.name
        observed = change.observed
        assert observed is not None
        if self.wait and any(f.path in MARKERS for f in change.fields):
            self._settle(name, observed.id, change)
        fields = [f for f in change.fields if f.path not in MARKERS]
        if not fields:
            return
        with self.errors(name, "inspect"):
            info = self.api.inspect_service(observed.id)
        current = info["Spec"]
        rolling = any(rolls_tasks(f.path) for f in fields)
        if rolling:
            image_changed = any(f.path == "image" for f in fields)
            running = current["TaskTemplate"]["ContainerSpec"]["Image"]
            image = self._resolve(desired) if image_changed else running
            if image == running and all(f.note == IMAGE_FOLLOW for f in fields):
                self.log.info("service.image_unchanged", name=name, image=image)
                return  # the rebuilt image has the digest the service runs: nothing to send
            secret_ids, config_ids = self._data_ids(desired, change)
            template = task_template(desired.spec, image, secret_ids, config_ids, current.get("TaskTemplate"))
            endpoint = endpoint_spec(desired.spec, current.get("EndpointSpec"))
        else:
            template, endpoint = current["TaskTemplate"], current.get("EndpointSpec") or {"Mode": "vip"}
        body = service_spec(name, desired.spec, self.labels(desired), template, endpoint, current)
        version = info["Version"]["Index"]
        since = _now()
        with self.errors(name, "update"):
            url = self.api._url("/services/{0}/update", observed.id)
            self.api._result(self.api._post_json(url, data=body, params={"version": version}), True)
        self.log.info("service.updated", name=name, rolling=rolling, fields=[f.path for f in fields])
        if not self.wait:
            return
        if not rolling and not any(f.path == "replicas" for f in fields):
            return
        try:
            with self.errors(name, "wait"):
                ServiceWaiter(self.api, self.log, self.timeout()).wait(name, observed.id, since, expect_update=rolling)
        except ReconcileError as exc:
            if not rolling:
                raise reworded(exc, f"service {name}: {exc}") from None
            outcome = self._roll_back(name, observed.id)
            raise PermanentError(f"service {name}: update failed: {exc}; {outcome}") from None
        self.log.info("service.converged", name=name)

    def _roll_back(self, name: str, service_id: str) -> str:
        """Back to the spec before this update (swarm's own rollback, with the rollback config)."""
        waiter = ServiceWaiter(self.api, self.log, self.timeout())
        with self.errors(name, "inspect for rollback"):
            info = self.api.inspect_service(service_id)
        state = (info.get("UpdateStatus") or {}).get("State")
        if state not in ("rollback_started", "rollback_completed", "rollback_paused"):
            try:
                with engine_errors(f"service {name}: roll back"):
                    url = self.api._url("/services/{0}/update", service_id)
                    params = {"version": info["Version"]["Index"], "rollback": "previous"}
                    self.api._result(self.api._post_json(url, data=info["Spec"], params=params), True)
            except ReconcileError as exc:
                return f"the rollback failed too: {exc}"
            self.log.warning("service.rolling_back", name=name)
        final = waiter.wait_rollback(service_id)
        if final == "rollback_completed":
            self.log.warning("service.rolled_back", name=name)
            return "rolled back to the previous spec"
        return f"rollback did not complete: {final}"

    def _remove(self, name: str, service_id: str) -> None:
        """Remove the service and wait until its task containers are gone (they hold networks, secrets)."""
        with self.errors(name, "remove"):
            try:
                self.api.remove_service(service_id)
            except lazy.NotFound:
                return
        self.log.info("service.removed", name=name)
        deadline = time.monotonic() + REMOVAL_WAIT_SECONDS
        while time.monotonic() < deadline:
            with self.errors(name, "wait for its tasks to go"):
                left = self.api.containers(all=True, filters={"label": f"com.docker.swarm.service.id={service_id}"})
            if not left:
                return
            time.sleep(0.5)
        self.log.warning("service.tasks_linger", name=name, containers=len(left))
