"""A citizen's readings as a spreadsheet (CSV, issue 13: "print and export" were missing).

Pure: one line per measured value (a blood pressure gives systolic, diastolic and mean arterial
lines), in the reader's language: Danish with ";" between fields and a decimal comma (as a Danish
spreadsheet opens it), English with "," and a decimal point. Times in the clinic's time zone.
Text that a spreadsheet would take for a formula (=, +, -, @) is written with a leading
apostrophe. UTF-8 with a byte-order mark, so æ, ø and å survive a double-click."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from babel.numbers import format_decimal

from backend.api.clinical import Reading
from backend.web.i18n import component_words, flag_words, kind_words, lookup, number, translator
from vitals.kinds import spec

_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _text(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA) else value


def _unit(kind: str, component: str, lang: str) -> str:
    words = lookup(lang, f"cunit_{component}")
    if words is not None:
        return words
    try:
        return spec(kind).component(component).display_unit
    except (KeyError, ValueError):
        return ""


def readings_since(conn: psycopg.Connection, *, patient_id: int, since: datetime) -> list[Reading]:
    """Every reading of the patient measured since ``since``, oldest first (no cap: an export is whole)."""
    rows = conn.execute(
        """SELECT m.id, m.kind, m.components, m.unit, m.measured_at, m.agent_received_at, m.stored_at,
                  m.device_clock_trusted, m.quality, m.flags, m.agent_id, m.device_id, d.model, d.address,
                  m.user_index
           FROM measurements m LEFT JOIN devices d ON d.id = m.device_id
           WHERE m.patient_id = %s AND m.measured_at >= %s ORDER BY m.measured_at, m.id""",
        (patient_id, since),
    ).fetchall()
    return [Reading(*r) for r in rows]


def readings_csv(readings: Iterable[Reading], *, lang: str, tz: str) -> str:
    """The readings, oldest first as given, as CSV text (with its byte-order mark)."""
    t = translator(lang)
    zone = ZoneInfo(tz)
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out, delimiter="," if lang == "en" else ";", lineterminator="\r\n")
    writer.writerow([t("csv_measured", tz=tz), t("csv_kind"), t("csv_component"), t("csv_value"), t("csv_unit"),
                     t("csv_stored", tz=tz), t("csv_device"), t("csv_notes"), t("csv_id")])

    def when(at: datetime) -> str:
        return at.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")

    for r in readings:
        notes = [flag_words(f, lang) for f in (*r.quality, *r.flags)]
        if not r.device_clock_trusted:
            notes.append(t("clock_untrusted"))
        device = " ".join(x for x in (r.device_model, r.device_address) if x)
        for component, value in r.components.items():
            writer.writerow([
                when(r.measured_at), _text(kind_words(r.kind, lang)), _text(component_words(r.kind, component, lang)),
                _number(value, lang), _text(_unit(r.kind, component, lang)), when(r.stored_at), _text(device),
                _text(", ".join(notes)), str(r.id),
            ])
    return out.getvalue()


def _number(value: Any, lang: str) -> str:
    """A measured value as a spreadsheet reads it: up to three decimals, none on a whole number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "" if value is None else _text(str(value))
    if not math.isfinite(float(value)) or abs(float(value)) >= 1e15:
        return number(float(value), lang)
    return format_decimal(value, format="0.###", locale="en" if lang == "en" else "da")
