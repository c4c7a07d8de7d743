from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from edge_agent.screen.model import ReadingState, danish_number, date_text, home_screen, value_text
from edge_agent.screen.page import render
from edge_agent.spool import RecentReading, RecordedReceipt, SpoolFill
from vitals.kinds import MeasurementKind as K
from vitals.wire import parse_plan

CPH = ZoneInfo("Europe/Copenhagen")
# Monday 2 March 2026, 10:30 in Copenhagen (UTC+1).
NOW = datetime(2026, 3, 2, 10, 30, tzinfo=CPH)


def at(hh: int, mm: int, day: int = 2) -> datetime:
    return datetime(2026, 3, day, hh, mm, tzinfo=CPH)


def reading(kind: K, values: dict, when: datetime, *, pending: bool = False) -> RecentReading:
    unit = {K.SPO2: "%", K.PULSE: "/min", K.WEIGHT: "kg", K.BLOOD_PRESSURE: "mm[Hg]"}[kind]
    return RecentReading(uuid.uuid4(), kind, values, unit, when.astimezone(UTC), when.astimezone(UTC), pending)


def fill(rows: int = 0, capacity: int = 1000, unsent: int | None = None) -> SpoolFill:
    """``rows`` unconfirmed readings, all of them unsent unless ``unsent`` says fewer."""
    return SpoolFill(rows=rows, capacity=capacity, oldest_at=None, bytes=4096,
                     unsent=rows if unsent is None else unsent)


def screen(readings, receipts=None, *, rows=0, connected=True, plan=None, capacity=1000, now=NOW):
    return home_screen(readings=readings, receipts=receipts or {}, fill=fill(rows, capacity), connected=connected,
                       plan=plan, now=now, zone=CPH)


def test_every_state_of_a_reading_in_plain_danish() -> None:
    spooled = reading(K.SPO2, {"spo2": 94.0}, at(8, 1), pending=True)
    sent = reading(K.PULSE, {"pulse": 72.0}, at(8, 2))
    stored = reading(K.WEIGHT, {"weight": 72.35}, at(8, 3))
    held = reading(K.BLOOD_PRESSURE, {"systolic": 142.0, "diastolic": 88.0, "mean_arterial": 106.0}, at(8, 4))
    seen = reading(K.SPO2, {"spo2": 96.0}, at(8, 5))
    receipts = {
        stored.id: (RecordedReceipt("stored", at(8, 6)),),
        held.id: (RecordedReceipt("held", at(8, 6), reason="implausible"),),
        seen.id: (RecordedReceipt("stored", at(8, 6)), RecordedReceipt("seen", at(9, 12), by="Anna Nielsen")),
    }
    s = screen([spooled, sent, stored, held, seen], receipts, rows=1)
    got = {r.id: (r.state, r.state_text, r.value_text, r.time_text, r.detail) for r in s.today}
    assert got == {
        spooled.id: (ReadingState.SPOOLED, "Gemt på tabletten", "94 %", "kl. 08:01", None),
        sent.id: (ReadingState.SENT, "Sendt", "72 slag/min", "kl. 08:02", None),
        stored.id: (ReadingState.STORED, "Modtaget", "72,35 kg", "kl. 08:03", None),
        held.id: (ReadingState.HELD, "Tjekkes af sygeplejersken", "142/88 mmHg", "kl. 08:04", None),
        seen.id: (ReadingState.SEEN, "Set af sygeplejerske", "96 %", "kl. 08:05", "Anna Nielsen, kl. 09:12"),
    }
    assert [r.label for r in s.today] == ["Iltmætning", "Blodtryk", "Vægt", "Puls", "Iltmætning"]  # newest first


def test_a_receipt_outranks_the_outbox_and_the_later_of_stored_and_held_wins() -> None:
    r = reading(K.SPO2, {"spo2": 95.0}, at(8, 0), pending=True)  # PUBACK lost, but the backend has it
    s = screen([r], {r.id: (RecordedReceipt("stored", at(8, 1)),)}, rows=1)
    assert s.today[0].state is ReadingState.STORED
    released = {r.id: (RecordedReceipt("held", at(8, 1)), RecordedReceipt("stored", at(9, 0)))}
    assert screen([r], released).today[0].state is ReadingState.STORED
    reheld = {r.id: (RecordedReceipt("stored", at(8, 1)), RecordedReceipt("held", at(9, 0)))}
    assert screen([r], reheld).today[0].state is ReadingState.HELD


def test_offline_with_a_reading_waiting_is_said_calmly() -> None:
    r = reading(K.SPO2, {"spo2": 95.0}, at(8, 0), pending=True)
    s = screen([r], rows=1, connected=False)
    assert s.headline == "Din måling er gemt og sendes, når der er forbindelse"
    assert s.detail == "Du behøver ikke gøre noget."
    assert s.connection_text == "Ingen forbindelse lige nu. Målinger gemmes på tabletten."
    assert not s.connected and s.waiting_to_send == 1
    many = screen([r], rows=3, connected=False)
    assert many.headline == "Dine 3 målinger er gemt og sendes, når der er forbindelse"
    online = screen([r], rows=1, connected=True)
    assert online.headline == "Din måling sendes nu" and online.connection_text == "Forbundet"


