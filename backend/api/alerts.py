"""The web's and API's view of alerting: the worklist scoped to the user, kvittering, green
readings, alert history, thresholds, plans, passive intervals and population metrics.

Alert state and logic live in :mod:`backend.alerting` (its service functions are called here);
this module only scopes, shapes for the screens, and handles the one thing alerting does not
own: kvittering of *green* readings (no alert) through a per-patient review watermark
(migration 0301), which also tells the citizen "seen" through a receipt.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from backend.accounts.model import Role, User
from backend.accounts.scope import can_read_patient, scope_clause
from vitals.kinds import MeasurementKind, spec

log = logging.getLogger(__name__)
SEVERITY_ORDER = {"red": 0, "yellow": 1, "blue": 2, "technical": 3, "green": 4}
GREEN_WINDOW = timedelta(days=3)
GREEN_SHOWN = 200
"""Green rows listed (oldest first); "kvittér alle grønne" covers all of them."""


def _alerting() -> Any:
    from backend import alerting

    return alerting


def available() -> bool:
    """Whether alerting's service functions are importable (they land separately)."""
    a = _alerting()
    return all(
        hasattr(a, n)
        for n in (
            "worklist",
            "acknowledge",
            "alert_history",
            "thresholds_for",
            "threshold_audit",
            "monitoring_plan",
            "alert_burden",
            "adherence",
        )
    )


@dataclass(frozen=True, slots=True)
class GreenRow:
    patient_id: int
    patient_name: str
    patient_ref: str
    municipality: str
    programme: str
    readings: int
    newest_at: datetime


@dataclass(frozen=True, slots=True)
class WorklistView:
    rows: list[Any]
    """alerting.WorklistEntry, in the user's scope, worst first then oldest."""
    green: list[GreenRow]
    teams: list[tuple[str, str]]
    counts: dict[str, int] = field(default_factory=dict)


def _in_scope(user: User, *, patient_id: int, municipality: str, department: str | None) -> bool:
    return can_read_patient(user, patient_id=patient_id, municipality=municipality, department=department)[0]


def _teams(conn: psycopg.Connection, user: User) -> list[tuple[str, str]]:
    if user.role is Role.NURSE:
        rows = conn.execute(
            "SELECT key, name FROM teams WHERE municipality = %s OR id = %s ORDER BY name",
            (user.municipality, user.team_id),
        ).fetchall()
    elif user.role is Role.SPECIALIST:
        rows = conn.execute(
            "SELECT key, name FROM teams WHERE department = %s OR id = %s ORDER BY name",
            (user.department, user.team_id),
        ).fetchall()
    else:
        rows = []
    return [(r[0], r[1]) for r in rows]


def worklist(
    conn: psycopg.Connection, *, user: User, team_key: str | None = None, now: datetime | None = None
) -> WorklistView:
    now = now or datetime.now(UTC)
    where, params = scope_clause(user, "p")
    in_scope = [
        r[0]
        for r in conn.execute(
            f"SELECT p.id FROM patients p WHERE p.active AND {where}",
            params,
        ).fetchall()
    ]
    entries = _alerting().worklist(conn, team_keys=[team_key] if team_key else None, patient_ids=in_scope, now=now)
    # Checked again row by row: the scope rule is the one in backend.accounts.scope, not only SQL.
    rows = [
        e
        for e in entries
        if _in_scope(user, patient_id=e.patient_id, municipality=e.municipality, department=e.department)
    ]
    # Alerting's order: unacknowledged first by worst severity then oldest; acknowledged after.
    with_alerts = {e.patient_id for e in rows}
    green = [g for g in green_rows_cached(conn, user=user, now=now) if g.patient_id not in with_alerts]
    counts: dict[str, int] = {}
    for e in rows:
        counts[e.worst_severity] = counts.get(e.worst_severity, 0) + 1
    counts["green"] = len(green)
    return WorklistView(rows=rows, green=green, teams=_teams(conn, user), counts=counts)


def _iso(v: Any) -> Any:
    return v.isoformat() if isinstance(v, datetime) else v


