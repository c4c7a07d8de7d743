"""Issue 12: every page loads in Debian's chromium with the app's Content-Security-Policy enforced
(no inline script, frame-ancestors 'none') and not one violation: a page that needs an inline
script or style the policy refuses fails here. Also: a page cannot be framed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg

from tests.backend.web._support import add_readings, sign_in
from tests.browser.test_worklist_browser import ARGS, CHROMIUM, _wait_ready

# Reported by the page itself: every securitypolicyviolation event, and every console error
# that names the Content Security Policy.
_LISTEN = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', e => window.__csp.push(
  e.violatedDirective + ' ' + (e.blockedURI || 'inline') + ' at ' + e.sourceFile + ':' + e.lineNumber));
"""


def _pages(world: Any) -> dict[str, list[str]]:
    return {
        world.nurse: ["/worklist", "/patients", f"/patients/{world.patient_id}",
                      f"/patients/{world.patient_id}?range=30d", "/population"],
        world.citizen: ["/me", "/min-log"],
        world.admin: ["/admin", "/audit"],
    }


def test_every_page_loads_under_the_csp_without_a_violation(
    live: Any, world: Any, module_settings: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    _wait_ready(live.url)
    with psycopg.connect(module_settings.database_url, autocommit=True) as db:
        add_readings(db, patient_id=world.patient_id, agent_id=world.agent_id, device_id=world.device_id, days=7)
    violations: dict[str, list[str]] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            # The login page first, logged out.
            ctx = browser.new_context(viewport={"width": 1280, "height": 1000})
            ctx.add_init_script(_LISTEN)
            page = ctx.new_page()
            console: list[str] = []
            page.on("console", lambda m: console.append(m.text) if "Content Security Policy" in m.text else None)
            r = page.goto(f"{live.url}/login")
            assert r is not None and "frame-ancestors 'none'" in (r.headers.get("content-security-policy") or "")
            page.wait_for_load_state("networkidle")
            violations["/login"] = page.evaluate("window.__csp") + console
            ctx.close()
            for user, paths in _pages(world).items():
                ctx = browser.new_context(viewport={"width": 1280, "height": 1000})
                ctx.add_init_script(_LISTEN)
                page = ctx.new_page()
                console = []
                page.on("console", lambda m, seen=console: seen.append(m.text)
                        if "Content Security Policy" in m.text else None)
                sign_in(page, live.url, user)
                page.wait_for_load_state("networkidle")
                for path in paths:
                    console.clear()
                    r = page.goto(f"{live.url}{path}")
                    assert r is not None and r.status == 200, (path, r.status if r else None)
                    assert r.headers.get("cache-control") == "no-store", path
                    page.wait_for_timeout(300)  # let scripts run (plots, the live stream)
                    violations[path] = page.evaluate("window.__csp") + list(console)
                ctx.close()

            # The detector itself: a page on this origin under the app's policy with an inline
            # script must report a violation (else the checks above could not fail).
            from backend.web.security import CSP

            ctx = browser.new_context()
            ctx.add_init_script(_LISTEN)
            page = ctx.new_page()
            page.route(f"{live.url}/inline-probe", lambda route: route.fulfill(
                status=200, content_type="text/html", headers={"content-security-policy": CSP},
                body="<p>probe</p><script>document.title = 'ran'</script>"))
            page.goto(f"{live.url}/inline-probe")
            page.wait_for_timeout(300)
            assert page.title() != "ran" and page.evaluate("window.__csp"), "the CSP detector saw nothing"
            ctx.close()

            # A same-site page that frames a patient page: the frame stays empty.
            ctx = browser.new_context()
            page = ctx.new_page()
            blocked: list[str] = []
            page.on("console", lambda m: blocked.append(m.text))
            page.route(f"{live.url}/framer", lambda route: route.fulfill(
                status=200, content_type="text/html",
                body=f'<iframe id="f" src="{live.url}/login"></iframe>'))
            page.goto(f"{live.url}/framer")
            page.wait_for_timeout(1000)
            frame = page.frame_locator("#f")
            assert frame.locator("input[name=username]").count() == 0
            ctx.close()
        finally:
            browser.close()
    assert {path: v for path, v in violations.items() if v} == {}
