"""Thresholds: programme defaults (YAML, changeable by a clinician), per-patient overrides.

An override replaces single fields of one rule for one patient; every other field keeps
following the programme default, so a changed default reaches every patient who has no
override of that field. Every change is written to ``alert_threshold_audit``.
"""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from alert_rules.errors import ThresholdError
from backend.alerting.config import AlertingConfig
from backend.alerting.errors import InvalidThreshold
from backend.alerting.models import EffectiveThreshold, ThresholdChange
from vitals.kinds import spec


class ThresholdCache:
    """Programme-level changes are few and read on every reading: cache them briefly."""

    def __init__(self, config: AlertingConfig, ttl_s: float = 5.0) -> None:
        self.config = config
        self._ttl = ttl_s
        self._at = -1e9
        self._programme: dict[str, dict[str, dict[str, float]]] = {}
        self._lock = threading.Lock()

    def invalidate(self) -> None:
        with self._lock:
            self._at = -1e9

    def refresh(self, conn: psycopg.Connection[Any]) -> None:
        """Re-read the programme changes if the cached ones are older than the TTL."""
        self._refresh(conn)

    def query_overrides(self, conn: psycopg.Connection[Any], pids: Iterable[int]) -> psycopg.Cursor[Any]:
        """For :meth:`overrides_from_rows` (fetch later: pipeline mode)."""
        return conn.execute(
            "SELECT patient_id, rule_id, field, value FROM alert_threshold_overrides WHERE patient_id = ANY(%s)",
            (list(pids),),
        )

    def overrides_from_rows(self, programmes: Mapping[int, str],
                            rows: Iterable[Any]) -> dict[int, dict[str, dict[str, float]]]:
        """patient -> rule -> field -> value: programme changes (cached), then the patient's own."""
        out: dict[int, dict[str, dict[str, float]]] = {}
        for pid, prog in programmes.items():
            base = self._programme.get(prog, {})
            out[int(pid)] = {rid: dict(f) for rid, f in base.items()}
        for pid, rid, field, value in rows:
            out.setdefault(int(pid), {}).setdefault(rid, {})[field] = float(value)
        return out

    def _refresh(self, conn: psycopg.Connection[Any]) -> None:
        with self._lock:
            if time.monotonic() - self._at < self._ttl:
                return
        self._programme = programme_changes(conn)
        with self._lock:
            self._at = time.monotonic()

    def programme_overrides(self, programme: str) -> dict[str, dict[str, float]]:
        return self._programme.get(programme, {})

    def overrides_for(
        self, conn: psycopg.Connection[Any], pids: Iterable[int]
    ) -> dict[int, dict[str, dict[str, float]]]:
        """patient -> rule -> field -> value: programme changes, then the patient's own."""
        self._refresh(conn)
        programmes = dict(conn.execute(
            "SELECT id, programme FROM patients WHERE id = ANY(%s)", (list(pids),)
        ).fetchall())
        out: dict[int, dict[str, dict[str, float]]] = {}
        for pid, prog in programmes.items():
            base = self._programme.get(prog, {})
            out[int(pid)] = {rid: dict(f) for rid, f in base.items()}
        for pid, rid, field, value in conn.execute(
            "SELECT patient_id, rule_id, field, value FROM alert_threshold_overrides WHERE patient_id = ANY(%s)",
            (list(pids),),
        ).fetchall():
            out.setdefault(int(pid), {}).setdefault(rid, {})[field] = float(value)
        return out