def worklist_json(view: WorklistView, *, green_limit: int = GREEN_SHOWN) -> dict[str, Any]:
    # Built by hand: dataclasses.asdict deep-copies and was most of this endpoint's time.
    return {
        "rows": [
            {
                "patient_id": e.patient_id,
                "patient_name": e.patient_name,
                "patient_ref": e.patient_ref,
                "municipality": e.municipality,
                "department": e.department,
                "programme": e.programme,
                "team_key": e.team_key,
                "team_name": e.team_name,
                "worst_severity": e.worst_severity,
                "oldest_opened_at": e.oldest_opened_at.isoformat(),
                "counts": dict(e.counts),
                "alerts": [{f: _iso(getattr(a, f)) for f in _ALERT_FIELDS} for a in e.alerts],
            }
            for e in view.rows
        ],
        "green": [
            {
                "patient_id": g.patient_id,
                "patient_name": g.patient_name,
                "patient_ref": g.patient_ref,
                "municipality": g.municipality,
                "programme": g.programme,
                "readings": g.readings,
                "newest_at": g.newest_at.isoformat(),
            }
            for g in view.green[:green_limit]
        ],
        "green_total": len(view.green),
        "counts": view.counts,
    }


_ALERT_FIELDS = (
    "id",
    "rule_id",
    "kind",
    "measurement",
    "severity",
    "state",
    "title",
    "opened_at",
    "updated_at",
    "last_value",
    "team_key",
    "escalation_level",
    "escalation_due_at",
    "acknowledged_by",
    "acknowledged_at",
    "ack_note",
    "snoozed_until",
    "snooze_reason",
    "muted_by",
)


# ---- green readings: kvittér alle grønne -----------------------------------------------------

_GREEN = """
SELECT p.id, p.name, p.external_ref, p.municipality, p.programme, g.n, g.newest
FROM patients p
LEFT JOIN reading_reviews rv ON rv.patient_id = p.id
CROSS JOIN LATERAL (
    -- Per patient and kind through the (patient_id, kind, measured_at) index: cheap however
    -- large the table, and independent of how the rows lie on disk.
    SELECT count(*)::int AS n, max(m.stored_at) AS newest FROM measurements m
    WHERE m.patient_id = p.id AND m.kind = ANY(%(kinds)s) AND m.measured_at >= %(since)s
      AND m.stored_at > coalesce(rv.seen_through, '-infinity')
) g
WHERE p.active AND {scope} AND g.n > 0
  AND NOT EXISTS (SELECT 1 FROM alerts a WHERE a.patient_id = p.id AND a.state = 'open')
ORDER BY g.newest
LIMIT 2000
"""


# Green rows are "normal readings to glance at", never urgent, and the costliest part of the
# worklist (a look at every patient in scope): kept per scope for a few seconds, dropped at once
# by this process's own "kvittér alle grønne". Alerts are always read fresh.
GREEN_CACHE_S = 10.0
_green_cache: dict[tuple[Any, ...], tuple[float, list[GreenRow]]] = {}
_green_lock = threading.Lock()


def _scope_key(user: User) -> tuple[Any, ...]:
    return (user.role.value, user.municipality, user.department, user.patient_id)


def forget_green(user: User | None = None) -> None:
    with _green_lock:
        if user is None:
            _green_cache.clear()
        else:
            _green_cache.pop(_scope_key(user), None)


def green_rows_cached(conn: psycopg.Connection, *, user: User, now: datetime | None = None) -> list[GreenRow]:
    key = _scope_key(user)
    t = time.monotonic()
    with _green_lock:
        hit = _green_cache.get(key)
    if hit is not None and hit[0] > t:
        return hit[1]
    rows = green_rows(conn, user=user, now=now)
    with _green_lock:
        _green_cache[key] = (t + GREEN_CACHE_S, rows)
    return rows


def green_rows(conn: psycopg.Connection, *, user: User, now: datetime | None = None) -> list[GreenRow]:
    """Patients with new readings since their last review and no open alert."""
    now = now or datetime.now(UTC)
    where, params = scope_clause(user, "p")
    params["since"] = now - GREEN_WINDOW
    params["kinds"] = [k.value for k in MeasurementKind]
    rows = conn.execute(_GREEN.format(scope=where), params).fetchall()
    return [GreenRow(*r) for r in rows]


