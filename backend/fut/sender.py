"""Delivering the FUT outbox: one ``$submit-measurement`` per measurement, retried with backoff.

Exactly once toward FUT rests on two things: the outbox row (one per measurement id, locked while
it is being sent, so two senders never send it at the same time) and the conditional create in
the submitted Bundle (``ifNoneExist`` on the measurement's identifier), so a retry after a lost
response finds the stored Observation instead of making a second one.

Answers: 2xx -> ``sent``; 401 (after one new token) -> ``retrying``; other 4xx -> ``refused`` (kept with the outcome,
listed for an administrator, retried only on request); 5xx, 408, 429, timeouts and connection
errors -> ``retrying`` after ``base * 2**(attempts-1)`` seconds (capped, with jitter).

Authentication is OAuth2 client credentials (:class:`FutOAuth`) through authlib's httpx
``OAuth2Client``: the token is fetched from the configured token endpoint on first use, kept in
the client, fetched anew shortly before it expires, and once more when FUT answers 401 (revoked
or rotated early). A token endpoint that refuses or cannot be reached leaves the measurement
``retrying`` with the reason: it is nearcare's credentials that are wrong, not the measurement.

Logs name measurement ids and FUT's status, never a resource body, a token or the client secret
(no CPR reaches a log here: FUT gets only its own references, and a CPR FUT echoes is masked).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import psycopg
from authlib.integrations.httpx_client import OAuth2Client, OAuthError
from psycopg.rows import dict_row

from backend.errors import BackendError
from backend.fhir.cpr import mask
from backend.fhir.export import FhirExportError
from backend.fhir.fut import FutLink, FutNotSubmittable, submit_measurement
from backend.fut import gauges, outbox

log = logging.getLogger(__name__)

RETRYABLE_4XX = frozenset({408, 425, 429})


class FutError(BackendError):
    """Root error of the FUT connector."""


@dataclass(frozen=True, slots=True)
class FutOAuth:
    """OAuth2 client credentials for FUT (the client registered with FUT's identity provider)."""

    token_url: str
    client_id: str
    client_secret: str = field(repr=False)
    scope: str | None = None
    leeway_s: float = 30.0
    """A token is fetched anew this long before it expires."""


@dataclass(frozen=True, slots=True)
class FutConfig:
    base_url: str
    """FUT's measurement service base, e.g. https://measurement.example/fhir (no trailing slash)."""
    timeout_s: float = 10.0
    backoff_base_s: float = 30.0
    backoff_cap_s: float = 3600.0
    batch: int = 50
    interval_s: float = 5.0
    evaluation_wait_s: float = 300.0
    """How long a measurement waits for the rules' evaluation (whose thresholds become its
    reference ranges) before it is sent without them."""
    oauth: FutOAuth | None = None
    """FUT requires it; None only where something else authenticates (``FutClient(auth=...)``)."""


@dataclass(frozen=True, slots=True)
class Answer:
    state: str  # sent | refused | retrying
    reason: str | None = None
    outcome: dict[str, Any] | None = None
    location: str | None = None


def backoff(attempts: int, *, base: float, cap: float, rng: random.Random | None = None) -> timedelta:
    """The wait before attempt ``attempts + 1``: doubling from ``base``, capped, +-20 % jitter."""
    delay = min(cap, base * (2 ** max(0, attempts - 1)))
    jitter = (rng or random).uniform(0.8, 1.2)
    return timedelta(seconds=min(cap, delay * jitter))


def mask_cpr(text: str) -> str:
    """FUT knows the citizen's CPR number and may echo it in a refusal: it is masked before
    anything is stored or logged."""
    return mask(text)


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return mask_cpr(value)
    if isinstance(value, Mapping):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return value


def _outcome_text(outcome: Mapping[str, Any]) -> str:
    parts = []
    for issue in outcome.get("issue") or []:
        if isinstance(issue, Mapping):
            text = issue.get("diagnostics") or (issue.get("details") or {}).get("text") or issue.get("code")
            parts.append(f"{issue.get('severity', '?')}: {text}")
    return "; ".join(parts)[:1000] or "refused without an explanation"


def classify(response: httpx.Response) -> Answer:
    """FUT's answer to one submission."""
    code = response.status_code
    body: Any = None
    try:
        body = response.json()
    except ValueError:
        body = None
    if 200 <= code < 300:
        location = None
        if isinstance(body, Mapping):
            for entry in body.get("entry") or []:
                location = ((entry or {}).get("response") or {}).get("location") or location
        return Answer("sent", location=location)
    if code == 401:  # nearcare's credentials, not the measurement: not a refusal of it
        return Answer("retrying", reason="FUT refused the access token (401)")
    if 400 <= code < 500 and code not in RETRYABLE_4XX:
        is_outcome = isinstance(body, Mapping) and body.get("resourceType") == "OperationOutcome"
        outcome = _masked(body) if is_outcome else None
        reason = f"FUT refused ({code}): " + (_outcome_text(outcome) if outcome else mask_cpr(response.text[:500]))
        return Answer("refused", reason=reason, outcome=dict(outcome) if outcome else None)
    return Answer("retrying", reason=f"FUT answered {code}")


class FutClient:
    """``POST [base]/$submit-measurement`` over httpx, authenticated with OAuth2 client
    credentials (``config.oauth``, authlib's ``OAuth2Client``) or with any ``httpx.Auth``."""

    def __init__(self, config: FutConfig, *, auth: httpx.Auth | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.config = config
        self.tokens_fetched = 0
        kw: dict[str, Any] = {"base_url": config.base_url, "timeout": config.timeout_s, "transport": transport,
                              "headers": {"Accept": "application/fhir+json"}}
        o = config.oauth
        self._oauth: OAuth2Client | None = None
        if o is not None:
            if auth is not None:
                raise FutError("either OAuth2 client credentials or another httpx.Auth, not both")
            self._oauth = OAuth2Client(client_id=o.client_id, client_secret=o.client_secret, scope=o.scope,
                                       token_endpoint=o.token_url, grant_type="client_credentials",
                                       leeway=int(o.leeway_s), update_token=self._token_renewed, **kw)
            self._http: httpx.Client = self._oauth
        else:
            self._http = httpx.Client(auth=auth, **kw)

    def _token_renewed(self, token: Mapping[str, Any], **_: Any) -> None:
        # authlib calls this when it fetched a new token because the old one was about to expire.
        self.tokens_fetched += 1

    def fetch_token(self) -> None:
        """A new access token from the token endpoint (authlib's client-credentials grant)."""
        assert self._oauth is not None and self.config.oauth is not None
        self._oauth.fetch_token(self.config.oauth.token_url, grant_type="client_credentials")
        self.tokens_fetched += 1

    def _post(self, body: Mapping[str, Any], key: str) -> httpx.Response:
        if self._oauth is not None and not self._oauth.token:
            self.fetch_token()
        return self._http.post(
            "/$submit-measurement",
            json=body,
            headers={"Content-Type": "application/fhir+json; charset=UTF-8", "X-Request-Id": key},
        )

    def submit(self, body: Mapping[str, Any], *, key: str) -> Answer:
        try:
            response = self._post(body, key)
            if response.status_code == 401 and self._oauth is not None:
                # Revoked or rotated before its time: one new token, one more try (the
                # conditional create makes the second try safe even if the first was stored).
                self.fetch_token()
                response = self._post(body, key)
        except OAuthError as exc:
            return Answer("retrying", reason=f"FUT's token endpoint refused the client: {exc.error}"[:300])
        except httpx.HTTPStatusError as exc:  # the token endpoint's 5xx
            return Answer("retrying", reason=f"FUT's token endpoint answered {exc.response.status_code}")
        except httpx.TimeoutException:
            return Answer("retrying", reason="FUT did not answer in time")
        except httpx.TransportError as exc:
            return Answer("retrying", reason=f"FUT not reachable: {type(exc).__name__}")
        except (ValueError, KeyError) as exc:  # a token endpoint answer that is not an OAuth2 token
            return Answer("retrying", reason=f"FUT's token endpoint gave no usable token: {type(exc).__name__}")
        return classify(response)

    def close(self) -> None:
        self._http.close()


def _load(conn: psycopg.Connection[Any], measurement_id: Any) -> tuple[dict[str, Any] | None, FutLink | None, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        reading = cur.execute(
            """SELECT m.id, m.kind, m.components, m.measured_at, m.quality, m.flags, d.fut_device
               FROM fut_outbox o JOIN measurements m ON m.id = o.measurement_id AND m.measured_at = o.measured_at
               LEFT JOIN fut_device_refs d ON d.device_id = m.device_id
               WHERE o.measurement_id = %s""",
            (measurement_id,),
        ).fetchone()
        if reading is None:
            return None, None, None
        link_row = cur.execute(
            """SELECT l.fut_patient, l.episode_of_care, l.service_request, l.service_request_version, l.device
               FROM fut_outbox o JOIN fut_links l ON l.patient_id = o.patient_id WHERE o.measurement_id = %s""",
            (measurement_id,),
        ).fetchone()
        ev = cur.execute(
            "SELECT thresholds FROM reading_evaluations WHERE measurement_id = %s", (measurement_id,)
        ).fetchone()
    device = reading.pop("fut_device")
    link = FutLink(link_row["fut_patient"], link_row["episode_of_care"], link_row["service_request"],
                   link_row["service_request_version"], device or link_row["device"]) if link_row else None
    return reading, link, ev["thresholds"] if ev else None


def send_due(conn: psycopg.Connection[Any], client: FutClient, *, limit: int | None = None,
             rng: random.Random | None = None) -> dict[str, int]:
    """Send the due rows, one transaction per row (the row stays locked while it is in flight);
    returns how many ended in each state. ``conn`` must be in autocommit mode."""
    cfg = client.config
    done: dict[str, int] = {}
    for _ in range(limit or cfg.batch):
        with conn.transaction():
            row = conn.execute(
                """SELECT o.measurement_id, o.attempts FROM fut_outbox o
                   WHERE o.state IN ('pending', 'retrying') AND o.next_attempt_at <= now()
                     AND (o.created_at <= now() - make_interval(secs => %s)
                          OR EXISTS (SELECT 1 FROM reading_evaluations e WHERE e.measurement_id = o.measurement_id))
                   ORDER BY o.next_attempt_at LIMIT 1 FOR UPDATE OF o SKIP LOCKED""",
                (cfg.evaluation_wait_s,),
            ).fetchone()
            if row is None:
                break
            mid, attempts = row
            reading, link, thresholds = _load(conn, mid)
            if reading is None or link is None:
                answer = Answer("not_submittable", reason="the measurement or the citizen's FUT link is gone")
            else:
                try:
                    body = submit_measurement(reading, link=link, thresholds=thresholds)
                except FutNotSubmittable as exc:
                    answer = Answer("not_submittable", reason=str(exc))
                except FhirExportError as exc:
                    answer = Answer("refused", reason=f"not sent: {exc}"[:1000])
                else:
                    answer = client.submit(body, key=str(mid))
            retry_at = None
            if answer.state == "retrying":
                now = conn.execute("SELECT now()").fetchone()
                assert now is not None
                retry_at = now[0] + backoff(attempts + 1, base=cfg.backoff_base_s, cap=cfg.backoff_cap_s, rng=rng)
            outbox.record_outcome(conn, measurement_id=mid, state=answer.state, reason=answer.reason,
                                  outcome=answer.outcome, location=answer.location, retry_at=retry_at)
            log.log(logging.DEBUG if answer.state == "sent" else logging.INFO, "FUT submission %s: %s%s", mid,
                    answer.state, f" ({answer.reason})" if answer.reason else "")
        done[answer.state] = done.get(answer.state, 0) + 1
        gauges.SUBMISSIONS.labels(answer.state).inc()
    return done


class FutSender:
    """A :class:`backend.services.Service`: enqueue and send every ``interval_s`` on its own
    connection and thread, so a FUT outage never holds up ingest or the rules."""

    name = "fut"

    def __init__(self, *, database_url: str, client: FutClient) -> None:
        self.database_url = database_url
        self.client = client
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        self.rounds = 0
        self._conn: psycopg.Connection[Any] | None = None

    def run_once(self) -> dict[str, int]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.database_url, autocommit=True, application_name="nearcare-fut")
        try:
            outbox.enqueue_new(self._conn)
            done = send_due(self._conn, self.client)
            gauges.refresh(self._conn)
            return done
        except psycopg.Error:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None
            raise

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
                self.last_error = None
            except psycopg.Error as exc:
                self.last_error = f"database: {type(exc).__name__}"
                log.warning("FUT sender round failed: %s", self.last_error)
            self.rounds += 1
            self._stop.wait(self.client.config.interval_s)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="fut-sender", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.client.config.timeout_s + 5)
        self.client.close()
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None

    def ready(self) -> tuple[bool, str]:
        alive = self._thread is not None and self._thread.is_alive()
        return alive, "running" if alive and self.last_error is None else (self.last_error or "stopped")


def _secret(env: Mapping[str, str], name: str) -> str:
    """``NAME`` or, for secrets kept out of the environment, the file ``NAME_FILE`` points to."""
    value = env.get(name, "").strip()
    path = env.get(f"{name}_FILE", "").strip()
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                value = f.read().strip()
        except OSError as exc:
            raise FutError(f"{name}_FILE cannot be read: {exc.strerror}") from exc
    return value


def config_from_env(env: Mapping[str, str]) -> FutConfig | None:
    """``NEARCARE_FUT_BASE_URL`` (unset: no FUT connector), ``NEARCARE_FUT_TIMEOUT_S``,
    ``NEARCARE_FUT_BACKOFF_BASE_S``, ``NEARCARE_FUT_BACKOFF_CAP_S``, ``NEARCARE_FUT_INTERVAL_S``,
    ``NEARCARE_FUT_EVALUATION_WAIT_S`` and the OAuth2 client credentials FUT requires:
    ``NEARCARE_FUT_TOKEN_URL``, ``NEARCARE_FUT_CLIENT_ID``, ``NEARCARE_FUT_CLIENT_SECRET`` (or
    ``NEARCARE_FUT_CLIENT_SECRET_FILE``), optional ``NEARCARE_FUT_SCOPE`` and
    ``NEARCARE_FUT_TOKEN_LEEWAY_S``."""
    base = env.get("NEARCARE_FUT_BASE_URL", "").strip()
    if not base:
        return None
    token_url = env.get("NEARCARE_FUT_TOKEN_URL", "").strip()
    client_id = env.get("NEARCARE_FUT_CLIENT_ID", "").strip()
    secret = _secret(env, "NEARCARE_FUT_CLIENT_SECRET")
    missing = [n for n, v in (("NEARCARE_FUT_TOKEN_URL", token_url), ("NEARCARE_FUT_CLIENT_ID", client_id),
                              ("NEARCARE_FUT_CLIENT_SECRET", secret)) if not v]
    if missing:
        raise FutError(f"FUT needs OAuth2 client credentials: {', '.join(missing)} not set")
    try:
        oauth = FutOAuth(token_url=token_url, client_id=client_id, client_secret=secret,
                         scope=env.get("NEARCARE_FUT_SCOPE", "").strip() or None,
                         leeway_s=float(env.get("NEARCARE_FUT_TOKEN_LEEWAY_S", "30")))
        return FutConfig(
            base_url=base.rstrip("/"),
            timeout_s=float(env.get("NEARCARE_FUT_TIMEOUT_S", "10")),
            backoff_base_s=float(env.get("NEARCARE_FUT_BACKOFF_BASE_S", "30")),
            backoff_cap_s=float(env.get("NEARCARE_FUT_BACKOFF_CAP_S", "3600")),
            interval_s=float(env.get("NEARCARE_FUT_INTERVAL_S", "5")),
            evaluation_wait_s=float(env.get("NEARCARE_FUT_EVALUATION_WAIT_S", "300")),
            oauth=oauth,
        )
    except ValueError as exc:
        raise FutError(f"bad FUT setting: {exc}") from exc


def fut_services(database_url: str, env: Mapping[str, str] | None = None) -> list[FutSender]:
    """The FUT sender for the scheduler role, if FUT is configured (``NEARCARE_FUT_BASE_URL``
    in ``env``, default the process environment); none otherwise."""
    cfg = config_from_env(os.environ if env is None else env)
    return [] if cfg is None else [FutSender(database_url=database_url, client=FutClient(cfg))]
