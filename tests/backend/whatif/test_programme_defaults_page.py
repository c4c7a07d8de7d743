"""Issue 11 item 5 on the pages: the programme's what-if page offers "Gem som programstandard" after
its figures to an admin or a specialist (not to a nurse); saving needs the CSRF token and a reason,
refuses a value the rule cannot take in Danish words, and lands on the settings page with the new
value in force and the change in the programme's threshold audit; the settings page resets it."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from alert_rules.loader import load_ruleset
from backend.web.threshold_form import value_text
from tests.backend.web._support import web_login

RULE, FIELD = "copd.spo2.absolute", "red_low"
HTML = {"accept": "text/html"}


@pytest.fixture
def live_db(live: Any) -> Iterator[psycopg.Connection]:
    with psycopg.connect(live.app.state.settings.database_url, autocommit=True) as conn:
        try:
            yield conn
        finally:
            conn.execute("DELETE FROM alert_programme_defaults WHERE programme = 'copd'")


def _packaged() -> float:
    return float(load_ruleset().by_id[RULE].default_thresholds()[FIELD])


def _what_if(client: httpx.Client, value: float) -> httpx.Response:
    return client.get("/programmes/copd/what-if", headers=HTML,
                      params={"rule_id": RULE, "field": FIELD, "value": f"{value:g}"})


def _in_force(page: str) -> str:
    row = re.search(rf'<tr data-rule="{re.escape(RULE)}" data-field="{FIELD}">(.*?)</tr>', page, re.S)
    assert row is not None
    shown = re.search(r'<span class="in-force">([^<]*)</span>', row.group(1))
    assert shown is not None
    return html.unescape(shown.group(1)).strip()


def _save(client: httpx.Client, csrf: str | None, **form: str) -> httpx.Response:
    data = {"rule_id": RULE, "field": FIELD, "action": "set", **form}
    if csrf is not None:
        data["csrf"] = csrf
    return client.post("/programmes/copd/thresholds", data=data, headers=HTML)


def test_an_admin_saves_the_proposed_value_as_the_programme_default(client: httpx.Client, world: Any,
                                                                    live_db: psycopg.Connection) -> None:
    packaged = _packaged()
    new = packaged + 2
    csrf = web_login(client, world.admin)
    page = _what_if(client, new)
    assert page.status_code == 200 and 'id="what-if-result"' in page.text
    form = re.search(r'<form[^>]*id="save-programme-default".*?</form>', page.text, re.S)
    assert form is not None, "no save form after the figures"
    assert f'name="value" value="{new!r}"' in form.group(0) and 'name="reason" required' in form.group(0)
    assert "Gem som programstandard" in form.group(0)
    english = client.get("/programmes/copd/what-if", headers=HTML,
                         params={"rule_id": RULE, "field": FIELD, "value": f"{new:g}", "lang": "en"})
    assert "Save as programme default" in english.text
    client.get("/programmes/copd/thresholds", headers=HTML, params={"lang": "da"})  # the choice is kept: back
    # a field the settings page does not list (the rule file sets no yellow limit): figures, no form
    unlisted = [f for f in ("yellow_low", "yellow_high") if f not in load_ruleset().by_id[RULE].default_thresholds()]
    if unlisted:
        other = client.get("/programmes/copd/what-if", headers=HTML,
                           params={"rule_id": RULE, "field": unlisted[0], "value": f"{packaged + 5:g}"})
        assert 'id="what-if-result"' in other.text and 'id="save-programme-default"' not in other.text
    shown = _in_force(client.get("/programmes/copd/thresholds", headers=HTML).text)
    assert shown.startswith(value_text(packaged, "da"))

    # no CSRF token: refused before anything runs
    assert _save(client, None, value=f"{new:g}", reason="regional instruks").status_code == 403
    # no reason, not a number, outside the plausible range: 400 pages in Danish words
    r = _save(client, csrf, value=f"{new:g}", reason="")
    assert r.status_code == 400 and "begrundelse" in r.text
    r = _save(client, csrf, value="abc", reason="regional instruks")
    assert r.status_code == 400 and "Ikke et tal" in r.text
    r = _save(client, csrf, value="1000", reason="regional instruks")
    assert r.status_code == 400 and "1000" in r.text
    r = _save(client, csrf, value=f"{new:g}", reason="regional instruks", rule_id="hypertension.bp.systolic")
    assert r.status_code == 400
    assert live_db.execute("SELECT count(*) FROM alert_programme_defaults WHERE programme = 'copd'").fetchone()[0] == 0

    r = _save(client, csrf, value=value_text(new, "da"), reason="regional instruks")
    assert r.status_code == 303 and r.headers["location"] == "/programmes/copd/thresholds#programme-threshold-audit"
    settings = client.get("/programmes/copd/thresholds", headers=HTML)
    assert _in_force(settings.text).startswith(value_text(new, "da"))
    audit = settings.text[settings.text.index('id="programme-threshold-audit"'):]
    first = re.search(r"<tbody>\s*<tr>(.*?)</tr>", audit, re.S)
    assert first is not None
    cells = [html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>",
                                                                                 first.group(1), re.S)]
    assert world.admin in cells[1] and cells[3].startswith(value_text(packaged, "da"))
    assert cells[4].startswith(value_text(new, "da")) and cells[5] == "regional instruks"
    row = live_db.execute("SELECT actor, old_value, new_value, reason FROM alert_threshold_audit WHERE scope ="
                          " 'programme' AND programme = 'copd' ORDER BY id DESC LIMIT 1").fetchone()
    assert row[1:] == (packaged, new, "regional instruks") and world.admin in row[0]
    # the what-if now counts the saved value as in force: proposing it changes nothing
    again = _what_if(client, new)
    cur = re.search(r'id="current-alerts">(\d+)<', again.text)
    prop = re.search(r'id="proposed-alerts">(\d+)<', again.text)
    assert cur is not None and prop is not None and cur.group(1) == prop.group(1)

    # reset from the settings page: a reason again, then the packaged value is in force
    assert 'class="threshold-form reset-programme-default"' in settings.text
    r = _save(client, csrf, action="reset", reason="")
    assert r.status_code == 400
    r = _save(client, csrf, action="reset", reason="tilbage til pakkens standard")
    assert r.status_code == 303
    settings = client.get("/programmes/copd/thresholds", headers=HTML)
    assert _in_force(settings.text).startswith(value_text(packaged, "da"))
    assert "tilbage til pakkens standard" in settings.text
    assert 'reset-programme-default' not in settings.text


def test_a_nurse_sees_the_figures_but_may_not_save(client: httpx.Client, world: Any,
                                                   live_db: psycopg.Connection) -> None:
    new = _packaged() + 2
    csrf = web_login(client, world.nurse)
    page = _what_if(client, new)
    assert page.status_code == 200 and 'id="what-if-result"' in page.text
    assert 'id="save-programme-default"' not in page.text
    before = int(live_db.execute("SELECT coalesce(max(id), 0) FROM audit_log").fetchone()[0])
    r = _save(client, csrf, value=f"{new:g}", reason="vil ændre")
    assert r.status_code == 403 and "administrator eller en speciallæge" in r.text
    refused = live_db.execute("SELECT action, detail FROM audit_log WHERE id > %s AND NOT allowed",
                              (before,)).fetchall()
    assert [a for a, _ in refused] == ["role refused"] and "/programmes/copd/thresholds" in refused[0][1]
    assert live_db.execute("SELECT count(*) FROM alert_programme_defaults WHERE programme = 'copd'").fetchone()[0] == 0

    csrf = web_login(client, world.specialist)
    assert 'id="save-programme-default"' in _what_if(client, new).text
    assert _save(client, csrf, value=f"{new:g}", reason="lungemedicinsk vurdering").status_code == 303
    assert _in_force(client.get("/programmes/copd/thresholds", headers=HTML).text).startswith(value_text(new, "da"))