def acknowledge_all_green(
    conn: psycopg.Connection,
    *,
    runtime: Any,
    user: User,
    team_key: str | None = None,
    remote_addr: str | None = None,
    now: datetime | None = None,
) -> int:
    """Mark every green row in scope as seen (one audit row per patient) and tell each citizen's
    tablet "seen". Returns the number of patients."""
    from backend import audit

    now = now or datetime.now(UTC)
    rows = green_rows(conn, user=user, now=now)
    forget_green()  # every scope: a patient can be in a nurse's and a specialist's at once
    for g in rows:
        conn.execute(
            """INSERT INTO reading_reviews (patient_id, seen_through, seen_by, seen_at)
               VALUES (%s, %s, %s, %s)
               ON CONFLICT (patient_id) DO UPDATE SET seen_through = greatest(reading_reviews.seen_through,
                   EXCLUDED.seen_through), seen_by = EXCLUDED.seen_by, seen_at = EXCLUDED.seen_at""",
            (g.patient_id, g.newest_at, user.username, now),
        )
        conn.execute(
            "INSERT INTO reading_review_log (patient_id, seen_through, readings, seen_by, seen_at)"
            " VALUES (%s, %s, %s, %s, %s)",
            (g.patient_id, g.newest_at, g.readings, user.username, now),
        )
        audit.record(
            conn,
            actor=user,
            patient_id=g.patient_id,
            action="kvittering (green)",
            detail=f"{g.readings} readings",
            remote_addr=remote_addr,
        )
        _send_seen(
            conn,
            runtime=runtime,
            patient_id=g.patient_id,
            since=now - GREEN_WINDOW,
            through=g.newest_at,
            by=user.display_name,
            now=now,
        )
    return len(rows)


def _send_seen(
    conn: psycopg.Connection,
    *,
    runtime: Any,
    patient_id: int,
    since: datetime,
    through: datetime,
    by: str,
    now: datetime,
) -> None:
    publisher = getattr(runtime, "publisher", None)
    if publisher is None:
        return
    from vitals.wire import Receipt, ReceiptStatus

    rows = conn.execute(
        """SELECT agent_id, array_agg(id) FROM measurements
           WHERE patient_id = %s AND measured_at >= %s AND stored_at <= %s GROUP BY agent_id""",
        (patient_id, since, through),
    ).fetchall()
    topics = runtime.settings.topics
    for agent_id, ids in rows:
        for i in range(0, len(ids), 500):
            receipt = Receipt(agent_id=agent_id, status=ReceiptStatus.SEEN, ids=tuple(ids[i : i + 500]), at=now, by=by)
            try:
                publisher.publish(topics.receipts(agent_id), receipt.to_json(), qos=1)
            except Exception:  # the review is stored; a lost "seen" receipt is only cosmetic on the tablet
                log.exception("could not publish seen receipt to %s", agent_id)


# ---- single alerts ----------------------------------------------------------------------------


def alert_patient(conn: psycopg.Connection, *, alert_id: int) -> int | None:
    row = conn.execute("SELECT patient_id FROM alerts WHERE id = %s", (alert_id,)).fetchone()
    return int(row[0]) if row else None


def acknowledge(conn: psycopg.Connection, *, runtime: Any, alert_id: int, user: User, note: str) -> Any:
    return _alerting().acknowledge(
        conn,
        alert_id=alert_id,
        by=_by(user),
        note=note.strip(),
        runtime_or_publisher=runtime,
        topics=runtime.settings.topics,
    )


def _by(user: User) -> str:
    return f"{user.display_name} ({user.username})"


def resolve(conn: psycopg.Connection, *, alert_id: int, user: User, note: str) -> Any:
    """Afslut an alert by hand, with the clinician's note (alerting refuses an already resolved one)."""
    return _alerting().resolve(conn, alert_id=alert_id, by=_by(user), note=note.strip())


def snooze(conn: psycopg.Connection, *, alert_id: int, user: User, until: datetime, reason: str) -> Any:
    """Udsæt an alert until ``until`` with a reason (alerting refuses a past expiry or an empty reason)."""
    return _alerting().snooze(conn, alert_id=alert_id, until=until, reason=reason.strip(), by=_by(user))


