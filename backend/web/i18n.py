"""Screen words, Danish first (CLINICAL.md's word list), English on ``?lang=en`` or by preference."""

from __future__ import annotations

import functools
import gettext
import io
import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal

LANGS = ("da", "en")

# The words live in gettext catalogues, backend/web/locale/{da,en}/LC_MESSAGES/messages.po, one
# entry per key (msgid = the key templates and code call t() with, msgstr = the words). Add a word
# there, in both languages; the README beside this file has the extract/update/compile workflow and
# tests/backend/web/test_catalogue.py fails on a key missing or empty in either language.
LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "messages"


def N_(key: str) -> str:  # gettext's name for "mark for extraction, translate later"
    """Marks a key that is only ever looked up by a computed name (``t('tr_' ~ transition)``), so
    ``pybabel extract -k N_`` sees it and ``pybabel update`` keeps it."""
    return key


# Keys looked up by computed names: severities, alert states, transitions, units, programmes,
# and the families behind kind_words / flag_words / threshold_words / reading_words.
DYNAMIC_KEYS = (
    N_("red"), N_("yellow"), N_("green"), N_("blue"), N_("technical"),
    N_("open"), N_("acknowledged"), N_("resolved"),
    N_("tr_opened"), N_("tr_updated"), N_("tr_worsened"), N_("tr_acknowledged"), N_("tr_resolved"),
    N_("tr_escalated"), N_("tr_sla_breached"), N_("tr_snoozed"), N_("tr_rerouted"),
    N_("count_red"), N_("count_yellow"), N_("count_blue"), N_("count_technical"), N_("count_green"),
    N_("unit_mmHg"), N_("unit_slag/min"), N_("unit_%"), N_("unit_kg"), N_("unit_°C"), N_("unit_point"),
    N_("copd"), N_("heart_failure"), N_("hypertension"),
    N_("kind_blood_pressure"), N_("kind_spo2"), N_("kind_pulse"), N_("kind_weight"), N_("kind_temperature"),
    N_("kind_respiration_rate"),
    N_("cunit_systolic"), N_("cunit_diastolic"), N_("cunit_mean_arterial"), N_("cunit_spo2"), N_("cunit_pulse"),
    N_("cunit_weight"), N_("cunit_temperature"), N_("cunit_respiration_rate"),
    N_("flag_cuff_loose"), N_("flag_body_movement"), N_("flag_improper_position"), N_("flag_irregular_pulse"),
    N_("flag_weak_signal"), N_("flag_poor_signal"), N_("flag_searching"), N_("flag_low_perfusion"),
    N_("flag_sensor_displaced"), N_("flag_low_battery"), N_("flag_battery_low"), N_("flag_clock_not_set"),
    N_("flag_future_time"), N_("flag_too_old"), N_("flag_time_fault"), N_("flag_questionable_measurement"),
    N_("flag_invalid_measurement"), N_("flag_implausible"),
    N_("field_red_low"), N_("field_red_high"), N_("field_yellow_low"), N_("field_yellow_high"), N_("field_delta"),
    N_("field_window_hours"), N_("field_k"), N_("field_min_sd"), N_("field_unknown"),
    N_("field_days"), N_("field_min_days"), N_("field_lag_days"), N_("field_confirm"), N_("field_of"),
    N_("field_recent_hours"), N_("field_min_parameters"), N_("field_offline_hours"),
    N_("field_yellow_score"), N_("field_red_score"), N_("field_yellow_personal"), N_("field_red_personal"),
    N_("part_red"), N_("part_yellow"), N_("part_blue"), N_("part_technical"), N_("part_deviation"), N_("part_missed"),
    N_("dev_source_baseline"), N_("dev_source_own_history"), N_("dev_missing_no_readings"), N_("dev_missing_few_days"),
    # Error keys backend/fhir and backend/fut raise and their pages look up.
    N_("fut_bad_reference"), N_("fut_bad_version"), N_("fut_cpr_bad"), N_("fut_cpr_no_key"), N_("fut_no_patient"),
    N_("gateway_bad_sysid"), N_("gateway_no_agent"), N_("gateway_not_live"),
)


class CatalogueError(Exception):
    """A message catalogue is missing or unreadable."""


@functools.cache
def catalogue(lang: str) -> gettext.GNUTranslations:
    """The language's gettext catalogue, compiled from its .po at first use (babel.messages), so no
    compiled .mo can fall behind the words. Untranslated (empty) and fuzzy entries are left out:
    such a key reads as the key itself, which the vocabulary crawl fails on."""
    po = LOCALE_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.po"
    try:
        with po.open("rb") as f:
            cat = read_po(f, locale=lang, domain=DOMAIN)
    except (OSError, ValueError) as exc:
        raise CatalogueError(f"cannot read the {lang} message catalogue {po}: {exc}") from exc
    buf = io.BytesIO()
    write_mo(buf, cat, use_fuzzy=False)
    buf.seek(0)
    return gettext.GNUTranslations(buf)


