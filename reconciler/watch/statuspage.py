"""What `watch` shows on its status page: every declared object's status, the last pass's plan and results, and
the recent history of changes, kept by the controller as passes run and read by the HTTP thread.

Values come from the plan and results the pass already has, rendered through `reconciler.output.render`, so sensitive
values appear exactly as the CLI shows them: `(sensitive)`.
"""

from __future__ import annotations

import html
import threading
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from reconciler.model import Action, Outcome, Plan, Result
from reconciler.output import render

HISTORY = 200  # changes kept for the page
REFRESH_SECONDS = 2


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def status_of(action: Action, blocked: str | None) -> str:
    """The status of a declared object as its plan sees it."""
    if blocked is not None:
        return "blocked"
    return {Action.NONE: "in sync", Action.CREATE: "missing"}.get(action, "drifted")


class StatusBoard:
    """Thread-safe: the controller writes as a pass goes, the HTTP thread takes snapshots."""

    def __init__(self, project: str, engine: str) -> None:
        self._lock = threading.Lock()
        self.project = project
        self.engine = engine
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.last_pass: dict[str, Any] | None = None
        self.last_changes: dict[str, Any] | None = None  # the last pass whose plan had something to do
        self.current: dict[str, Any] | None = None  # the pass running now
        self.history: deque[dict[str, Any]] = deque(maxlen=HISTORY)
        self.error: str | None = None  # why the last pass made no plan (engine away, inconsistent manifests)
        self.revision: Callable[[], dict[str, Any] | None] | None = None  # with a git source: the commit in force
        self.updates: dict[tuple[str, str], dict[str, str]] = {}  # what the last update check found, per object

    # --- the controller's side -------------------------------------------------------------------------

    def pass_started(self, number: int, reasons: list[str]) -> None:
        with self._lock:
            self.current = {"number": number, "reasons": reasons, "started": now_iso(), "finished": None}

    def planned(self, plan: Plan) -> None:
        """The pass's plan: every declared object takes the status the plan gives it (drifted, missing, ...)."""
        with self._lock:
            objects = {}
            for change in plan.changes:
                if change.desired is None:
                    continue
                previous = self.objects.get(change.key, {})
                objects[change.key] = {
                    "kind": change.kind,
                    "name": change.name,
                    "status": status_of(change.action, change.blocked),
                    "source": change.source,
                    "fields": [f.path for f in change.fields],
                    "blocked": change.blocked,
                    "lastError": None,
                    "errorClass": None,
                    "nextRetry": None,
                    "logTail": [],
                    "lastChange": previous.get("lastChange"),
                }
            self.objects = objects
            if self.current is not None:
                self.current["plan"] = [render.change_json(c) for c in plan.changes if c.pending or c.blocked]
                self.current["planText"] = render.plan_text(plan)
                self.current["pending"] = len(plan.pending)

    def result(self, result: Result) -> None:
        """One change settled: its object's status now, and a line of history when something was done."""
        change = result.change
        when = now_iso()
        with self._lock:
            row = self.objects.get(change.key)
            if result.outcome in (Outcome.APPLIED, Outcome.FAILED):
                entry = {
                    "time": when,
                    "kind": change.kind,
                    "name": change.name,
                    "action": change.action.value,
                    "outcome": result.outcome.value,
                    "fields": [f.path for f in change.fields],
                    "error": result.error,
                    "errorClass": result.error_class.value if result.error_class else None,
                    "seconds": round(result.seconds, 3),
                }
                self.history.appendleft(entry)
                if row is not None:
                    row["lastChange"] = {k: entry[k] for k in ("time", "action", "outcome", "fields")}
            if row is None:
                return
            if result.outcome in (Outcome.APPLIED, Outcome.UNCHANGED) and row["status"] != "blocked":
                row.update(status="in sync", fields=[])
            elif result.outcome is Outcome.FAILED:
                row.update(
                    status="failing",
                    lastError=result.error,
                    errorClass=result.error_class.value if result.error_class else None,
                    logTail=list(result.log_tail),
                )
            elif result.outcome in (Outcome.BLOCKED, Outcome.SKIPPED):
                row.update(status="blocked", blocked=result.error)

    def pass_done(self, results: list[Result], failures: dict[str, dict[str, Any]]) -> None:
        """The pass is over: retry times and error classes from the controller's backoff, results kept."""
        with self._lock:
            for subject, failure in failures.items():
                kind, _, name = subject.partition("/")
                row = self.objects.get((kind, name))
                if row is None or row["status"] == "in sync":
                    continue
                if failure.get("status") == "failing":
                    row.update(
                        status="failing",
                        lastError=failure.get("error"),
                        errorClass=failure.get("errorClass"),
                        nextRetry=failure.get("nextRetry"),
                        logTail=failure.get("logTail") or row["logTail"],
                    )
                else:
                    row.update(status="blocked", blocked=row["blocked"] or failure.get("error"))
            if self.current is not None:
                self.current["finished"] = now_iso()
                self.current["results"] = [
                    {
                        **render.change_json(r.change),
                        "outcome": r.outcome.value,
                        "error": r.error,
                        "seconds": round(r.seconds, 3),
                    }
                    for r in results
                    if r.outcome is not Outcome.UNCHANGED
                ]
                self.current["resultsText"] = render.results_text(results)
                if self.current.get("pending"):
                    self.last_changes = self.current
                self.last_pass, self.current = self.current, None
            self.error = None

    def pass_failed(self, error: str) -> None:
        with self._lock:
            if self.current is not None:
                self.current.update(finished=now_iso(), error=error, results=[], resultsText="")
                self.last_pass, self.current = self.current, None
            self.error = error

    def updates_found(
        self, found: dict[tuple[str, str], dict[str, str]], unchecked: Iterable[tuple[str, str]] = ()
    ) -> None:
        """The last update check's findings (watch/updates.py), shown until the next check; what an earlier check
        found for objects this one could not ask about (a registry down) stays."""
        with self._lock:
            kept = {key: self.updates[key] for key in unchecked if key in self.updates}
            self.updates = kept | dict(found)

    # --- the page's side -------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Everything the page shows, as the JSON of `/status.json`."""
        with self._lock:
            objects = [dict(self.objects[k], updateAvailable=self.updates.get(k)) for k in sorted(self.objects)]
            counts: dict[str, int] = {}
            for row in objects:
                counts[row["status"]] = counts.get(row["status"], 0) + 1
            return {
                "project": self.project,
                "engine": self.engine,
                "revision": self.revision() if self.revision is not None else None,
                "generated": now_iso(),
                "error": self.error,
                "running": dict(self.current) if self.current else None,
                "summary": counts,
                "objects": objects,
                "updates": [{"kind": k[0], "name": k[1], **u} for k, u in sorted(self.updates.items())],
                "lastPass": dict(self.last_pass) if self.last_pass else None,
                "lastPassWithChanges": dict(self.last_changes) if self.last_changes else None,
                "history": list(self.history),
            }