def _history(conn: psycopg.Connection, *, patient_id: int) -> list[dict[str, Any]]:
    """Every transition of every alert of the patient, newest first, flattened for a table."""
    titles = {
        int(r[0]): (r[1], r[2])
        for r in conn.execute(
            "SELECT id, title, measurement FROM alerts WHERE patient_id = %s", (patient_id,)
        ).fetchall()
    }
    out: list[dict[str, Any]] = []
    for tr in _alerting().alert_history(conn, patient_id=patient_id):
        title, measurement = titles.get(tr.alert_id, (tr.rule_id, None))
        out.append(
            {
                "alert_id": tr.alert_id,
                "title": title,
                "rule_id": tr.rule_id,
                "measurement": measurement,
                "severity": tr.severity,
                "transition": tr.action,
                "state": tr.to_state,
                "at": tr.at,
                "by": tr.actor,
                "note": tr.note,
                "team": tr.team_key,
                "from_team": tr.from_team,
                "value": tr.value,
            }
        )
    out.sort(key=lambda r: r["at"], reverse=True)
    return out


@dataclass(frozen=True, slots=True)
class HistoryLine:
    """One line of an alert's story: a transition, or a run of repeated "updated" ones folded."""

    at: datetime
    transition: str
    state: str
    by: str | None
    note: str | None
    team: str | None
    value: float | None
    count: int = 1
    first_at: datetime | None = None
    """For a folded run: when its first repeat happened (``at`` is the latest)."""


@dataclass(frozen=True, slots=True)
class AlertStory:
    """An alert with its transitions that matter, newest first, for the patient page."""

    alert_id: int
    title: str
    severity: str
    state: str
    lines: tuple[HistoryLine, ...]
    transitions: int
    """How many transitions the full history has (the lines fold some of them)."""


REPEATS = frozenset({"updated"})
"""Transitions that only repeat a breach: folded into one line with a count and the latest value."""


def summarise_history(rows: list[dict[str, Any]]) -> list[AlertStory]:
    """Per alert (the one with the newest activity first), its transitions newest first, with
    each unbroken run of repeat breaches folded into one line. ``rows`` is :func:`_history`'s
    output (newest first); nothing is dropped: the counts add up to ``len(rows)``."""
    order: list[int] = []
    per_alert: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        if r["alert_id"] not in per_alert:
            order.append(r["alert_id"])
            per_alert[r["alert_id"]] = []
        per_alert[r["alert_id"]].append(r)
    stories = []
    for alert_id in order:
        lines: list[HistoryLine] = []
        for r in per_alert[alert_id]:
            last = lines[-1] if lines else None
            if r["transition"] in REPEATS and last is not None and last.transition == r["transition"]:
                # Newest first: the line keeps the latest time and value; the run reaches back to r.
                lines[-1] = replace(last, count=last.count + 1, first_at=r["at"])
                continue
            lines.append(
                HistoryLine(
                    at=r["at"],
                    transition=r["transition"],
                    state=r["state"],
                    by=r["by"],
                    note=r["note"],
                    team=r["team"],
                    value=r["value"],
                )
            )
        newest = per_alert[alert_id][0]
        stories.append(
            AlertStory(
                alert_id=alert_id,
                title=newest["title"],
                severity=newest["severity"],
                state=newest["state"],
                lines=tuple(lines),
                transitions=len(per_alert[alert_id]),
            )
        )
    return stories


def history_json(conn: psycopg.Connection, *, patient_id: int) -> list[dict[str, Any]]:
    return [
        {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in r.items()}
        for r in _history(conn, patient_id=patient_id)
    ]


def alert_markers(conn: psycopg.Connection, *, patient_id: int, since: datetime) -> list[dict[str, Any]]:
    rows = conn.execute(
        """SELECT extract(epoch FROM opened_at)::float8, severity, title, measurement FROM alerts
           WHERE patient_id = %s AND opened_at >= %s ORDER BY opened_at""",
        (patient_id, since),
    ).fetchall()
    return [{"t": r[0], "level": r[1], "label": r[2], "kind": r[3] or ""} for r in rows]