def lookup(lang: str, key: str) -> str | None:
    """The words for ``key`` in ``lang``, or None where the catalogue has none."""
    text = catalogue("en" if lang == "en" else "da").gettext(key)
    return None if text == key else text


def number(value: float | None, lang: str, decimals: int | None = None) -> str:
    """A value as a person reads it (babel.numbers, CLDR): Danish decimal comma, no ".0" on a whole
    number, no thousands separator (clinical values and counts are read digit by digit)."""
    if value is None:
        return "–"
    if not math.isfinite(float(value)) or abs(float(value)) >= 1e15:
        # babel's decimal quantize fails on such values (a typed 1e308 in a form): read as typed
        return f"{float(value):g}".replace(".", "," if lang != "en" else ".")
    if decimals is None:
        decimals = 0 if float(value).is_integer() else 1
    pattern = "0." + "0" * decimals if decimals > 0 else "0"
    return format_decimal(value, format=pattern, locale="en" if lang == "en" else "da")


def translator(lang: str) -> Callable[..., str]:
    """``t("key", **placeholders)``: the key's words from the language's catalogue, with ``str.format``
    placeholders filled in; an unknown key reads as the key (the crawl and the catalogue test catch it)."""
    cat = catalogue("en" if lang == "en" else "da")

    def t(key: str, **kw: object) -> str:
        text = cat.gettext(key)
        return text.format(**kw) if kw else text

    return t


def pick_lang(query: str | None, preference: str | None, cookie: str | None = None) -> str:
    for candidate in (query, cookie, preference):
        if candidate in LANGS:
            return candidate
    return "da"


# ---- readings in words (issue 13: "blood_pressure: 126.0/78.0/94.0 mm[Hg]" reached a citizen) -----
# kind_<kind>, cunit_<component>, flag_<code> and field_<threshold field> in the catalogues.


def kind_words(kind: str, lang: str) -> str:
    """What was measured, in words ("Blodtryk")."""
    return lookup(lang, f"kind_{kind}") or kind.replace("_", " ")


def component_words(kind: str, component: str, lang: str) -> str:
    """One value of a measurement in words: "Systolisk", "Vægt" (vitals' own labels)."""
    from vitals.kinds import spec

    try:
        c = spec(kind).component(component)
    except (KeyError, ValueError):
        return component.replace("_", " ")
    return c.label_en if lang == "en" else c.label_da


def flag_words(code: str, lang: str) -> str:
    """A device or backend flag in words (an unknown code reads as words, never as snake_case)."""
    return lookup(lang, f"flag_{code}") or code.replace("_", " ")


def reading_words(kind: str, components: dict[str, object], lang: str, *, detail: bool = False) -> str:
    """A reading as a sentence's worth of words: "Blodtryk 126/78 mmHg", "Vægt 80,4 kg". With
    ``detail`` the mean arterial pressure is added (for clinicians)."""
    name = lookup(lang, f"kind_{kind}") or kind.replace("_", " ").capitalize()

    def val(c: str) -> str:
        v = components.get(c)
        return number(float(v), lang) if isinstance(v, int | float) and not isinstance(v, bool) else "–"

    if kind == "blood_pressure":
        text = f"{name} {val('systolic')}/{val('diastolic')} {lookup(lang, 'cunit_systolic')}"
        if detail and components.get("mean_arterial") is not None:
            t = translator(lang)
            mean = t("mean_arterial_short")
            text += f" ({mean} {val('mean_arterial')})"
        return text
    parts = [f"{val(c)} {lookup(lang, f'cunit_{c}') or ''}".strip() for c in components]
    return f"{name} {', '.join(parts) if parts else '–'}"


# ---- threshold fields in words (the admin audit list showed "copd.spo2.absolute.red_low") --------


def threshold_words(detail: str, lang: str, titles: Mapping[str, str]) -> str:
    """``<rule id>.<field>`` as a person reads it: the rule's title and the field in words
    (an unknown field is "grænseværdi" rather than a code name)."""
    rule_id, _, field = detail.rpartition(".")
    title = titles.get(rule_id)
    if title is None:
        return detail
    t = translator(lang)
    words = lookup(lang, f"field_{field}") or t("field_unknown")
    return f"{title}: {words}"


_PROGRAMME_CODE = re.compile(r"\b(copd|heart_failure|hypertension)\b")