def test_headlines_for_sent_received_seen_full_and_an_empty_day() -> None:
    a = reading(K.SPO2, {"spo2": 95.0}, at(8, 0))
    b = reading(K.PULSE, {"pulse": 70.0}, at(8, 0))
    assert screen([a, b]).headline == "Din måling er sendt"
    stored = {a.id: (RecordedReceipt("stored", at(8, 1)),), b.id: (RecordedReceipt("held", at(8, 1)),)}
    s = screen([a, b], stored)
    assert (s.headline, s.detail) == ("Alt er modtaget", "Tak for dine målinger i dag.")
    seen = {a.id: (RecordedReceipt("seen", at(9, 12), by="Anna Nielsen"),),
            b.id: (RecordedReceipt("seen", at(8, 40), by="Bo Holm"),)}
    s = screen([a, b], seen)
    assert (s.headline, s.detail) == ("Set af sygeplejerske kl. 09:12", "Anna Nielsen har set dine målinger.")
    full = screen([a], rows=1000, capacity=1000, connected=False)
    assert full.spool_full and full.headline == "Tabletten har ikke plads til flere målinger"
    yesterday = reading(K.WEIGHT, {"weight": 80.0}, at(19, 2, day=1))
    quiet = screen([yesterday], {yesterday.id: (RecordedReceipt("stored", at(19, 3, day=1)),)})
    assert quiet.headline == "Ingen målinger i dag endnu" and quiet.today == ()
    assert quiet.latest_before_today is not None
    assert (quiet.latest_before_today.time_text, quiet.latest_before_today.value_text,
            quiet.latest_before_today.state_text) == ("i går kl. 19:02", "80,0 kg", "Modtaget")
    older = reading(K.WEIGHT, {"weight": 80.0}, at(7, 0, day=1) - timedelta(days=5))
    assert screen([older]).latest_before_today.time_text == "24. februar kl. 07:00"  # type: ignore[union-attr]


def test_reminders_follow_the_plan_and_the_nurse_side_rule() -> None:
    plan = parse_plan({
        "schema": "1.0", "agent_id": "home-1", "issued_at": "2026-01-01T00:00:00Z",
        "measurements": [
            {"kind": "blood_pressure", "times": ["08:00", "18:00"]},
            {"kind": "spo2", "times": ["08:00"], "grace_minutes": 120},
            {"kind": "weight", "times": ["12:00"], "weekdays": [1, 2, 3, 4, 5, 6]},  # not on Mondays
            {"kind": "pulse", "times": ["11:00"]},
        ],
    })
    bp = reading(K.BLOOD_PRESSURE, {"systolic": 130.0, "diastolic": 80.0}, at(8, 10))
    s = screen([bp], {bp.id: (RecordedReceipt("stored", at(8, 11)),)}, plan=plan)
    # BP 08:00 met; SpO2 08:00 window closed at 10:00 (the nurse follows that up, no nagging here).
    assert [m.text for m in s.reminders] == ["Husk: Puls kl. 11:00", "Husk: Blodtryk kl. 18:00"]
    early_pulse = reading(K.PULSE, {"pulse": 70.0}, at(10, 0))  # inside 11:00 ± 2 h: met
    assert [m.text for m in screen([bp, early_pulse], plan=plan).reminders] == ["Husk: Blodtryk kl. 18:00"]
    paused = plan.model_copy(update={"paused_until": datetime(2026, 3, 9, tzinfo=UTC)})
    assert screen([bp], plan=paused).reminders == ()
    assert screen([bp], plan=None).reminders == ()


def test_danish_numbers_units_and_dates() -> None:
    assert danish_number(1234.5, 1) == "1.234,5"
    assert danish_number(94.0) == "94"
    assert value_text(K.WEIGHT, {"weight": 72.4}) == "72,4 kg"
    assert value_text(K.WEIGHT, {"weight": 72.35}) == "72,35 kg"
    assert value_text(K.WEIGHT, {"weight": 80.0}) == "80,0 kg"
    assert value_text(K.TEMPERATURE, {"temperature": 37.25}) == "37,25 °C"
    assert value_text(K.GLUCOSE, {"glucose": 6.1}) == "6,1 mmol/L"
    assert value_text(K.BLOOD_PRESSURE, {"systolic": 142.0, "diastolic": 88.0, "mean_arterial": 106.0}) \
        == "142/88 mmHg"
    assert value_text(K.BLOOD_PRESSURE, {"systolic": 142.0, "diastolic": None}) == "Ingen værdi"
    assert value_text(K.SPO2, {"spo2": None}) == "Ingen værdi"
    assert date_text(NOW.date()) == "Mandag den 2. marts"
    assert screen([]).updated_text == "Opdateret kl. 10:30"


