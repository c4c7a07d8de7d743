"""Screen words, Danish first (CLINICAL.md's word list), English on ``?lang=en`` or by preference."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

LANGS = ("da", "en")

_WORDS: dict[str, tuple[str, str]] = {
    "app": ("nearcare", "nearcare"),
    "login": ("Log ind", "Log in"),
    "logout": ("Log ud", "Log out"),
    "username": ("Brugernavn", "Username"),
    "password": ("Adgangskode", "Password"),
    "wrong_login": ("Forkert brugernavn eller adgangskode.", "Wrong username or password."),
    "rate_limited": ("For mange forsøg. Prøv igen om {s} sekunder.", "Too many attempts. Try again in {s} seconds."),
    "worklist": ("Triagering", "Triage worklist"),
    "patients": ("Borgere", "Citizens"),
    "patient": ("Borger", "Citizen"),
    "population": ("Population", "Population"),
    "audit": ("Adgangslog", "Access log"),
    "min_log": ("Min Log", "My Log"),
    "admin": ("Administration", "Administration"),
    "team": ("Team", "Team"),
    "all_teams": ("Alle teams", "All teams"),
    "filter": ("Filtrér", "Filter"),
    "severity": ("Alvorlighed", "Severity"),
    "oldest_open": ("Ældste åbne", "Oldest open"),
    "alerts": ("Alarmer", "Alerts"),
    "alert": ("Alarm", "Alert"),
    "note": ("Notat", "Note"),
    "kvitter": ("Kvittér", "Acknowledge"),
    "kvitter_all_green": ("Kvittér alle grønne", "Acknowledge all green"),
    "kvitteret_af": ("Kvitteret af", "Acknowledged by"),
    "no_open": ("Ingen åbne alarmer.", "No open alerts."),
    "red": ("Rød", "Red"),
    "yellow": ("Gul", "Yellow"),
    "green": ("Grøn", "Green"),
    "blue": ("Blå (manglende måling)", "Blue (missed measurement)"),
    "technical": ("Teknisk", "Technical"),
    "live": ("Live", "Live"),
    "trends": ("Trends", "Trends"),
    "days7": ("7 dage", "7 days"),
    "days30": ("30 dage", "30 days"),
    "year1": ("1 år", "1 year"),
    "readings": ("Målinger", "Readings"),
    "reading": ("Måling", "Reading"),
    "details": ("detaljer", "details"),
    "remove": ("Fjern", "Remove"),
    "measured_at": ("Målt", "Measured"),
    "received_at": ("Modtaget", "Received"),
    "stored_at": ("Gemt", "Stored"),
    "device": ("Apparat", "Device"),
    "gateway": ("Gateway", "Gateway"),
    "quality": ("Kvalitet", "Quality"),
    "flags": ("Flag", "Flags"),
    "raw": ("Rå bytes", "Raw bytes"),
    "clock_offset": ("Apparatets ur mod modtagelse", "Device clock vs receipt"),
    "clock_untrusted": ("apparatets ur ikke stillet", "device clock not set"),
    "rejected": ("Afviste målinger", "Rejected readings"),
    "reason": ("Begrundelse", "Reason"),
    "alert_history": ("Alarmhistorik", "Alert history"),
    "thresholds": ("Tærskelværdier", "Thresholds"),
    "what_if": ("Hvad nu hvis", "What if"),
    "what_if_current": ("Nuværende grænser", "Current settings"),
    "what_if_proposed": ("Foreslået", "Proposed"),
    "what_if_alerts": ("Alarmer åbnet (90 dage)", "Alerts opened (90 days)"),
    "what_if_alert_days": ("Alarmdage", "Alert-days"),
    "what_if_red": ("Røde", "Red"),
    "threshold_audit": ("Ændringer af tærskelværdier", "Threshold changes"),
    "save": ("Gem", "Save"),
    "reset": ("Nulstil til standard", "Reset to default"),
    "reason_required": ("Begrundelse (påkrævet)", "Reason (required)"),
    "monitoring_plan": ("Monitoreringsplan", "Monitoring plan"),
    "passive": ("Passive perioder", "Passive intervals"),
    "add": ("Tilføj", "Add"),
    "from": ("Fra", "From"),
    "to": ("Til", "To"),
    "when": ("Hvornår", "When"),
    "who": ("Hvem", "Who"),
    "what": ("Hvad", "What"),
    "where_from": ("Hvorfra", "From where"),
    "allowed": ("Tilladt", "Allowed"),
    "refused": ("Afvist", "Refused"),
    "yes": ("Ja", "Yes"),
    "no": ("Nej", "No"),
    "forbidden": ("Ingen adgang", "Access denied"),
    "forbidden_text": (
        "Du har ikke adgang til denne borgers data. Forsøget er registreret i adgangsloggen.",
        "You have no access to this citizen's data. The attempt is recorded in the access log.",
    ),
    "not_found": ("Findes ikke", "Not found"),
    "programme": ("Forløb", "Programme"),
    "copd": ("KOL", "COPD"),
    "heart_failure": ("Hjertesvigt", "Heart failure"),
    "hypertension": ("Forhøjet blodtryk", "Hypertension"),
    "municipality": ("Kommune", "Municipality"),
    "department": ("Afdeling", "Department"),
    "risk": ("Risiko", "Risk"),
    "open_alerts": ("Åbne alarmer", "Open alerts"),
    "deviation": ("Afvigelse fra habituel værdi", "Deviation from baseline"),
    "adherence": ("Målinger taget (andel af planlagte)", "Adherence (share of planned)"),
    "alert_burden": ("Alarmbyrde pr. team", "Alert burden per team"),
    "per_patient_week": ("Alarmer pr. borger-uge", "Alerts per patient-week"),
    "ack_median": ("Tid til kvittering, median", "Time to acknowledge, median"),
    "ack_p90": ("Tid til kvittering, p90", "Time to acknowledge, p90"),
    "escalated_share": ("Andel eskaleret", "Share escalated"),
    "last_measured": ("Seneste måling", "Last measurement"),
    "no_data": ("Ingen data.", "No data."),
    "pending": ("Afventer alarmmodulet.", "Waiting for the alerting module."),
    "agents": ("Gateways (tablets)", "Gateways (tablets)"),
    "enrol": ("Tilmeld gateway", "Enrol gateway"),
    "enrolment_code": ("Engangskode til tilmelding", "One-time enrolment code"),
    "enrolment_code_once": ("Koden vises kun denne ene gang.", "The code is shown only this once."),
    "bind": ("Knyt til borger", "Bind to citizen"),
    "devices": ("Apparater", "Devices"),
    "register_device": ("Registrér apparat", "Register device"),
    "teams": ("Teams", "Teams"),
    "users": ("Brugere", "Users"),
    "role": ("Rolle", "Role"),
    "create": ("Opret", "Create"),
    "municipalities": ("Kommuner", "Municipalities"),
    "departments": ("Afdelinger", "Departments"),
    "seen_by": ("Set af", "Seen by"),
    "your_readings": ("Dine målinger", "Your readings"),
    "who_looked": ("Hvem har set dine data", "Who looked at your data"),
    "min_log_total": ("{n} registreringer i alt", "{n} entries in all"),
    "organisation": ("Organisation", "Organisation"),
    "why": ("Hvorfor", "Why"),
    "newer": ("‹ Nyere", "‹ Newer"),
    "older": ("Ældre ›", "Older ›"),
    "language": ("English", "Dansk"),
    "snooze": ("Udsæt", "Snooze"),
    "escalated": ("Eskaleret", "Escalated"),
    "status": ("Status", "Status"),
    "open": ("Åben", "Open"),
    "acknowledged": ("Kvitteret", "Acknowledged"),
    "resolved": ("Afsluttet", "Resolved"),
    "value": ("Værdi", "Value"),
    "rule": ("Regel", "Rule"),
    "field": ("Felt", "Field"),
    "old": ("Gammel", "Old"),
    "new": ("Ny", "New"),
    "default": ("Standard", "Default"),
    "override": ("Personlig", "Personal"),
    "citizens_at_risk": ("Borgere efter risiko", "Citizens by risk"),
    "online": ("Online", "Online"),
    "resolve": ("Afslut", "Resolve"),
    "snooze_until": ("Udsæt til", "Snooze until"),
    "note_required": ("Notat (skal udfyldes)", "Note (required)"),
    "bad_time": ("Ugyldigt tidspunkt: {value}", "Not a valid time: {value}"),
    "history_all": ("Vis alle {n} hændelser", "Show all {n} events"),
    "history_summary": ("Vis sammenfatning pr. alarm", "Show summary per alert"),
    "repeated": ("gentaget {n} gange siden {since}", "repeated {n} times since {since}"),
    "latest_value": ("seneste værdi", "latest value"),
    "tr_opened": ("Oprettet", "Opened"),
    "tr_updated": ("Fortsat overskredet", "Still breached"),
    "tr_worsened": ("Forværret", "Worsened"),
    "tr_acknowledged": ("Kvitteret", "Acknowledged"),
    "tr_resolved": ("Afsluttet", "Resolved"),
    "tr_escalated": ("Eskaleret", "Escalated"),
    "tr_sla_breached": ("Svarfrist overskredet", "Response time exceeded"),
    "tr_snoozed": ("Udsat", "Snoozed"),
    "tr_rerouted": ("Overdraget", "Handed over"),
    "offline": ("Offline", "Offline"),
    # The worklist (issue 13).
    "search": ("Søg", "Search"),
    "search_placeholder": ("Navn eller reference", "Name or reference"),
    "all_severities": ("Alle niveauer", "All levels"),
    "count_red": ("{n} røde", "{n} red"),
    "count_yellow": ("{n} gule", "{n} yellow"),
    "count_blue": ("{n} blå", "{n} blue"),
    "count_technical": ("{n} tekniske", "{n} technical"),
    "count_handled": ("{n} håndteret", "{n} handled"),
    "count_green": ("{n} grønne", "{n} green"),
    "handled": ("Håndteret", "Handled"),
    "kvitter_all": ("Kvittér alle", "Acknowledge all"),
    "kvitter_all_hint": ("Kvittér alle borgerens åbne alarmer med ét notat",
                         "Acknowledge all the citizen's open alerts with one note"),
    "kvitter_green_confirm": ("Kvittér {n} grønne borgere som set?", "Mark {n} green citizens as seen?"),
    "kvitter_green_done": ("{n} grønne borgere kvitteret.", "{n} green citizens acknowledged."),
    "kvitter_green_none": ("Ingen grønne borgere vises.", "No green citizens are shown."),
    "kvitter_done": ("Kvitteret.", "Acknowledged."),
    "note_empty": ("Skriv et notat før du kvitterer.", "Write a note before you acknowledge."),
    "note_too_long": ("Notatet er for langt: {n} tegn (højst {max}). Teksten er bevaret; forkort den og prøv igen.",
                      "The note is too long: {n} characters (at most {max}). Your text is kept; "
                      "shorten it and try again."),
    "note_kept": ("Dit notat", "Your note"),
    "snoozed_until": ("udsat til {at}", "snoozed until {at}"),
    "muted": ("dæmpet af rød alarm", "muted by a red alert"),
    "escalates_in": ("eskaleres om", "escalates in"),
    "escalation_overdue": ("eskalering overskredet", "escalation overdue"),
    "measured": ("målt {at}", "measured {at}"),
    "alert_opened": ("alarm oprettet {at}", "alert opened {at}"),
    "limit_high": ("grænse {v}", "limit {v}"),
    "limit_low": ("grænse {v}", "limit {v}"),
    "above_limit": ("over grænsen {v}", "above the limit {v}"),
    "below_limit": ("under grænsen {v}", "below the limit {v}"),
    "worst_latest": ("værst {worst}, senest {latest}", "worst {worst}, latest {latest}"),
    "trend_change": ("{change} på {window}", "{change} in {window}"),
    "days_n": ("{n} dage", "{n} days"),
    "hours_n": ("{n} timer", "{n} hours"),
    "baseline_vs": ("normalt for borgeren {v}", "the citizen's usual {v}"),
    "handover": ("Overdrag", "Hand over"),
    "handover_to": ("Overdrag til team", "Hand over to team"),
    "handover_done": ("{n} alarmer overdraget til {team}.", "{n} alerts handed over to {team}."),
    "handover_refused": ("Kan ikke overdrages: ingen åbne alarmer hos et andet team, eller ukendt team.",
                         "Cannot be handed over: no unresolved alerts with another team, or an unknown team."),
    "action_failed": ("Handlingen lykkedes ikke. Prøv igen.", "The action did not succeed. Try again."),
    "confirm": ("Bekræft", "Confirm"),
    "back": ("Tilbage", "Back"),
    "unit_mmHg": ("mmHg", "mmHg"),
    "unit_slag/min": ("slag/min", "bpm"),
    "unit_%": ("%", "%"),
    "unit_kg": ("kg", "kg"),
    "unit_°C": ("°C", "°C"),
    "unit_point": ("point", "points"),
    "reconnecting": ("forbinder…", "reconnecting…"),
    "current_alerts": ("Aktuelle alarmer", "Current alerts"),
    "grace": ("margin", "grace"),
    "error": ("Der skete en fejl", "Something went wrong"),
    "error_text": ("Siden kunne ikke vises. Prøv igen, eller gå til forsiden.",
                   "The page could not be shown. Try again, or go to the front page."),
    "bad_request": ("Ugyldig forespørgsel", "Invalid request"),
    "bad_request_text": ("Adressen eller formularen indeholdt noget, der ikke kan bruges. Gå tilbage og prøv igen.",
                         "The address or the form held something that cannot be used. Go back and try again."),
    "not_found_text": ("Siden findes ikke. Tjek adressen, eller gå til forsiden.",
                       "There is no such page. Check the address, or go to the front page."),
    "conflict": ("Kunne ikke gennemføres", "Could not be done"),
    "conflict_text": ("Handlingen passer ikke med, hvordan tingene står nu. Genindlæs siden og prøv igen.",
                      "The action does not fit the current state. Reload the page and try again."),
    "too_large": ("For meget data", "Too much data"),
    "too_large_text": ("Det sendte var for stort.", "What was sent was too large."),
    "rate_limited_short": ("For mange forsøg", "Too many attempts"),
    "rate_limited_text": ("Vent lidt og prøv igen.", "Wait a little and try again."),
    "serial": ("serienr.", "serial"),
    "firmware": ("firmware", "firmware"),
    "user_slot": ("bruger", "user"),
    "reading_id": ("Målingens id", "Reading id"),
    "your_team": ("Dit team", "Your team"),
    "call_team": ("Ring til dit team", "Call your team"),
    "team_hours": ("Telefontid", "Phone hours"),
    "outside_hours": ("Uden for telefontiden: ring 112 ved akut sygdom, ellers lægevagten.",
                      "Outside these hours: call 112 in an emergency, otherwise the out-of-hours doctor."),
    "no_phone": ("Telefonnummer ikke oplyst", "No phone number given"),
    "every_day": ("alle dage", "every day"),
    "weekdays_short": ("man,tir,ons,tor,fre,lør,søn", "Mon,Tue,Wed,Thu,Fri,Sat,Sun"),
    "not_on_holidays": ("ikke på helligdage", "not on public holidays"),
}


def number(value: float | None, lang: str, decimals: int | None = None) -> str:
    """A value as a person reads it: Danish decimal comma, no ".0" on a whole number."""
    if value is None:
        return "–"
    if decimals is None:
        decimals = 0 if float(value).is_integer() else 1
    text = f"{value:.{decimals}f}"
    return text.replace(".", ",") if lang != "en" else text


def translator(lang: str) -> Callable[..., str]:
    idx = 1 if lang == "en" else 0

    def t(key: str, **kw: object) -> str:
        pair = _WORDS.get(key)
        text = pair[idx] if pair else key
        return text.format(**kw) if kw else text

    return t


def pick_lang(query: str | None, preference: str | None, cookie: str | None = None) -> str:
    for candidate in (query, cookie, preference):
        if candidate in LANGS:
            return candidate
    return "da"


# ---- readings in words (issue 13: "blood_pressure: 126.0/78.0/94.0 mm[Hg]" reached a citizen) -----

_KIND_WORDS: dict[str, tuple[str, str]] = {
    "blood_pressure": ("Blodtryk", "Blood pressure"),
    "spo2": ("Iltmætning", "Oxygen saturation"),
    "pulse": ("Puls", "Pulse"),
    "weight": ("Vægt", "Weight"),
    "temperature": ("Temperatur", "Temperature"),
    "respiration_rate": ("Vejrtrækning", "Breathing rate"),
}
_COMPONENT_UNITS: dict[str, tuple[str, str]] = {
    "systolic": ("mmHg", "mmHg"), "diastolic": ("mmHg", "mmHg"), "mean_arterial": ("mmHg", "mmHg"),
    "spo2": ("%", "%"), "pulse": ("slag/min", "bpm"), "weight": ("kg", "kg"), "temperature": ("°C", "°C"),
    "respiration_rate": ("pr. min", "per min"),
}
_FLAG_WORDS: dict[str, tuple[str, str]] = {
    "cuff_loose": ("manchetten sad løst", "cuff loose"),
    "body_movement": ("bevægelse under målingen", "movement during the measurement"),
    "improper_position": ("forkert målestilling", "improper position"),
    "irregular_pulse": ("uregelmæssig puls", "irregular pulse"),
    "weak_signal": ("svagt signal", "weak signal"),
    "poor_signal": ("dårligt signal", "poor signal"),
    "searching": ("apparatet søgte stadig", "the device was still searching"),
    "low_perfusion": ("lav gennemblødning", "low perfusion"),
    "sensor_displaced": ("sensoren sad forkert", "sensor displaced"),
    "low_battery": ("lavt batteri", "low battery"),
    "battery_low": ("lavt batteri", "low battery"),
    "clock_not_set": ("apparatets ur var ikke stillet", "the device clock was not set"),
    "future_time": ("tidspunktet lå i fremtiden", "the time lay in the future"),
    "too_old": ("målingen var for gammel", "the reading was too old"),
    "time_fault": ("fejl i apparatets ur", "device clock fault"),
    "questionable_measurement": ("tvivlsom måling", "questionable measurement"),
    "invalid_measurement": ("ugyldig måling", "invalid measurement"),
    "implausible": ("umulig værdi", "implausible value"),
}


def kind_words(kind: str, lang: str) -> str:
    """What was measured, in words ("Blodtryk")."""
    pair = _KIND_WORDS.get(kind)
    return pair[1 if lang == "en" else 0] if pair else kind.replace("_", " ")


def flag_words(code: str, lang: str) -> str:
    """A device or backend flag in words (an unknown code reads as words, never as snake_case)."""
    pair = _FLAG_WORDS.get(code)
    return pair[1 if lang == "en" else 0] if pair else code.replace("_", " ")


def reading_words(kind: str, components: dict[str, object], lang: str, *, detail: bool = False) -> str:
    """A reading as a sentence's worth of words: "Blodtryk 126/78 mmHg", "Vægt 80,4 kg". With
    ``detail`` the mean arterial pressure is added (for clinicians)."""
    idx = 1 if lang == "en" else 0
    name = _KIND_WORDS.get(kind, (kind.replace("_", " ").capitalize(),) * 2)[idx]

    def val(c: str) -> str:
        v = components.get(c)
        return number(float(v), lang) if isinstance(v, int | float) and not isinstance(v, bool) else "–"

    if kind == "blood_pressure":
        text = f"{name} {val('systolic')}/{val('diastolic')} mmHg"
        if detail and components.get("mean_arterial") is not None:
            text += f" ({'mean' if idx else 'middel'} {val('mean_arterial')})"
        return text
    parts = [f"{val(c)} {_COMPONENT_UNITS.get(c, ('', ''))[idx]}".strip() for c in components]
    return f"{name} {', '.join(parts) if parts else '–'}"


# ---- threshold fields in words (the admin audit list showed "copd.spo2.absolute.red_low") --------

_THRESHOLD_FIELDS: dict[str, tuple[str, str]] = {
    "red_low": ("rød nedre grænse", "red lower limit"),
    "red_high": ("rød øvre grænse", "red upper limit"),
    "yellow_low": ("gul nedre grænse", "yellow lower limit"),
    "yellow_high": ("gul øvre grænse", "yellow upper limit"),
    "delta": ("ændring", "change"),
    "window_hours": ("tidsrum i timer", "window in hours"),
    "k": ("antal standardafvigelser", "number of standard deviations"),
    "min_sd": ("mindste spredning", "smallest spread"),
}


def threshold_words(detail: str, lang: str, titles: Mapping[str, str]) -> str:
    """``<rule id>.<field>`` as a person reads it: the rule's title and the field in words
    (an unknown field is "grænseværdi" rather than a code name)."""
    idx = 1 if lang == "en" else 0
    rule_id, _, field = detail.rpartition(".")
    title = titles.get(rule_id)
    if title is None:
        return detail
    words = _THRESHOLD_FIELDS.get(field, ("grænseværdi", "threshold"))[idx]
    return f"{title}: {words}"


_PROGRAMME_CODE = re.compile(r"\b(copd|heart_failure|hypertension)\b")


def programme_words(text: str, lang: str) -> str:
    """A programme's code (``heart_failure``) in a free text, such as an audit line, as its name."""
    t = translator(lang)
    return _PROGRAMME_CODE.sub(lambda m: t(m.group(1)), text)