def programme_words(text: str, lang: str) -> str:
    """A programme's code (``heart_failure``) in a free text, such as an audit line, as its name."""
    t = translator(lang)
    return _PROGRAMME_CODE.sub(lambda m: t(m.group(1)), text)

# ---- Min Log (backend.audit.min_log): each action's words, what was seen or done and why -------

MIN_LOG_ACTIONS: dict[str, tuple[str, str]] = {
    "worklist": (N_("minlog_worklist"), N_("minlog_why_care")),
    "worklist refresh": (N_("minlog_worklist_refresh"), N_("minlog_why_care")),
    "api worklist": (N_("minlog_api_worklist"), N_("minlog_why_care")),
    "patient list": (N_("minlog_patient_list"), N_("minlog_why_care")),
    "api patient list": (N_("minlog_api_patient_list"), N_("minlog_why_care")),
    "population view": (N_("minlog_population_view"), N_("minlog_why_quality")),
    "api population": (N_("minlog_api_population"), N_("minlog_why_quality")),
    "patient page": (N_("minlog_patient_page"), N_("minlog_why_care")),
    "reading detail": (N_("minlog_reading_detail"), N_("minlog_why_care")),
    "api patient": (N_("minlog_api_patient"), N_("minlog_why_care")),
    "api readings": (N_("minlog_api_readings"), N_("minlog_why_care")),
    "api reading detail": (N_("minlog_api_reading_detail"), N_("minlog_why_care")),
    "api trend": (N_("minlog_api_trend"), N_("minlog_why_care")),
    "trends": (N_("minlog_trends"), N_("minlog_why_care")),
    "role refused": (N_("minlog_role_refused"), N_("minlog_why_outside")),
    "api alert history": (N_("minlog_api_alert_history"), N_("minlog_why_care")),
    "api thresholds": (N_("minlog_api_thresholds"), N_("minlog_why_care")),
    "api rejected readings": (N_("minlog_api_rejected_readings"), N_("minlog_why_care")),
    "fhir export": (N_("minlog_fhir_export"), N_("minlog_why_sharing")),
    "readings export": (N_("minlog_readings_export"), N_("minlog_why_care")),
    "message to citizen": (N_("minlog_message_to_citizen"), N_("minlog_why_care")),
    "kvittering": (N_("minlog_kvittering"), N_("minlog_why_care")),
    "api kvittering": (N_("minlog_api_kvittering"), N_("minlog_why_care")),
    "kvittering (green)": (N_("minlog_kvittering_green"), N_("minlog_why_care")),
    "resolve alert": (N_("minlog_resolve_alert"), N_("minlog_why_care")),
    "api resolve alert": (N_("minlog_api_resolve_alert"), N_("minlog_why_care")),
    "snooze alert": (N_("minlog_snooze_alert"), N_("minlog_why_care")),
    "api snooze alert": (N_("minlog_api_snooze_alert"), N_("minlog_why_care")),
    "threshold change": (N_("minlog_threshold_change"), N_("minlog_why_care")),
    "monitoring plan change": (N_("minlog_monitoring_plan_change"), N_("minlog_why_care")),
    "passive interval": (N_("minlog_passive_interval"), N_("minlog_why_care")),
    "own readings": (N_("minlog_own_readings"), N_("minlog_why_own")),
    "account created": (N_("minlog_account_created"), N_("minlog_why_admin")),
    "account changed": (N_("minlog_account_changed"), N_("minlog_why_admin")),
    "account approved": (N_("minlog_account_approved"), N_("minlog_why_admin")),
}
MIN_LOG_REFUSED = (N_("minlog_refused"), N_("minlog_why_refused"))
MIN_LOG_ROLES = (N_("role_nurse"), N_("role_specialist"), N_("role_admin"), N_("role_citizen"), N_("role_system"))


def min_log_words(action: str, role: str, allowed: bool, lang: str) -> tuple[str, str, str]:
    """(what, why, role) of one Min Log line in the reader's language; an action this table does
    not know reads as its code, for the care it served (the crawl and the tests catch a new one)."""
    t = translator(lang)
    what_key, why_key = (MIN_LOG_ACTIONS.get(action) or MIN_LOG_ACTIONS.get(action.split(" ")[0])
                         or ("", "minlog_why_care"))
    what, why = (t(what_key) if what_key else action), t(why_key)
    if not allowed:
        what, why = t(MIN_LOG_REFUSED[0], what=what), t(MIN_LOG_REFUSED[1])
    role_key = f"role_{role}"
    return what, why, (t(role_key) if role_key in MIN_LOG_ROLES else role)