def test_no_clinical_judgement_reaches_the_page() -> None:
    """A worrying value and a fine one render identically apart from the number itself."""
    def page(spo2: float) -> str:
        r = RecentReading(uuid.UUID(int=1), K.SPO2, {"spo2": spo2}, "%", at(8, 0), at(8, 0), False)
        html = render(screen([r], {r.id: (RecordedReceipt("stored", at(8, 1)),)}))
        return html.replace(f"{int(spo2)} %", "VALUE")

    assert page(82.0) == page(97.0)
    assert not re.search(r"\b(red|green|yellow|rød|grøn|gul|alarm|advarsel|for højt|for lavt)\b", page(82.0), re.I)


def test_status_json_is_plain_json() -> None:
    r = reading(K.SPO2, {"spo2": 95.0}, at(8, 0))
    data = json.loads(json.dumps(screen([r], {r.id: (RecordedReceipt("seen", at(9, 0), by="Bo"),)}).to_json()))
    assert data["today"][0]["state"] == "seen" and data["today"][0]["seen_by"] == "Bo"
    assert data["headline"] == "Set af sygeplejerske kl. 09:00"


def test_sent_and_waiting_for_the_receipt_is_sendt_not_gemt() -> None:
    r = reading(K.SPO2, {"spo2": 95.0}, at(8, 0))  # the broker has it; the outbox keeps it until the receipt
    s = home_screen(readings=[r], receipts={}, fill=fill(1, unsent=0), connected=True, plan=None, now=NOW, zone=CPH)
    assert s.today[0].state is ReadingState.SENT and s.waiting_to_send == 0
    assert s.headline == "Din måling er sendt"


def test_a_dead_letter_receipt_is_said_without_alarm() -> None:
    r = reading(K.SPO2, {"spo2": 95.0}, at(8, 0))
    s = screen([r], {r.id: (RecordedReceipt("dead_letter", at(8, 1), reason="agent is not enrolled"),)})
    assert s.today[0].state is ReadingState.REFUSED
    assert s.today[0].state_text == "Modtaget med fejl. Vi undersøger det"


def test_one_measurement_has_one_status_for_all_its_values() -> None:
    """Issue 13: the oximeter's SpO2 was "Set af sygeplejerske" (its alert got kvittering) while
    the pulse from the same measurement said "Modtaget"."""
    spo2 = reading(K.SPO2, {"spo2": 86.0}, at(8, 10))
    pulse = reading(K.PULSE, {"pulse": 96.0}, at(8, 10))
    cuff = reading(K.BLOOD_PRESSURE, {"systolic": 150.0, "diastolic": 90.0}, at(8, 20))
    cuff_pulse = reading(K.PULSE, {"pulse": 80.0}, at(8, 20), pending=True)
    weight = reading(K.WEIGHT, {"weight": 80.0}, at(8, 30))
    receipts = {
        spo2.id: (RecordedReceipt("stored", at(8, 11)), RecordedReceipt("seen", at(9, 0), by="Anna Nielsen")),
        pulse.id: (RecordedReceipt("stored", at(8, 11)),),
        cuff.id: (RecordedReceipt("stored", at(8, 21)),),
        weight.id: (RecordedReceipt("stored", at(8, 31)),),
    }
    s = screen([spo2, pulse, cuff, cuff_pulse, weight], receipts, rows=1)
    got = {r.id: (r.state_text, r.detail) for r in s.today}
    assert got[spo2.id] == got[pulse.id] == ("Set af sygeplejerske", "Anna Nielsen, kl. 09:00")
    # The cuff's pulse is still on the tablet: the whole measurement says so, not "Modtaget".
    assert got[cuff.id] == got[cuff_pulse.id] == ("Gemt på tabletten", None)
    assert got[weight.id] == ("Modtaget", None)


def test_the_care_teams_message_is_shown_with_sender_and_time() -> None:
    """Issue 13: a message from the nurse reaches the tablet; shown as sent, never as an alarm."""
    from vitals.wire import TeamMessage

    msg = TeamMessage(agent_id="tab-1", id=3, text="Husk at veje dig i morgen.\n<b>Ring</b> hvis du er i tvivl.",
                      at=at(7, 45, day=1), by="Anne Hansen, sygeplejerske")
    s = home_screen(readings=[], receipts={}, fill=fill(), connected=True, plan=None, now=NOW, zone=CPH, message=msg)
    assert s.message is not None and s.message.by == "Anne Hansen, sygeplejerske"
    assert s.message.when_text == "i går kl. 07:45"
    html = render(s)
    assert "Besked fra dit team" in html and "Husk at veje dig i morgen." in html
    assert "&lt;b&gt;Ring&lt;/b&gt;" in html and "<b>Ring" not in html  # the text is the team's words, escaped
    assert s.to_json()["message"]["text"] == msg.text
    assert screen([]).message is None and "Besked fra dit team" not in render(screen([]))