# --- HTML ----------------------------------------------------------------------------------------------------

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em;margin:0 0 .2em} h2{font-size:1.1em;margin:1.4em 0 .4em}
table{border-collapse:collapse;width:100%} th,td{text-align:left;padding:.3em .6em;border-bottom:1px solid #ddd;
vertical-align:top} th{background:#f4f4f4}
.status{font-weight:600;padding:.1em .5em;border-radius:.3em;white-space:nowrap}
.s-in-sync{background:#dff5e1;color:#1a6b2a} .s-drifted,.s-missing{background:#fff1cc;color:#7a5200}
.s-failing,.s-failed{background:#fde0e0;color:#9b1c1c} .s-applied{background:#dff5e1;color:#1a6b2a}
.s-blocked{background:#e8e0f8;color:#4b2a8a}
pre{background:#f7f7f7;padding:.6em;white-space:pre-wrap} td.subject{white-space:nowrap}
.muted{color:#777} .err{color:#9b1c1c} .update{color:#1d4f91}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _badge(status: str) -> str:
    return f'<span class="status s-{status.replace(" ", "-")}">{_e(status)}</span>'


def _object_detail(row: dict[str, Any]) -> str:
    parts = []
    if row["status"] in ("drifted", "missing") and row["fields"]:
        parts.append("differs: " + ", ".join(row["fields"]))
    if row["blocked"] and row["status"] == "blocked":
        parts.append(f"why: {row['blocked']}")
    if row["lastError"]:
        cls = f" ({row['errorClass']})" if row["errorClass"] else ""
        parts.append(f'<span class="err">last error{cls}: {_e(row["lastError"])}</span>')
    if row["nextRetry"]:
        parts.append(f"next retry {row['nextRetry']}")
    update = row.get("updateAvailable")
    if update:
        text = f"update available: {update['from']} -> {update['to']}"
        parts.append(f'<span class="update" title="{_e(update["reference"])}">{_e(text)}</span>')
    if row.get("logTail") and row["status"] != "in sync":
        parts.append(f'<pre class="logtail">{_e(chr(10).join(row["logTail"]))}</pre>')
    last = row.get("lastChange")
    if last:
        fields = f" ({', '.join(last['fields'])})" if last["fields"] else ""
        text = f"last change: {last['action']} {last['outcome']} {last['time']}{fields}"
        parts.append(f'<span class="muted">{_e(text)}</span>')
    return "<br>".join(p if p.startswith(("<span", "<pre")) else _e(p) for p in parts)


def _updates_html(updates: list[dict[str, Any]]) -> str:
    """The images whose update policy found something newer in the last check (none: no section)."""
    if not updates:
        return ""
    rows = "\n".join(
        f"<tr><td class=subject>{_e(u['kind'])}/{_e(u['name'])}</td><td>{_e(u['from'])}</td><td>{_e(u['to'])}</td>"
        f"<td>{_e(u['reference'])}</td></tr>"
        for u in updates
    )
    return (
        "<h2>Updates available</h2>\n<table id=updates><tr><th>image</th><th>now</th><th>available</th>"
        f"<th>reference</th></tr>\n{rows}\n</table>\n"
    )


def _pass_html(last: dict[str, Any] | None, prefix: str) -> str:
    if last is None:
        return '<p class="muted">No pass has finished yet.</p>'
    error = f'<p class="err">{_e(last.get("error"))}</p>' if last.get("error") else ""
    return (
        f"<p>Pass {_e(last['number'])} ({_e(', '.join(last['reasons']))}): started {_e(last['started'])}, "
        f"finished {_e(last['finished'])}</p>{error}"
        f"<h3>Plan</h3><pre id={prefix}plan>{_e(last.get('planText', ''))}</pre>"
        f"<h3>Results</h3><pre id={prefix}results>{_e(last.get('resultsText', ''))}</pre>"
    )


def _revision_html(revision: dict[str, Any] | None) -> str:
    """The commit in force (with a git source), and the newest commit's refusal."""
    if not revision:
        return ""
    applied = f"applied {_e(revision['appliedAt'])}" if revision.get("appliedAt") else "not applied in full yet"
    line = (
        f"<p id=revision>Commit <code>{_e(revision['commit'][:12])}</code> of {_e(revision['ref'])}: "
        f"{_e(revision['message'])} <span class=muted>({_e(revision['author'])}; {applied})</span></p>"
    )
    rejected = revision.get("rejected")
    if rejected:
        line += (
            f'<p class="err" id=rejected>Commit <code>{_e(rejected["commit"][:12])}</code> refused: '
            f"{_e(rejected['reason'])}</p>"
        )
    return line


def render_html(snap: dict[str, Any]) -> str:
    """The page for one snapshot: static HTML that reloads itself every few seconds."""
    rows = "\n".join(
        f'<tr data-subject="{_e(r["kind"])}/{_e(r["name"])}" data-status="{_e(r["status"])}">'
        f"<td class=subject>{_e(r['kind'])}/{_e(r['name'])}</td><td>{_badge(r['status'])}</td>"
        f"<td>{_object_detail(r)}</td><td class=muted>{_e(r['source'])}</td></tr>"
        for r in snap["objects"]
    )
    summary = ", ".join(f"{n} {s}" for s, n in sorted(snap["summary"].items())) or "no objects"
    last_html = _pass_html(snap["lastPass"], "")
    changed = snap["lastPassWithChanges"]
    if changed is not None and snap["lastPass"] is not None and changed["number"] != snap["lastPass"]["number"]:
        last_html += "<h2>Last pass that changed something</h2>" + _pass_html(changed, "changes-")
    history = "\n".join(
        f"<tr><td>{_e(h['time'])}</td><td>{_e(h['kind'])}/{_e(h['name'])}</td><td>{_e(h['action'])}</td>"
        f"<td>{_badge(h['outcome'])}</td>"
        f"<td>{_e(' — '.join(x for x in (', '.join(h['fields']), h['error']) if x))}</td></tr>"
        for h in snap["history"]
    )
    running = snap["running"]
    running_html = (
        f"<p id=running>Pass {_e(running['number'])} running since {_e(running['started'])}</p>" if running else ""
    )
    problem = f'<p class="err" id=problem>{_e(snap["error"])}</p>' if snap["error"] else ""
    problem = _revision_html(snap.get("revision")) + problem
    updates = _updates_html(snap.get("updates") or [])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{REFRESH_SECONDS}">
<title>reconcile watch: {_e(snap["project"])}</title><style>{_STYLE}</style></head>
<body>
<h1>Project {_e(snap["project"])}</h1>
<p class="muted">engine {_e(snap["engine"])} · page generated {_e(snap["generated"])} · refreshes every
{REFRESH_SECONDS} s · <a href="status.json">status.json</a></p>
{problem}{running_html}
<h2>Objects <span class="muted" id=summary>({_e(summary)})</span></h2>
<table id=objects><tr><th>object</th><th>status</th><th>detail</th><th>manifest</th></tr>
{rows}
</table>
{updates}<h2>Last pass</h2>
{last_html}
<h2>Recent changes</h2>
<table id=history><tr><th>time</th><th>object</th><th>action</th><th>outcome</th><th>fields / error</th></tr>
{history}
</table>
</body></html>
"""
