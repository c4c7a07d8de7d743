"""Notifiers: the live worklist (events), a signed webhook, and email, all through the log.

- Events: every transition ``pg_notify``s its event in its own transaction; :class:`EventListener`
  in each backend process LISTENs and hands them to that process's :class:`EventHub`, so an
  alert decided by a standalone ingest process still reaches every web process's worklist.
- Webhook and email: rows in ``notification_log`` written with the transition. The dispatcher
  claims due rows with ``FOR UPDATE SKIP LOCKED`` (one sender per row, across instances), sends,
  and marks them sent, or schedules a retry with exponential backoff. A restart resumes the
  pending rows: nothing is lost; each carries its log id (``X-Nearcare-Delivery`` header,
  ``Message-ID``) so a receiver can drop the rare resend after a crash mid-send.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import smtplib
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from backend.alerting.clock import Clock, SystemClock
from backend.alerting.config import NotifierSettings
from backend.events import EVENTS_CHANNEL, Event, EventHub, Listening

log = logging.getLogger(__name__)

SEVERITY_DA = {"red": "RØD", "yellow": "GUL", "blue": "BLÅ", "technical": "TEKNISK"}


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class DeliveryError(Exception):
    pass


class Dispatcher:
    def __init__(self, *, pool: ConnectionPool, settings: NotifierSettings, clock: Clock | None = None) -> None:
        self.pool = pool
        self.settings = settings
        self.clock = clock or SystemClock()
        self._http: httpx.Client | None = None

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def deliver_due(self, *, limit: int = 50) -> int:
        """Send what is due; return how many were sent now."""
        sent = 0
        now = self.clock.now()
        with self.pool.connection() as conn, conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(
                "SELECT id, channel, target, payload, attempts FROM notification_log WHERE status = 'pending'"
                " AND next_attempt_at <= %s ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED", (now, limit),
            ).fetchall()
            for r in rows:
                try:
                    self._send(r["id"], r["channel"], r["target"], r["payload"])
                except Exception as exc:
                    attempts = r["attempts"] + 1
                    delay = min(self.settings.backoff_base_s * (2 ** (attempts - 1)), self.settings.backoff_max_s)
                    final = attempts >= self.settings.max_attempts
                    log.warning("notification %s via %s to %s failed (attempt %d%s): %s", r["id"], r["channel"],
                                r["target"], attempts, ", giving up" if final else "", exc)
                    cur.execute(
                        "UPDATE notification_log SET attempts = %s, last_error = %s, next_attempt_at = %s,"
                        " status = %s WHERE id = %s",
                        (attempts, str(exc)[:1000], now + timedelta(seconds=delay), "failed" if final else "pending",
                         r["id"]),
                    )
                else:
                    cur.execute("UPDATE notification_log SET status = 'sent', attempts = attempts + 1, sent_at = %s,"
                                " last_error = NULL WHERE id = %s", (now, r["id"]))
                    sent += 1
        return sent

    def _send(self, log_id: int, channel: str, target: str, payload: dict[str, Any]) -> None:
        if channel == "webhook":
            self._webhook(log_id, target, payload)
        elif channel == "email":
            self._email(log_id, target, payload)
        else:
            raise DeliveryError(f"unknown channel {channel!r}")

    def _webhook(self, log_id: int, url: str, payload: dict[str, Any]) -> None:
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        headers = {"Content-Type": "application/json", "X-Nearcare-Delivery": str(log_id)}
        if self.settings.webhook_secret:
            headers["X-Nearcare-Signature"] = sign(self.settings.webhook_secret, body)
        if self._http is None:
            self._http = httpx.Client(timeout=self.settings.webhook_timeout_s)
        resp = self._http.post(url, content=body, headers=headers)
        if resp.status_code >= 300:
            raise DeliveryError(f"HTTP {resp.status_code}")

    def _email(self, log_id: int, address: str, payload: dict[str, Any]) -> None:
        if not self.settings.smtp_host:
            raise DeliveryError("no SMTP host configured")
        msg = EmailMessage()
        sev = SEVERITY_DA.get(str(payload.get("severity")), str(payload.get("severity")))
        verb = {"opened": "Ny alarm", "worsened": "Forværret alarm", "escalated": "Eskaleret alarm",
                "sla_breached": "Alarm uden kvittering"}.get(str(payload.get("event")), "Alarm")
        msg["Subject"] = f"[{sev}] {verb}: {payload.get('title')} (alarm {payload.get('alert_id')})"
        msg["From"] = self.settings.smtp_from
        msg["To"] = address
        msg["Message-ID"] = f"<notification-{log_id}@nearcare>"
        msg.set_content(
            f"{verb} for borger {payload.get('patient_ref')}, ansvarligt team: {payload.get('team_key')}.\n"
            f"Se og kvittér i nearcare: {payload.get('url')}\n\n"
            "Af hensyn til tavshedspligten indeholder denne mail ingen helbredsoplysninger.\n"
        )
        with smtplib.SMTP(self.settings.smtp_host, self.settings.smtp_port, timeout=10) as smtp:
            smtp.send_message(msg)


class EventListener(Listening):
    """A Service: LISTEN for events (alert transitions, stored readings) and republish them on
    this process's hub for the live worklist."""

    name = "events"
    channel = EVENTS_CHANNEL

    def __init__(self, *, database_url: str, events: EventHub) -> None:
        super().__init__(database_url=database_url)
        self.events = events
        self.received = 0

    def start(self) -> None:
        super().start()
        self.wait_listening(10)

    def turn(self, conn: psycopg.Connection[Any]) -> float:
        for n in conn.notifies(timeout=0.5):
            self._publish(n.payload)
        return 0.0

    def _publish(self, payload: str) -> None:
        try:
            data = json.loads(payload)
            self.events.publish(Event(type=data["type"], data=data.get("data", {})))
            self.received += 1
        except (ValueError, KeyError):
            log.error("malformed alert event %r", payload[:200])