def programme_changes(conn: psycopg.Connection[Any]) -> dict[str, dict[str, dict[str, float]]]:
    out: dict[str, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for prog, rid, field, value in conn.execute(
        "SELECT programme, rule_id, field, value FROM alert_programme_defaults"
    ).fetchall():
        out[prog][rid][field] = float(value)
    return {p: dict(v) for p, v in out.items()}


def _programme_of(conn: psycopg.Connection[Any], patient_id: int) -> str:
    row = conn.execute("SELECT programme FROM patients WHERE id = %s", (patient_id,)).fetchone()
    if row is None:
        raise InvalidThreshold(f"no patient {patient_id}")
    return str(row[0])


def _check_rule(config: AlertingConfig, programme: str, rule_id: str, field: str) -> Any:
    rule = config.ruleset.by_id.get(rule_id)
    if rule is None:
        raise InvalidThreshold(f"no rule {rule_id!r}")
    if config.ruleset.programme_of(rule_id) not in (programme, "all"):
        raise InvalidThreshold(f"rule {rule_id} does not belong to programme {programme}")
    model = rule.threshold_model()
    if model is None or field not in type(model).model_fields:
        raise InvalidThreshold(f"rule {rule_id} has no threshold field {field!r}")
    return rule


# Bounds on any threshold field the rule files do not bound more tightly (hours, counts, scores):
# far beyond any clinical use, yet small enough that arithmetic on it stays finite.
_ANY_FIELD_LIMIT = 1e6


def plausible_threshold(rule: Any, field: str, value: float) -> None:
    """Pure: a threshold value a clinician may set, else :class:`InvalidThreshold` saying why.

    Finite (``NaN``, ``±Infinity`` and ``-1e308`` switched a citizen's alarms off: issue 12), and,
    for a rule on one measured component, inside that component's plausible range (a band edge)
    or its width (a trend's change, a baseline's SD floor)."""
    if not math.isfinite(value):
        raise InvalidThreshold(f"{rule.id}.{field}: {value!r} is not a finite number")
    if abs(value) > _ANY_FIELD_LIMIT:
        raise InvalidThreshold(f"{rule.id}.{field}: {value:g} is outside ±{_ANY_FIELD_LIMIT:g}")
    measurement = getattr(rule, "measurement", None)
    if measurement is None:
        return
    c = spec(measurement).component(rule.component_name)
    low, high, unit = c.plausible_low, c.plausible_high, c.display_unit
    if rule.kind == "absolute" and not low <= value <= high:
        raise InvalidThreshold(
            f"{rule.id}.{field}: {value:g} is outside the plausible range {low:g}–{high:g} {unit} of {c.name}"
        )
    if field in ("delta", "min_sd") and abs(value) > high - low:
        raise InvalidThreshold(f"{rule.id}.{field}: {value:g} is larger than the whole range {low:g}–{high:g} {unit}")


def _validate(rule: Any, fields: Mapping[str, float]) -> None:
    for field, value in fields.items():
        plausible_threshold(rule, field, value)
    try:
        rule.with_thresholds(dict(fields))
    except ThresholdError as exc:
        raise InvalidThreshold(str(exc)) from None


def thresholds_for(
    conn: psycopg.Connection[Any], *, patient_id: int, config: AlertingConfig
) -> list[EffectiveThreshold]:
    """Every adjustable threshold of the patient's programme: in force, default, and whether overridden."""
    cfg = config
    programme = _programme_of(conn, patient_id)
    prog = programme_changes(conn).get(programme, {})
    with conn.cursor(row_factory=dict_row) as cur:
        own = {
            (r["rule_id"], r["field"]): r
            for r in cur.execute(
                "SELECT rule_id, field, value, set_by, set_at, reason FROM alert_threshold_overrides"
                " WHERE patient_id = %s", (patient_id,),
            ).fetchall()
        }
    out: list[EffectiveThreshold] = []
    for rule in cfg.ruleset.rules_for(programme):
        for field, yaml_value in rule.default_thresholds().items():
            default = prog.get(rule.id, {}).get(field, yaml_value)
            o = own.get((rule.id, field))
            out.append(EffectiveThreshold(
                rule_id=rule.id, rule_title=rule.title, field=field,
                value=float(o["value"]) if o else default, default_value=default, overridden=o is not None,
                override_reason=o["reason"] if o else None, override_by=o["set_by"] if o else None,
                override_at=o["set_at"] if o else None, source=rule.source,
            ))
    return out


def _effective_fields(conn: psycopg.Connection[Any], cfg: AlertingConfig, patient_id: int, programme: str,
                      rule_id: str) -> dict[str, float]:
    fields = dict(programme_changes(conn).get(programme, {}).get(rule_id, {}))
    for field, value in conn.execute(
        "SELECT field, value FROM alert_threshold_overrides WHERE patient_id = %s AND rule_id = %s",
        (patient_id, rule_id),
    ).fetchall():
        fields[field] = float(value)
    return fields


def set_threshold_override(
    conn: psycopg.Connection[Any], *, patient_id: int, rule_id: str, field: str, value: float, by: str,
    reason: str, config: AlertingConfig,
) -> EffectiveThreshold:
    if not reason or not reason.strip():
        raise InvalidThreshold("an override needs a reason")
    cfg = config
    with conn.transaction():
        programme = _programme_of(conn, patient_id)
        rule = _check_rule(cfg, programme, rule_id, field)
        fields = _effective_fields(conn, cfg, patient_id, programme, rule_id)
        _validate(rule, {**fields, field: float(value)})
        old = conn.execute(
            "SELECT value FROM alert_threshold_overrides WHERE patient_id = %s AND rule_id = %s AND field = %s"
            " FOR UPDATE", (patient_id, rule_id, field),
        ).fetchone()
        conn.execute(
            "INSERT INTO alert_threshold_overrides (patient_id, rule_id, field, value, set_by, reason)"
            " VALUES (%s,%s,%s,%s,%s,%s) ON CONFLICT (patient_id, rule_id, field) DO UPDATE"
            " SET value = EXCLUDED.value, set_by = EXCLUDED.set_by, set_at = now(), reason = EXCLUDED.reason",
            (patient_id, rule_id, field, float(value), by, reason),
        )
        prev = float(old[0]) if old else fields.get(field, rule.default_thresholds().get(field))
        _audit(conn, actor=by, scope="patient", patient_id=patient_id, programme=programme, rule_id=rule_id,
               field=field, old=prev, new=float(value), reason=reason)
    return next(t for t in thresholds_for(conn, patient_id=patient_id, config=cfg)
                if t.rule_id == rule_id and t.field == field)


def clear_threshold_override(
    conn: psycopg.Connection[Any], *, patient_id: int, rule_id: str, field: str, by: str, reason: str,
    config: AlertingConfig,
) -> EffectiveThreshold:
    """Drop the override: the field follows the programme default again."""
    cfg = config
    with conn.transaction():
        programme = _programme_of(conn, patient_id)
        rule = _check_rule(cfg, programme, rule_id, field)
        row = conn.execute(
            "DELETE FROM alert_threshold_overrides WHERE patient_id = %s AND rule_id = %s AND field = %s"
            " RETURNING value", (patient_id, rule_id, field),
        ).fetchone()
        if row is None:
            raise InvalidThreshold(f"patient {patient_id} has no override of {rule_id}.{field}")
        default = programme_changes(conn).get(programme, {}).get(rule_id, {}).get(
            field, rule.default_thresholds().get(field))
        _audit(conn, actor=by, scope="patient", patient_id=patient_id, programme=programme, rule_id=rule_id,
               field=field, old=float(row[0]), new=default, reason=reason or "override fjernet")
    return next(t for t in thresholds_for(conn, patient_id=patient_id, config=cfg)
                if t.rule_id == rule_id and t.field == field)


def set_programme_default(
    conn: psycopg.Connection[Any], *, programme: str, rule_id: str, field: str, value: float, by: str,
    reason: str, config: AlertingConfig,
) -> None:
    """Change a programme default for every patient without their own override of that field."""
    if not reason or not reason.strip():
        raise InvalidThreshold("a change of a programme default needs a reason")
    cfg = config
    with conn.transaction():
        rule = _check_rule(cfg, programme, rule_id, field)
        current = programme_changes(conn).get(programme, {}).get(rule_id, {})
        _validate(rule, {**current, field: float(value)})
        old = current.get(field, rule.default_thresholds().get(field))
        conn.execute(
            "INSERT INTO alert_programme_defaults (programme, rule_id, field, value, set_by, reason)"
            " VALUES (%s,%s,%s,%s,%s,%s) ON CONFLICT (programme, rule_id, field) DO UPDATE"
            " SET value = EXCLUDED.value, set_by = EXCLUDED.set_by, set_at = now(), reason = EXCLUDED.reason",
            (programme, rule_id, field, float(value), by, reason),
        )
        _audit(conn, actor=by, scope="programme", patient_id=None, programme=programme, rule_id=rule_id,
               field=field, old=old, new=float(value), reason=reason)


def _audit(conn: psycopg.Connection[Any], *, actor: str, scope: str, patient_id: int | None, programme: str | None,
           rule_id: str, field: str, old: float | None, new: float | None, reason: str) -> None:
    conn.execute(
        "INSERT INTO alert_threshold_audit (actor, scope, patient_id, programme, rule_id, field, old_value,"
        " new_value, reason) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)",
        (actor, scope, patient_id, programme, rule_id, field, old, new, reason),
    )


def threshold_audit(
    conn: psycopg.Connection[Any], *, patient_id: int | None = None, programme: str | None = None
) -> list[ThresholdChange]:
    """The patient's own changes and the changes to their programme's defaults, newest first."""
    if patient_id is not None:
        programme = _programme_of(conn, patient_id)
        sql = ("SELECT * FROM alert_threshold_audit WHERE patient_id = %s OR (scope = 'programme'"
               " AND programme = %s) ORDER BY at DESC, id DESC")
        params: tuple[Any, ...] = (patient_id, programme)
    else:
        sql = "SELECT * FROM alert_threshold_audit WHERE scope = 'programme' AND (%s::text IS NULL OR programme = %s)" \
              " ORDER BY at DESC, id DESC"
        params = (programme, programme)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(sql, params).fetchall()
    return [ThresholdChange(id=r["id"], at=r["at"], actor=r["actor"], scope=r["scope"], patient_id=r["patient_id"],
                            programme=r["programme"], rule_id=r["rule_id"], field=r["field"],
                            old_value=r["old_value"], new_value=r["new_value"], reason=r["reason"]) for r in rows]


def reset_programme_default(
    conn: psycopg.Connection[Any], *, programme: str, rule_id: str, field: str, by: str, reason: str,
    config: AlertingConfig,
) -> None:
    """Drop a programme change: the field follows the packaged default (the rule file) again, for
    every patient without their own override of it. Audited like the change itself."""
    if not reason or not reason.strip():
        raise InvalidThreshold("a reset of a programme default needs a reason")
    with conn.transaction():
        rule = _check_rule(config, programme, rule_id, field)
        current = programme_changes(conn).get(programme, {}).get(rule_id, {})
        if field not in current:
            raise InvalidThreshold(f"programme {programme} has no change of {rule_id}.{field}: it follows the"
                                   " packaged default already")
        _validate(rule, {k: v for k, v in current.items() if k != field})
        row = conn.execute(
            "DELETE FROM alert_programme_defaults WHERE programme = %s AND rule_id = %s AND field = %s"
            " RETURNING value", (programme, rule_id, field),
        ).fetchone()
        if row is None:  # removed by another reset since the read above
            raise InvalidThreshold(f"programme {programme} has no change of {rule_id}.{field}")
        _audit(conn, actor=by, scope="programme", patient_id=None, programme=programme, rule_id=rule_id,
               field=field, old=float(row[0]), new=rule.default_thresholds().get(field), reason=reason)


@dataclass(frozen=True, slots=True)
class ProgrammeThreshold:
    """One threshold of a programme: the packaged default, the value in force, and the change."""

    programme: str
    rule_id: str
    rule_title: str
    field: str
    value: float
    """In force for every citizen of the programme without their own override."""
    default_value: float
    """The packaged default (the rule file)."""
    changed: bool
    set_by: str | None
    set_at: datetime | None
    reason: str | None


def programme_thresholds(conn: psycopg.Connection[Any], *, programme: str,
                         config: AlertingConfig) -> list[ProgrammeThreshold]:
    """Every adjustable threshold of the programme's rules, in the rule files' order."""
    with conn.cursor(row_factory=dict_row) as cur:
        changes = {(r["rule_id"], r["field"]): r for r in cur.execute(
            "SELECT rule_id, field, value, set_by, set_at, reason FROM alert_programme_defaults"
            " WHERE programme = %s", (programme,)).fetchall()}
    out = []
    for rule in config.ruleset.rules_for(programme):
        for field, packaged in rule.default_thresholds().items():
            c = changes.get((rule.id, field))
            out.append(ProgrammeThreshold(
                programme=programme, rule_id=rule.id, rule_title=rule.title, field=field,
                value=float(c["value"]) if c else float(packaged), default_value=float(packaged),
                changed=c is not None, set_by=c["set_by"] if c else None, set_at=c["set_at"] if c else None,
                reason=c["reason"] if c else None))
    return out