# ---- thresholds ---------------------------------------------------------------------------------


def _rule_info(rule_id: str) -> tuple[str | None, str | None, str | None]:
    """(measurement kind, component, rule kind) from the loaded rule files."""
    try:
        from backend.alerting.config import load_config

        rule = load_config().ruleset.rule(rule_id)
    except Exception:  # unknown rule (e.g. removed from the files): shown without a band
        return None, None, None
    kind = getattr(rule, "measurement", None)
    comp = getattr(rule, "component_name", None)
    return (kind.value if kind is not None else None), comp, getattr(rule, "kind", None)


def thresholds(conn: psycopg.Connection, *, patient_id: int) -> list[dict[str, Any]]:
    out = []
    for th in _alerting().thresholds_for(conn, patient_id=patient_id):
        kind, comp, rule_kind = _rule_info(th.rule_id)
        out.append(
            {
                "rule_id": th.rule_id,
                "label": th.rule_title,
                "field": th.field,
                "value": th.value,
                "default": th.default_value,
                "overridden": th.overridden,
                "reason": th.override_reason,
                "by": th.override_by,
                "at": th.override_at,
                "kind": kind,
                "component": comp,
                "rule_kind": rule_kind,
            }
        )
    return out


def thresholds_json(conn: psycopg.Connection, *, patient_id: int) -> list[dict[str, Any]]:
    return [
        {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in r.items()}
        for r in thresholds(conn, patient_id=patient_id)
    ]


def threshold_bands(conn: psycopg.Connection, *, patient_id: int) -> list[dict[str, Any]]:
    """Red and yellow zones of the absolute rules, for the plots."""
    if not available():
        return []
    by_rule: dict[str, dict[str, Any]] = {}
    for th in thresholds(conn, patient_id=patient_id):
        if th["rule_kind"] != "absolute" or th["kind"] is None:
            continue
        r = by_rule.setdefault(th["rule_id"], {"kind": th["kind"], "component": th["component"]})
        r[th["field"]] = th["value"]
    bands = []
    for r in by_rule.values():
        unit = spec(r["kind"]).component(r["component"]).display_unit
        base = {"kind": r["kind"], "scale": unit}
        if "red_low" in r:
            bands.append({**base, "from": None, "to": r["red_low"], "level": "red"})
        if "yellow_low" in r:
            bands.append({**base, "from": r.get("red_low"), "to": r["yellow_low"], "level": "yellow"})
        if "yellow_high" in r:
            bands.append({**base, "from": r["yellow_high"], "to": r.get("red_high"), "level": "yellow"})
        if "red_high" in r:
            bands.append({**base, "from": r["red_high"], "to": None, "level": "red"})
    return bands


def edit_threshold(
    conn: psycopg.Connection,
    *,
    patient_id: int,
    rule_id: str,
    field: str,
    value: str,
    reason: str,
    user: User,
    clear: bool = False,
) -> str | None:
    """None when done, else why not (shown to the clinician)."""
    from backend.alerting.errors import AlertingError

    reason = reason.strip()
    if len(reason) < 3:
        return "A reason is required (at least 3 characters)."
    by = f"{user.display_name} ({user.username})"
    try:
        with conn.transaction():
            if clear:
                _alerting().clear_threshold_override(
                    conn, patient_id=patient_id, rule_id=rule_id, field=field, by=by, reason=reason
                )
            else:
                try:
                    number = float(value.replace(",", "."))
                except ValueError:
                    return f"Not a number: {value!r}"
                _alerting().set_threshold_override(
                    conn, patient_id=patient_id, rule_id=rule_id, field=field, value=number, by=by, reason=reason
                )
    except (AlertingError, KeyError, ValueError) as exc:
        return str(exc)
    return None


# ---- plan, passive intervals, page panels -------------------------------------------------------

_WEEKDAYS = ("ma", "ti", "on", "to", "fr", "lø", "sø")


