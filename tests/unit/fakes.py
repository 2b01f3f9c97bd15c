"""An in-memory driver for testing the core without an engine: objects live in a dict."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence

from reconciler.contract import BaseDriver
from reconciler.diffing import REPLACE, UPDATE, diff_specs, overall_action
from reconciler.errors import ReconcileError, SpecError, TemporaryError
from reconciler.model import Action, Change, Desired, Observed, Reference, Resource, Source, ownership_labels
from reconciler.spechash import spec_hash


def resource(kind: str, name: str, spec: dict | None = None, file: str = "m.yaml", line: int = 1) -> Resource:
    return Resource(
        kind,
        name,
        spec or {},
        {},
        Source(file, line, __import__("pathlib").Path("/tmp") / file),
        {"spec": line + 3, "metadata.name": line + 2},
    )


class FakeDriver(BaseDriver):
    """Kind with fields `size` (in place) and `colour` (replace); `needs: [Kind/name]` are references."""

    rank = 1
    project = "p"  # a plain attribute here, not the context's

    def __init__(self, kind: str, rank: int = 1, project: str = "p") -> None:
        self.kind = kind  # type: ignore[misc]
        self.rank = rank
        self.project = project
        self.objects: dict[str, Observed] = {}
        self.applied: list[tuple[str, Action]] = []
        self.fail: set[str] = set()
        self.fail_with: type[ReconcileError] = TemporaryError  # what a change named in `fail` raises
        self.lock = threading.Lock()

    def normalize(self, res: Resource) -> Desired:
        if res.spec.get("bad"):
            raise SpecError("spec.bad", "bad value")
        spec = {
            "size": res.spec.get("size", 1),
            "colour": res.spec.get("colour", "red"),
            "needs": list(res.spec.get("needs", [])),
        }
        return Desired(res, spec, spec_hash(self.kind, spec))

    def references(self, desired: Desired) -> Iterable[Reference]:
        for i, need in enumerate(desired.spec["needs"]):
            kind, _, name = need.partition("/")
            yield Reference(kind, name, f"spec.needs.{i}")

    def check(self, desired: Desired, catalog: object) -> Iterable[tuple[str, str]]:
        if desired.spec["size"] < 0:
            yield "spec.size", "must not be negative"

    def observe(self, desired: Sequence[Desired]) -> dict[str, Observed]:
        return dict(self.objects)

    def diff(self, desired: Desired, observed: Observed | None) -> Change:
        if observed is None:
            return Change(self.kind, desired.name, Action.CREATE, desired=desired)
        fields = diff_specs(
            {k: desired.spec[k] for k in ("size", "colour")}, observed.spec, {"size": UPDATE, "colour": REPLACE}
        )
        return Change(self.kind, desired.name, overall_action(fields), tuple(fields), desired, observed)

    def prune(self, observed: Observed) -> Change:
        return Change(self.kind, observed.name, Action.DELETE, observed=observed)

    def apply(self, change: Change) -> None:
        with self.lock:
            self.applied.append((change.name, change.action))
        if change.name in self.fail:
            raise self.fail_with(f"{change.name} failed on purpose")
        if change.action is Action.DELETE:
            del self.objects[change.name]
            return
        desired = change.desired
        assert desired is not None
        self.objects[change.name] = Observed(
            self.kind,
            change.name,
            f"id-{change.name}",
            ownership_labels(desired, self.project),
            {"size": desired.spec["size"], "colour": desired.spec["colour"]},
        )

    def put(self, name: str, size: int = 1, colour: str = "red", project: str | None = "p") -> None:
        labels = {"io.reconciler.project": project} if project else {}
        self.objects[name] = Observed(self.kind, name, f"id-{name}", labels, {"size": size, "colour": colour})
