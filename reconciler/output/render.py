"""Plans, results and status as text for people and JSON for machines. Sensitive values never appear."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from reconciler.model import Action, Change, FieldChange, Outcome, Plan, Result

SENSITIVE = "(sensitive)"


def _value(value: Any) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, str):
        return json.dumps(value)
    return json.dumps(value, sort_keys=True, separators=(", ", ": "), default=str)


def _field_line(f: FieldChange) -> str:
    old = SENSITIVE if f.sensitive and f.old is not None else _value(f.old)
    new = SENSITIVE if f.sensitive and f.new is not None else _value(f.new)
    how = {Action.UPDATE: "in place", Action.REPLACE: "forces replace"}.get(f.action, f.action.value)
    note = f"; {f.note}" if f.note else ""
    return f"      {f.path}: {old} -> {new}  ({how}{note})"


def change_lines(change: Change) -> list[str]:
    where = f"  ({change.source})" if change.source else ""
    if change.blocked is not None:
        lines = [f"  ! {change.subject}: blocked: {change.blocked}{where}"]
    else:
        lines = [f"  {change.action.symbol} {change.subject}{where}"]
    lines += [_field_line(f) for f in change.fields]
    lines += [f"      step: {s}" for s in change.steps]
    return lines


def summary(plan: Plan) -> str:
    counts = Counter(c.action for c in plan.pending)
    parts = [f"{counts[a]} to {a.value}" for a in (Action.CREATE, Action.UPDATE, Action.REPLACE, Action.DELETE)]
    blocked = len(plan.blocked)
    return f"Plan: {', '.join(parts)}, {blocked} blocked."


def plan_text(plan: Plan) -> str:
    shown = [c for c in plan.changes if c.pending or c.blocked is not None]
    lines = [f"Project {plan.project}:"]
    if not shown:
        lines.append("  No changes: everything is in sync.")
    for change in shown:
        lines.extend(change_lines(change))
    for note in plan.notes:
        lines.append(f"  note: {note}")
    lines.append(summary(plan))
    return "\n".join(lines)


def _field_json(f: FieldChange) -> dict[str, Any]:
    return {
        "path": f.path,
        "old": SENSITIVE if f.sensitive and f.old is not None else f.old,
        "new": SENSITIVE if f.sensitive and f.new is not None else f.new,
        "action": f.action.value,
        "sensitive": f.sensitive,
    }


def change_json(change: Change) -> dict[str, Any]:
    return {
        "kind": change.kind,
        "name": change.name,
        "action": change.action.value,
        "source": change.source,
        "fields": [_field_json(f) for f in change.fields],
        "blocked": change.blocked,
        "steps": list(change.steps),
        "notes": list(change.notes),
    }


def plan_json(plan: Plan) -> str:
    counts = Counter(c.action.value for c in plan.pending)
    doc = {
        "project": plan.project,
        "inSync": plan.in_sync,
        "summary": {a.value: counts.get(a.value, 0) for a in Action if a is not Action.NONE}
        | {"blocked": len(plan.blocked)},
        "changes": [change_json(c) for c in plan.changes if c.pending or c.blocked is not None],
        "notes": list(plan.notes),
    }
    return json.dumps(doc, indent=2, default=str)


def result_line(result: Result) -> str:
    change = result.change
    if result.outcome is Outcome.APPLIED:
        return f"  {change.action.symbol} {change.subject}: {change.action.value}d in {result.seconds:.1f}s"
    return f"  ! {change.subject}: {result.outcome.value}: {result.error}"


def results_text(results: list[Result]) -> str:
    shown = [r for r in results if r.outcome is not Outcome.UNCHANGED]
    counts = Counter(r.outcome for r in results)
    lines = [result_line(r) for r in shown]
    lines.append(
        f"Apply: {counts[Outcome.APPLIED]} applied, {counts[Outcome.FAILED]} failed, "
        f"{counts[Outcome.BLOCKED]} blocked, {counts[Outcome.SKIPPED]} skipped, {counts[Outcome.UNCHANGED]} unchanged."
    )
    return "\n".join(lines)


def results_summary(results: list[Result]) -> str:
    """What follows the live view: the lines of changes that did not apply (errors in full), then the summary."""
    lines = results_text(results).splitlines()
    failed = [result_line(r) for r in results if r.outcome not in (Outcome.UNCHANGED, Outcome.APPLIED)]
    return "\n".join([*failed, lines[-1]])


def results_json(project: str, results: list[Result]) -> str:
    counts = Counter(r.outcome.value for r in results)
    doc = {
        "project": project,
        "converged": all(r.outcome in (Outcome.APPLIED, Outcome.UNCHANGED) for r in results),
        "summary": {o.value: counts.get(o.value, 0) for o in Outcome},
        "results": [
            {**change_json(r.change), "outcome": r.outcome.value, "error": r.error, "seconds": round(r.seconds, 3)}
            for r in results
        ],
    }
    return json.dumps(doc, indent=2, default=str)


# --- fleets: one section per Host, then the fleet's summary ------------------------------------------------------


def _host_title(run: Any) -> str:
    return f"Host {run.host.name} ({run.engine}):"


def fleet_plan_text(runs: list[Any]) -> str:
    blocks = []
    for run in runs:
        if run.plan is None:
            blocks.append(f"{_host_title(run)} failed: {run.error}")
        else:
            blocks.append(f"{_host_title(run)}\n{plan_text(run.plan)}")
    changed = sum(1 for r in runs if r.plan is not None and not r.plan.in_sync)
    down = sum(1 for r in runs if r.plan is None)
    counts = Counter(c.action for r in runs if r.plan is not None for c in r.plan.pending)
    parts = [f"{counts[a]} to {a.value}" for a in (Action.CREATE, Action.UPDATE, Action.REPLACE, Action.DELETE)]
    blocked = sum(len(r.plan.blocked) for r in runs if r.plan is not None)
    blocks.append(
        f"Fleet: {len(runs)} hosts, {changed} with changes, {down} failed; {', '.join(parts)}, {blocked} blocked."
    )
    return "\n".join(blocks)


def fleet_plan_json(project: str, runs: list[Any]) -> str:
    hosts = []
    totals: Counter[str] = Counter()
    for run in runs:
        entry: dict[str, Any] = {"host": run.host.name, "engine": run.engine, "error": run.error}
        if run.plan is not None:
            doc = json.loads(plan_json(run.plan))
            for change in doc["changes"]:
                change["host"] = run.host.name
            totals.update(doc["summary"])
            entry |= {k: doc[k] for k in ("inSync", "summary", "changes", "notes")}
        hosts.append(entry)
    doc = {
        "project": project,
        "inSync": all(r.plan is not None and r.plan.in_sync for r in runs),
        "summary": {a.value: totals.get(a.value, 0) for a in Action if a is not Action.NONE}
        | {"blocked": totals.get("blocked", 0), "failed": sum(1 for r in runs if r.plan is None)},
        "hosts": hosts,
    }
    return json.dumps(doc, indent=2, default=str)


def fleet_results_text(runs: list[Any]) -> str:
    blocks = []
    for run in runs:
        if run.skipped is not None:
            blocks.append(f"{_host_title(run)} {run.skipped}")
        elif run.results is None:
            blocks.append(f"{_host_title(run)} failed: {run.error}")
        else:
            blocks.append(f"{_host_title(run)}\n{results_text(run.results)}")
    failed = [r.host.name for r in runs if r.failed]
    skipped = [r.host.name for r in runs if r.skipped is not None]
    ok = len(runs) - len(failed) - len(skipped)
    blocks.append(
        f"Fleet: {len(runs)} hosts, {ok} converged, {len(failed)} failed"
        + (f" ({', '.join(failed)})" if failed else "")
        + f", {len(skipped)} not started."
    )
    return "\n".join(blocks)


def fleet_results_json(project: str, runs: list[Any]) -> str:
    hosts = []
    for run in runs:
        entry: dict[str, Any] = {
            "host": run.host.name,
            "engine": run.engine,
            "error": run.error,
            "skipped": run.skipped,
            "converged": not run.failed and run.skipped is None,
        }
        if run.results is not None:
            doc = json.loads(results_json(project, run.results))
            for result in doc["results"]:
                result["host"] = run.host.name
            entry |= {"summary": doc["summary"], "results": doc["results"]}
        hosts.append(entry)
    converged = all(h["converged"] for h in hosts)
    return json.dumps({"project": project, "converged": converged, "hosts": hosts}, indent=2, default=str)