def patient_panels(conn: psycopg.Connection, *, patient_id: int) -> dict[str, Any]:
    if not available():
        return {
            "alert_history": None,
            "alert_stories": None,
            "thresholds": None,
            "threshold_audit": None,
            "plan": None,
            "passive": passive_intervals(conn, patient_id=patient_id),
        }
    a = _alerting()
    plan_view = a.monitoring_plan(conn, patient_id=patient_id)
    plan = []
    for item in plan_view.items:
        days = "alle dage" if len(item.weekdays) == 7 else ", ".join(_WEEKDAYS[d] for d in item.weekdays)
        label = spec(item.kind).label_da
        plan.append(
            {
                "kind": item.kind,
                "label": label,
                "when": f"{', '.join(item.times) or 'dagligt'} · {days} · "
                f"{item.grace_minutes} min margin" + (" (standard)" if plan_view.is_default else ""),
            }
        )
    audit_rows = [
        {
            "at": c.at,
            "by": c.actor,
            "rule_id": c.rule_id,
            "field": c.field,
            "old": c.old_value,
            "new": c.new_value,
            "reason": c.reason,
        }
        for c in a.threshold_audit(conn, patient_id=patient_id)
    ]
    history = _history(conn, patient_id=patient_id)
    return {
        "alert_history": history,
        "alert_stories": summarise_history(history),
        "thresholds": thresholds(conn, patient_id=patient_id),
        "threshold_audit": audit_rows,
        "plan": plan,
        "passive": passive_intervals(conn, patient_id=patient_id),
    }


def edit_plan(
    conn: psycopg.Connection,
    *,
    runtime: Any,
    patient_id: int,
    kind: str,
    times: str,
    grace_minutes: int,
    user: User,
    remove: bool = False,
) -> str | None:
    """Set (or remove) one kind's slot times in the patient's monitoring plan; the whole plan is
    stored (the programme default becomes this patient's own) and sent to the tablet. None when
    done, else why not."""
    from backend.alerting.errors import AlertingError

    try:
        kind = MeasurementKind(kind).value
    except ValueError:
        return f"Unknown measurement: {kind!r}"
    slots: list[str] = []
    for part in times.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", part):
            return f"Not a time (HH:MM): {part!r}"
        slots.append(part)
    if not remove and not slots:
        return "Give at least one time (HH:MM), or remove the measurement."
    current = _alerting().monitoring_plan(conn, patient_id=patient_id)
    items = [
        {"kind": i.kind, "times": list(i.times), "weekdays": list(i.weekdays), "grace_minutes": i.grace_minutes}
        for i in current.items
        if i.kind != kind
    ]
    if not remove:
        items.append(
            {
                "kind": kind,
                "times": sorted(set(slots)),
                "weekdays": [0, 1, 2, 3, 4, 5, 6],
                "grace_minutes": grace_minutes,
            }
        )
    try:
        with conn.transaction():
            _alerting().set_monitoring_plan(
                conn,
                patient_id=patient_id,
                plan=items,
                by=f"{user.display_name} ({user.username})",
                runtime_or_publisher=runtime,
            )
    except (AlertingError, ValueError) as exc:
        return str(exc)
    return None


def passive_intervals(conn: psycopg.Connection, *, patient_id: int) -> list[dict[str, Any]]:
    fn = getattr(_alerting(), "passive_intervals", None)
    if fn is not None:
        return [asdict(iv) for iv in fn(conn, patient_id=patient_id)]
    rows = conn.execute(
        "SELECT starts_at, ends_at, reason FROM passive_intervals WHERE patient_id = %s ORDER BY starts_at DESC",
        (patient_id,),
    ).fetchall()
    return [{"starts_at": r[0], "ends_at": r[1], "reason": r[2]} for r in rows]


def add_passive(
    conn: psycopg.Connection, *, patient_id: int, starts: str, ends: str, reason: str, user: User, tz: str
) -> str | None:
    from backend.alerting.errors import AlertingError

    try:
        zone = ZoneInfo(tz)
        s = datetime.combine(date.fromisoformat(starts), datetime.min.time(), zone)
        e = datetime.combine(date.fromisoformat(ends), datetime.min.time(), zone) + timedelta(days=1)
    except ValueError as exc:
        return f"Invalid date: {exc}"
    if not reason.strip():
        return "A reason is required."
    try:
        with conn.transaction():
            _alerting().add_passive_interval(
                conn,
                patient_id=patient_id,
                starts_at=s,
                ends_at=e,
                reason=reason.strip(),
                by=f"{user.display_name} ({user.username})",
            )
    except AlertingError as exc:
        return str(exc)
    return None


# ---- population -----------------------------------------------------------------------------------


def population(conn: psycopg.Connection, *, user: User, days: int = 28, now: datetime | None = None) -> dict[str, Any]:
    """Patients in scope ranked by risk (open alerts, deviation from baseline, adherence), and the
    alert burden per team."""
    now = now or datetime.now(UTC)
    since = now - timedelta(days=days)
    where, params = scope_clause(user, "p")
    params.update(since=since, now=now)
    # Deviation from baseline: the latest value of each measured kind against the patient's
    # stored baseline (alerting's patient_baselines: mean and SD), as the largest |z|.
    rows = conn.execute(
        f"""
        SELECT p.id, p.name, p.external_ref, p.programme, p.municipality, p.department,
               coalesce(al.red, 0), coalesce(al.yellow, 0), coalesce(al.blue, 0), coalesce(al.technical, 0),
               dev.z, dev.kind
        FROM patients p
        LEFT JOIN LATERAL (
            SELECT count(*) FILTER (WHERE severity = 'red') AS red,
                   count(*) FILTER (WHERE severity = 'yellow') AS yellow,
                   count(*) FILTER (WHERE severity = 'blue') AS blue,
                   count(*) FILTER (WHERE severity = 'technical') AS technical
            FROM alerts a WHERE a.patient_id = p.id AND a.state <> 'resolved') al ON true
        LEFT JOIN LATERAL (
            SELECT abs(lm.v - b.mean) / nullif(b.sd, 0) AS z, b.kind
            FROM patient_baselines b
            CROSS JOIN LATERAL (
                SELECT (m.components->>b.component)::float8 AS v FROM measurements m
                WHERE m.patient_id = p.id AND m.kind = b.kind AND m.measured_at >= %(since)s
                ORDER BY m.measured_at DESC LIMIT 1) lm
            WHERE b.patient_id = p.id ORDER BY 1 DESC NULLS LAST LIMIT 1) dev ON true
        WHERE p.active AND {where}
        LIMIT 5000""",
        params,
    ).fetchall()
    adherence = {a.patient_id: a for a in _adherence_all(conn, since=since, patient_ids=[r[0] for r in rows])}
    patients = []
    for r in rows:
        adh = adherence.get(r[0])
        share = adh.share if adh else None
        z = float(r[10]) if r[10] is not None else None
        # Risk: open red dominates, then yellow, blue, baseline deviation, then missed measurements.
        score = (
            100 * r[6]
            + 30 * r[7]
            + 10 * r[8]
            + 3 * r[9]
            + 5 * min(z or 0.0, 6.0)
            + (20 * (1 - share) if share is not None else 0)
        )
        patients.append(
            {
                "patient_id": r[0],
                "name": r[1],
                "ref": r[2],
                "programme": r[3],
                "municipality": r[4],
                "department": r[5],
                "open": {"red": r[6], "yellow": r[7], "blue": r[8], "technical": r[9]},
                "deviation_z": round(z, 2) if z is not None else None,
                "deviation_kind": r[11],
                "adherence": round(share, 3) if share is not None else None,
                "planned": adh.planned if adh else 0,
                "taken": adh.taken if adh else 0,
                "risk": round(score, 1),
            }
        )
    patients.sort(key=lambda x: -x["risk"])
    team_keys = [k for k, _ in _teams(conn, user)]
    burden = [asdict(b) for b in _alerting().alert_burden(conn, team_keys=team_keys or None, since=since)]
    return {"days": days, "since": since.isoformat(), "patients": patients, "burden": burden}


def _adherence_all(conn: psycopg.Connection, *, since: datetime, patient_ids: list[int]) -> list[Any]:
    a = _alerting()
    out = []
    for pid in patient_ids[:500]:
        out.append(a.adherence(conn, patient_id=pid, since=since))
    return out
